// Speak the caption (and the list of objects) with the browser's own speech synthesis; nothing leaves the page.
(caption, objects) => {
  const text = [caption, objects ? "Objects: " + objects + "." : ""].join(" ").trim();
  if (!text || !("speechSynthesis" in window)) { return []; }
  window.speechSynthesis.cancel();
  const utterance = new SpeechSynthesisUtterance(text);
  utterance.rate = 0.95;
  window.speechSynthesis.speak(utterance);
  return [];
}
