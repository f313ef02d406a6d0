// Speech, run once when the page loads (after a11y.js): window.pageSpeech reads aloud at the rate of the page's
// slider, stops and repeats (read_aloud.js and the Stop and Repeat buttons call it); the live caption is mirrored into
// a polite ARIA live region and, when "Speak each new caption" is ticked, spoken each time it changes (never on
// every frame: only a new sentence counts). Nothing leaves the page: the browser's own speech synthesis speaks.
() => {
  const WAITING = "(the first caption is on its way…)";

  function rate() {
    const field = document.querySelector("#speech-rate input[type=number]");
    const value = field ? parseFloat(field.value) : 1;
    return Number.isFinite(value) ? Math.min(2, Math.max(0.5, value)) : 1;
  }

  const speech = {
    last: "",
    say(text) {
      if (!text || !("speechSynthesis" in window)) { return; }
      window.speechSynthesis.cancel();
      const utterance = new SpeechSynthesisUtterance(text);
      utterance.rate = rate();
      window.speechSynthesis.speak(utterance);
    },
    read(text) { speech.last = text; speech.say(text); },
    repeat() { speech.say(speech.last); },
    stop() { if ("speechSynthesis" in window) { window.speechSynthesis.cancel(); } },
  };
  window.pageSpeech = speech;

  let liveCaption = "";
  function followLiveCaption() {
    const box = document.querySelector("#live-caption textarea");
    const text = box ? box.value.trim() : "";
    if (!text || text === liveCaption || text === WAITING) { return; }
    liveCaption = text;
    const region = document.querySelector("#live-announcer");
    if (region) { region.textContent = text; }
    const wanted = document.querySelector("#speak-live input[type=checkbox]");
    if (wanted && wanted.checked) { speech.say(text); }
  }

  // Gradio sets the caption box's value without an event; a new sentence is looked for twice a second.
  setInterval(followLiveCaption, 500);
}
