// The page for a keyboard and a screen reader, run once when the page loads (launch(js=...)). Gradio re-renders its
// components, so what is fixed here is fixed again after each change of the page (one MutationObserver):
//  - names for Gradio's unnamed buttons (the example thumbnails, the pictures' fullscreen buttons), a role for its
//    "Empty value" boxes (an aria-label on a plain div is prohibited ARIA), text boxes named by their labels;
//  - hovering or focusing a marked caption word or an objects list item outlines its objects over the picture;
//  - the arrow keys, Home and End move through the objects list.
// Speech is speech.js's.
() => {
  const PICTURE_NAMES = {
    annotated: "The photo with its objects outlined",
    semantic: "Semantic map: each label in its colour",
    panoptic: "Panoptic view: each object and region in its colour",
  };

  function nameControls() {
    document.querySelectorAll("button.gallery-item:not([aria-label])").forEach((button) => {
      const image = button.querySelector("img");
      const file = image ? decodeURIComponent((image.getAttribute("src") || "").split(/[\\/=]/).pop()) : "";
      button.setAttribute("aria-label", file ? `Example photo: ${file}` : "Example photo");
      if (image) { image.setAttribute("alt", ""); }
    });
    Object.entries(PICTURE_NAMES).forEach(([id, name]) => {
      document.querySelectorAll(`#${id} .image-container button:not([aria-label])`).forEach((button) => {
        if (!button.innerText.trim()) { button.setAttribute("aria-label", name); }
      });
      document.querySelectorAll(`#${id} .image-container img:not([alt]), #${id} .image-container img[alt=""]`)
        .forEach((image) => image.setAttribute("alt", name));
      // Gradio loads its pictures lazily: on a phone the maps lie a screen or two down and would be 0 x 0 until
      // scrolled to; the results are the page's point, so they load at once.
      document.querySelectorAll(`#${id} img[loading=lazy]`).forEach((image) => { image.loading = "eager"; });
    });
    document.querySelectorAll("div.empty[aria-label]:not([role])").forEach((box) => box.setAttribute("role", "img"));
    // A text box whose label also holds its copy button is named by its placeholder; name it by its label.
    document.querySelectorAll("label textarea:not([aria-label]), label input[type=text]:not([aria-label])")
      .forEach((field) => {
        const label = field.closest("label").querySelector('[data-testid="block-info"]');
        if (label && label.innerText.trim()) { field.setAttribute("aria-label", label.innerText.trim()); }
      });
  }

  // -- highlights over the annotated picture -------------------------------------------------------------------

  function shownPicture() {
    const image = document.querySelector("#annotated img");
    if (!image || !image.naturalWidth) { return null; }
    // The picture is drawn inside its element with object-fit: contain; find the drawn rectangle.
    const box = image.getBoundingClientRect();
    const scale = Math.min(box.width / image.naturalWidth, box.height / image.naturalHeight);
    const width = image.naturalWidth * scale, height = image.naturalHeight * scale;
    return { left: box.left + (box.width - width) / 2, top: box.top + (box.height - height) / 2, width, height };
  }

  function clearHighlight() {
    document.querySelectorAll(".object-highlight").forEach((outline) => outline.remove());
  }

  function highlight(element) {
    clearHighlight();
    const shown = shownPicture();
    let boxes = [];
    try { boxes = JSON.parse(element.dataset.boxes || "[]"); } catch (error) { return; }
    if (!shown || !boxes.length) { return; }
    for (const [x0, y0, x1, y1] of boxes) {
      const outline = document.createElement("div");
      outline.className = "object-highlight";
      outline.setAttribute("aria-hidden", "true");
      Object.assign(outline.style, {
        left: `${window.scrollX + shown.left + x0 * shown.width}px`,
        top: `${window.scrollY + shown.top + y0 * shown.height}px`,
        width: `${(x1 - x0) * shown.width}px`,
        height: `${(y1 - y0) * shown.height}px`,
      });
      document.body.appendChild(outline);
    }
  }

  const marked = (target) => target instanceof Element && target.closest("[data-boxes]");
  for (const kind of ["mouseover", "focusin"]) {
    document.addEventListener(kind, (event) => { const element = marked(event.target); if (element) { highlight(element); } });
  }
  for (const kind of ["mouseout", "focusout"]) {
    document.addEventListener(kind, (event) => { if (marked(event.target)) { clearHighlight(); } });
  }
  window.addEventListener("resize", clearHighlight);

  document.addEventListener("keydown", (event) => {
    const item = event.target instanceof Element && event.target.closest("#objects-list li");
    if (!item) { return; }
    const items = Array.from(item.parentElement.querySelectorAll("li"));
    const moves = { ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1 };
    let next = null;
    if (event.key in moves) { next = items[items.indexOf(item) + moves[event.key]]; }
    if (event.key === "Home") { next = items[0]; }
    if (event.key === "End") { next = items[items.length - 1]; }
    if (next) { event.preventDefault(); next.focus(); }
  });

  let pending = false;
  new MutationObserver(() => {
    if (pending) { return; }
    pending = true;
    requestAnimationFrame(() => { pending = false; nameControls(); });
  }).observe(document.body, { childList: true, subtree: true });
  nameControls();
}
