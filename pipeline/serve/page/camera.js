// The camera the webcams use, run once when the page loads: the live tab's choice (#camera-facing), the rear camera
// by default. Gradio's webcam calls getUserMedia with its own video constraints when it starts; this adds facingMode
// to them, unless a particular device was picked in Gradio's own device menu (a deviceId). A choice made while the
// camera runs swaps the stream in Gradio's preview, the video element its frames are read from.
() => {
  const media = navigator.mediaDevices;
  if (!media || !media.getUserMedia) { return; }
  const ask = media.getUserMedia.bind(media);
  let swapped = null; // a stream this script put in the preview: Gradio stops only the streams it asked for

  function facing() {
    const chosen = document.querySelector("#camera-facing input:checked");
    return chosen ? chosen.value : "environment";
  }

  function withFacing(video) {
    const { deviceId, facingMode, ...rest } = typeof video === "object" ? video : {};
    return { ...rest, facingMode: { ideal: facing() } };
  }

  media.getUserMedia = (constraints = {}) => {
    const video = constraints.video;
    if (!video || (typeof video === "object" && video.deviceId)) { return ask(constraints); }
    return ask({ ...constraints, video: withFacing(video) });
  };

  async function switchCamera() {
    const preview = document.querySelector("#live-in video");
    const old = preview && preview.srcObject;
    if (!old || !old.active) { return; } // not started: the choice is used when it starts
    const track = old.getVideoTracks()[0];
    const video = withFacing(track ? track.getConstraints() : {});
    old.getTracks().forEach((each) => each.stop()); // a phone may not open both cameras at once
    const stream = await ask({ video, audio: false });
    preview.srcObject = stream;
    await preview.play();
    swapped = { preview, stream };
  }

  document.addEventListener("change", (event) => {
    if (event.target instanceof Element && event.target.closest("#camera-facing")) { switchCamera(); }
  });
  new MutationObserver(() => {
    if (swapped && !swapped.preview.isConnected) {
      swapped.stream.getTracks().forEach((each) => each.stop());
      swapped = null;
    }
  }).observe(document.body, { childList: true, subtree: true });
}
