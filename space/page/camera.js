// The camera the webcams ask for, run once when the page loads: the live tab's choice (#camera-facing), the rear
// camera by default. Gradio's webcam calls getUserMedia with its own video constraints when it starts; this adds
// facingMode to them, unless a particular device was picked in Gradio's own device menu (a deviceId).
() => {
  const media = navigator.mediaDevices;
  if (!media || !media.getUserMedia) { return; }
  const ask = media.getUserMedia.bind(media);

  function facing() {
    const chosen = document.querySelector("#camera-facing input:checked");
    return chosen ? chosen.value : "environment";
  }

  media.getUserMedia = (constraints = {}) => {
    const video = constraints.video;
    if (!video || (typeof video === "object" && video.deviceId)) { return ask(constraints); }
    const wanted = { ...(typeof video === "object" ? video : {}), facingMode: { ideal: facing() } };
    return ask({ ...constraints, video: wanted });
  };
}
