// After an answer arrives (the Ask button or Enter in a question box): say it in the tab's polite live region, outline
// the objects it refers to, and speak it when the tab's "Read answers aloud" is ticked (speech.js). On the photo tab
// a11y.js draws the outlines of the element a pointer is over, so the answer's objects button is pointed at; on the
// live tab the answer brings its outlines as SVG, which live_overlay.js lays over the camera. Gradio writes the answer
// block just before this runs, so it looks a moment later. Each tab calls it with its own elements (app.py answer_js).
(ids) => () => {
  setTimeout(() => {
    const block = document.querySelector(ids.block);
    const sentence = block && block.querySelector(".answer-sentence");
    if (!sentence) { return; }
    const region = document.querySelector(ids.region);
    if (region) { region.textContent = sentence.textContent; }
    const objects = block.querySelector("[data-boxes]");
    if (objects) { objects.dispatchEvent(new MouseEvent("mouseover", { bubbles: true })); }
    const wanted = document.querySelector(`${ids.speak} input[type=checkbox]`);
    if (wanted && wanted.checked && window.pageSpeech) { window.pageSpeech.read(sentence.textContent); }
  }, 100);
  return [];
}
