// The live tab's outlines, drawn over the camera's own preview: each answer to a frame brings an SVG drawing of
// that frame's objects (#live-outlines, kept out of view), and this copies it into a layer laid exactly over the
// <video> the camera plays in (#live-in), its viewBox fitted the way the video fits its box (object-fit). So the
// outlines sit on the picture the person sees, and no picture is sent back for each frame.
// window.liveOverlay counts the drawings shown and when, for the page's own figures and its tests.
// An answer to a question on the live tab brings the outlines of the objects it refers to (#live-answer
// .answer-outlines svg); they are laid over the video the same way, in a layer of their own above the frame's, and
// stay ANSWER_MS (or until the next answer): the camera moves on, the answer was about the frame it was asked on.
() => {
  const state = { updates: 0, times: [], frame: null, answer: null };
  window.liveOverlay = state;
  const ANSWER_MS = 6000;
  let answerTimer = null;

  function preview() {
    const videos = [...document.querySelectorAll("#live-in video")];
    return videos.find((video) => video.offsetWidth > 0) || videos[0] || null;
  }

  function layer(video, kind = "live-overlay") {
    const holder = video.parentElement;
    document.querySelectorAll(`.${kind}`).forEach((old) => {
      if (old.parentElement !== holder) { old.remove(); } // Gradio drew the camera anew: one layer, on this one
    });
    let drawing = holder.querySelector(`:scope > .${kind}`);
    if (!drawing) {
      if (getComputedStyle(holder).position === "static") { holder.style.position = "relative"; }
      drawing = document.createElement("div");
      drawing.className = kind;
      drawing.setAttribute("aria-hidden", "true");
      holder.appendChild(drawing);
    }
    drawing.style.left = `${video.offsetLeft}px`;
    drawing.style.top = `${video.offsetTop}px`;
    drawing.style.width = `${video.offsetWidth}px`;
    drawing.style.height = `${video.offsetHeight}px`;
    drawing.style.transform = getComputedStyle(video).transform === "none" ? "" : getComputedStyle(video).transform;
    return drawing;
  }

  const FIT = { contain: "xMidYMid meet", cover: "xMidYMid slice", fill: "none" };

  function draw(source, drawing) {
    const copy = source.cloneNode(true);
    copy.setAttribute("preserveAspectRatio", FIT[getComputedStyle(preview()).objectFit] || FIT.contain);
    // inline, so that no rule of the camera's own (its icons' sizes) applies to the drawing
    copy.style.cssText = "position:absolute;left:0;top:0;width:100%;height:100%;display:block;overflow:visible";
    drawing.replaceChildren(copy);
  }

  function showAnswer() {
    const source = document.querySelector("#live-answer .answer-outlines svg");
    const video = preview();
    if (!source || !video) { return; }
    const answer = source.getAttribute("data-frame");
    if (answer === state.answer) { return; }
    state.answer = answer;
    const drawing = layer(video, "live-answer-overlay");
    draw(source, drawing);
    clearTimeout(answerTimer);
    answerTimer = setTimeout(() => drawing.replaceChildren(), ANSWER_MS);
  }

  function show() {
    const source = document.querySelector("#live-outlines svg");
    const video = preview();
    if (!source || !video) { return; }
    const frame = source.getAttribute("data-frame");
    if (frame === state.frame) { return; }
    state.frame = frame;
    draw(source, layer(video));
    if (frame !== "0") {
      state.updates += 1;
      state.times.push(performance.now());
      if (state.times.length > 120) { state.times.shift(); }
    }
  }

  function watch() {
    const outlines = document.querySelector("#live-outlines");
    const answers = document.querySelector("#live-answer");
    if (!outlines || !answers) { return false; }
    new MutationObserver(show).observe(outlines, { childList: true, subtree: true, attributes: true });
    new MutationObserver(showAnswer).observe(answers, { childList: true, subtree: true });
    return true;
  }

  if (!watch()) {
    const waiting = new MutationObserver(() => { if (watch()) { waiting.disconnect(); } });
    waiting.observe(document.body, { childList: true, subtree: true });
  }
  window.addEventListener("resize", () => {
    const video = preview();
    if (video && video.parentElement.querySelector(":scope > .live-overlay")) { layer(video); }
    if (video && video.parentElement.querySelector(":scope > .live-answer-overlay")) {
      layer(video, "live-answer-overlay");
    }
  });
}
