// After an answer arrives (the Ask button or Enter in the question box): say it in the polite live region, outline
// the objects it refers to over the photo (a11y.js draws the outlines of the element a pointer is over, so the answer's
// objects button is pointed at), and speak it when "Read answers aloud" is ticked (speech.js). Gradio writes the
// answer block just before this runs, so it looks a moment later.
() => {
  setTimeout(() => {
    const block = document.querySelector("#answer");
    const sentence = block && block.querySelector(".answer-sentence");
    if (!sentence) { return; }
    const region = document.querySelector("#answer-announcer");
    if (region) { region.textContent = sentence.textContent; }
    const objects = block.querySelector("[data-boxes]");
    if (objects) { objects.dispatchEvent(new MouseEvent("mouseover", { bubbles: true })); }
    const wanted = document.querySelector("#speak-answers input[type=checkbox]");
    if (wanted && wanted.checked && window.pageSpeech) { window.pageSpeech.read(sentence.textContent); }
  }, 100);
  return [];
}
