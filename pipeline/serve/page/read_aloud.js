// Speak the description (the caption, then what is where) with the browser's own speech synthesis, at the rate the
// page's slider sets (a11y.js); nothing leaves the page. Without a description, the caption and the objects found.
(caption, description, objects) => {
  const text = (description || [caption, objects ? "Objects: " + objects + "." : ""].join(" ")).trim();
  if (window.pageSpeech) { window.pageSpeech.read(text); }
  return [];
}
