"""The Gradio app: say in one sentence what a photo or a webcam frame shows, and outline every object in it.

    python app.py                                   # http://127.0.0.1:7860, best models that load here
    python app.py --host 0.0.0.0 --port 8080 --captioner shapes --segmenter shapes --offline
    python app.py --help                            # every flag; each also has an environment variable

The UI is in this file only; the work is done by the ``pipeline`` package (models through a process-wide
:class:`pipeline.cache.ModelCache`, pictures by :mod:`pipeline.render`, the live view by :mod:`pipeline.stream`).

Endpoints for ``gradio_client`` (``Client(url).view_api()`` lists them with types and defaults):

- ``/caption``  (image, captioner) -> caption text
- ``/segment``  (image, segmenter, threshold, subtask) -> JSON: instances with COCO RLE masks, maps as PNG
- ``/analyze``  (image, captioner, segmenter, options) -> (JSON of the output contract, annotated image)
- ``/live_frame`` (image, captioner, segmenter, threshold) -> (annotated frame, running caption, live stats JSON):
  the live view's per-frame work; streaming events cannot be called from ``gradio_client``.

Concurrency: model-heavy events share the ``heavy`` group (one at a time), the live stream has its own ``live``
group, and display-only re-renders their own, so a long analysis never holds up live frames or a slider.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from pipeline import (
    SUBTASKS,
    ModelUnavailableError,
    availability,
    best_available,
    get_spec,
    list_models,
    load_captioner,
    load_image,
    load_segmenter,
    to_json,
)
from pipeline.cache import ModelCache
from pipeline.env import env_flag
from pipeline.panoptic import with_threshold
from pipeline.render import (
    VIEWS,
    caption_sentence,
    describe_objects,
    draw_instances,
    draw_panoptic,
    draw_semantic,
    objects_table,
)
from pipeline.speed import PROFILES, default_profile, segmenter_view
from pipeline.stream import LiveStream, SessionRegistry
from pipeline.zerogpu import DEFAULT_DURATION, default_device, gpu, on_zerogpu

EXAMPLES_DIR = Path(__file__).resolve().parent / "space" / "examples"
GREEDY, BEAM = "Greedy (fastest)", "Beam search (4 beams, better wording)"
#: The UI runs the segmenter at no more than this threshold and filters for display, so that raising the slider
#: (and lowering it down to here) re-renders without running the model again.
RUN_THRESHOLD_FLOOR = 0.3
TABLE_HEADERS = ["object", "score", "pixels", "%"]
ANALYZE_OPTIONS = {"threshold": 0.5, "max_new_tokens": 30, "num_beams": 1, "subtask": None, "opacity": 0.5}
#: Start-up loading progress, ``{(kind, name): "loading" | "ready" | why it failed}``, shown in the page.
LOADING: dict[tuple[str, str], str] = {}

THEME = gr.themes.Soft(primary_hue="indigo", text_size="lg")
CSS = """
#caption textarea, #live-caption textarea {
  font-size: 1.65rem !important; line-height: 1.35 !important; font-weight: 600;
  /* Grow with the sentence: a caption must never be cut off or need scrolling. */
  field-sizing: content; height: auto !important; max-height: none !important; overflow-y: hidden !important;
}
#objects-summary textarea { font-size: 1.1rem !important; }
#read-aloud { min-height: 3rem; font-size: 1.1rem; }
.gradio-container { max-width: 1280px !important; margin: auto; }
#objects-table { max-width: 100%; overflow-x: auto; }
@media (max-width: 480px) {
  .main.fillable { padding-left: 10px !important; padding-right: 10px !important; }
  #caption textarea, #live-caption textarea { font-size: 1.35rem !important; }
}
"""
# Speak the caption (and the list of objects) with the browser's own speech synthesis; nothing leaves the page.
READ_ALOUD_JS = """
(caption, objects) => {
  const text = [caption, objects ? "Objects: " + objects + "." : ""].join(" ").trim();
  if (!text || !("speechSynthesis" in window)) { return []; }
  window.speechSynthesis.cancel();
  const utterance = new SpeechSynthesisUtterance(text);
  utterance.rate = 0.95;
  window.speechSynthesis.speak(utterance);
  return [];
}
"""


# -- settings -----------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line flags; each defaults to an environment variable so that a Space or a container can set them."""
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="python app.py",
        description="Serve the caption-and-segment app (Gradio). Every flag also reads the environment variable "
        "named in its help.",
    )
    parser.add_argument(
        "--host",
        default=env("GRADIO_SERVER_NAME", "127.0.0.1"),
        help="address to listen on; 0.0.0.0 for every interface (env GRADIO_SERVER_NAME, default 127.0.0.1)",
    )
    parser.add_argument(
        "--port", type=int, default=int(env("GRADIO_SERVER_PORT", "7860")), help="port (env GRADIO_SERVER_PORT, 7860)"
    )
    parser.add_argument(
        "--captioner",
        default=env("APP_CAPTIONER") or None,
        help="default captioner: a catalog name, directory or hub id (env APP_CAPTIONER; default blip-base when "
        "it is on this machine, else shapes)",
    )
    parser.add_argument(
        "--segmenter",
        default=env("APP_SEGMENTER") or None,
        help="default segmenter: a catalog name or checkpoint directory (env APP_SEGMENTER; default maskrcnn-v2 "
        "when it is on this machine, else shapes)",
    )
    parser.add_argument(
        "--device",
        default=env("APP_DEVICE") or default_device(),
        help="cpu, cuda or auto (env APP_DEVICE; default cuda on ZeroGPU, else auto)",
    )
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default=env("APP_PROFILE") or None,
        help="speed profile of the models (env APP_PROFILE; default fast on CPU, full on a GPU or ZeroGPU)",
    )
    parser.add_argument(
        "--offline",
        action=argparse.BooleanOptionalAction,
        default=env_flag("APP_OFFLINE"),
        help="never try a download: only models already on this machine are offered (env APP_OFFLINE=1; sets "
        "HF_HUB_OFFLINE=1)",
    )
    parser.add_argument(
        "--max-models",
        type=int,
        default=int(env("APP_MAX_MODELS", "4")),
        help="models kept loaded at once; least recently used are evicted beyond it or when memory is short "
        "(env APP_MAX_MODELS, default 4)",
    )
    parser.add_argument(
        "--live-sessions",
        type=int,
        default=int(env("APP_LIVE_SESSIONS", "2")),
        help="webcam streams served at the same time (env APP_LIVE_SESSIONS, default 2)",
    )
    parser.add_argument(
        "--no-preload", action="store_true", help="load the default models on first use instead of at start-up"
    )
    args = parser.parse_args(argv)
    args.profile = args.profile or default_profile(args.device)
    if not 0 < args.port < 65536:
        parser.error(f"--port must be between 1 and 65535, got {args.port}")
    if args.max_models < 1 or args.live_sessions < 1:
        parser.error("--max-models and --live-sessions must be positive")
    return args


def model_choices(kind: str, names: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """Dropdown choices ``(shown text, name)``: the name, what it is good for, and a mark when it cannot load here."""
    specs = [get_spec(name, kind) for name in names] if names is not None else list_models(kind)
    choices = []
    for spec in specs:
        available, _ = availability(spec.name, kind)
        blurb = spec.description.split(": ", 1)[-1]
        mark = "" if available else "  [not available here]"
        choices.append((f"{spec.name} — {blurb}{mark}", spec.name))
    return choices


def model_status(kind: str, name: str | None) -> str:
    """One Markdown line about the chosen model: what it is, or why it cannot be used here."""
    if not name:
        return f"No {kind} is configured."
    try:
        spec = get_spec(name, kind)
    except ValueError as error:
        return f"**{kind.capitalize()} `{name}`**: {error}"
    state = LOADING.get((kind, spec.name))
    if state == "loading":
        return f"**{spec.name} is loading** (the first start downloads its weights); a request for it waits."
    available, reason = availability(name, kind)
    if state not in (None, "ready"):
        available, reason = False, state
    if available:
        return f"**{spec.name}**: {spec.description}."
    return f"**{spec.name} cannot be used here**: {reason}. Choose another {kind}, or install it (see README)."


# -- helpers the handlers share ------------------------------------------------------------------------------------


def user_error(message: str, *, title: str = "Error") -> gr.Error:
    """A message shown in the page; the server log stays free of tracebacks for a person's mistakes."""
    return gr.Error(message, title=title, print_exception=False)


def image_from_payload(payload: Any) -> Image.Image:
    """The RGB image of a Gradio image payload (an uploaded file's ``FileData`` dict, a path or a data URL).

    Raises ``gr.Error`` with a message a person can act on when it is missing, not an image, or too large.
    """
    if payload is None:
        raise user_error("No image yet: upload, paste, drop or take a photo first.", title="No image")
    if isinstance(payload, Image.Image):
        source: Any = payload
    elif isinstance(payload, dict):
        url = payload.get("url") or ""
        if payload.get("path"):
            source = payload["path"]
        elif url.startswith("data:"):
            source = base64.b64decode(url.split(",", 1)[1])
        else:
            raise user_error("The image could not be received; please upload it again.", title="No image")
    elif isinstance(payload, str):
        source = payload
    else:
        raise user_error(f"Expected an image, got {type(payload).__name__}.", title="Not an image")
    try:
        return load_image(source)
    except (ValueError, TypeError) as error:
        message = str(error).replace(str(source), "the file") if isinstance(source, str) else str(error)
        raise user_error(
            f"{message[:1].upper()}{message[1:]}. Please choose a JPEG, PNG or WebP photo.",
            title="This file cannot be used",
        ) from None


def image_digest(image: Image.Image) -> str:
    """A short content hash: the same picture uploaded twice is recognised and not analysed twice."""
    return hashlib.blake2b(image.tobytes() + repr(image.size).encode(), digest_size=12).hexdigest()


def caption_options(decoding: str, length: float) -> dict[str, int]:
    return {"max_new_tokens": int(length), "num_beams": 4 if decoding == BEAM else 1}


class JsonFiles:
    """Downloads of results as files in one temporary folder, the oldest deleted beyond ``keep``."""

    def __init__(self, keep: int = 64):
        self.folder = Path(tempfile.mkdtemp(prefix="caption-app-json-"))
        self.keep = keep

    def write(self, data: dict[str, Any], stem: str) -> str:
        path = self.folder / f"{stem}.json"
        path.write_text(json.dumps(data, indent=1) + "\n")
        files = sorted(self.folder.glob("*.json"), key=lambda p: p.stat().st_mtime)
        for old in files[: max(0, len(files) - self.keep)]:
            old.unlink(missing_ok=True)
        return str(path)


# -- the app -------------------------------------------------------------------------------------------------------


def build_demo(
    *,
    captioners: Sequence[str] | None = None,
    segmenters: Sequence[str] | None = None,
    default_captioner: str | None = None,
    default_segmenter: str | None = None,
    cache: ModelCache | None = None,
    device: str = "auto",
    live_sessions: int = 2,
    live_time_limit: int = 900,
    examples_dir: Path | None = EXAMPLES_DIR,
    default_threshold: float = 0.5,
) -> gr.Blocks:
    """Build the Blocks app.

    Args:
        captioners (Sequence[str] | None, default None): the captioner names offered; None offers the catalog's.
        segmenters (Sequence[str] | None, default None): the segmenter names offered; None offers the catalog's.
        default_captioner, default_segmenter (str | None, default None): the initial choices; None picks the best
            that loads here (blip-base / maskrcnn-v2, else shapes).
        cache (ModelCache | None, default None): where models are loaded and kept; None makes one on ``device``.
        device (str, default "auto"): ``"cpu"``, ``"cuda"`` or ``"auto"`` for a new cache.
        live_sessions (int, default 2): webcam streams served at once.
        live_time_limit (int, default 900): seconds one webcam stream may run before the browser must restart it.
        examples_dir (Path | None): the example images' folder; None for no examples.
        default_threshold (float, default 0.5): the score threshold slider's starting value.

    Returns:
        gr.Blocks: with its queue configured; call ``launch(**launch_options())``.
    """
    captioner_names = list(captioners) if captioners is not None else [s.name for s in list_models("captioner")]
    segmenter_names = list(segmenters) if segmenters is not None else [s.name for s in list_models("segmenter")]
    first_captioner = best_available("captioner", captioner_names, default_captioner)
    first_segmenter = best_available("segmenter", segmenter_names, default_segmenter)
    # A requested directory or hub id that is not in the catalog joins the menu, so that it can be chosen again.
    for names, chosen, kind in (
        (captioner_names, first_captioner, "captioner"),
        (segmenter_names, first_segmenter, "segmenter"),
    ):
        if chosen and chosen not in names:
            get_spec(chosen, kind)  # an unknown name is a configuration error: fail at start-up, not per request
            names.insert(0, chosen)
    models = cache or ModelCache(device=device)
    workers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ui-models")
    json_files = JsonFiles()

    def load(kind: str, name: str) -> Any:
        try:
            get_spec(name, kind)
        except ValueError as error:
            raise user_error(str(error), title=f"Unknown {kind}") from None
        try:
            return models.get(kind, name)
        except ModelUnavailableError as error:
            raise user_error(f"{error}", title=f"The {kind} {name!r} cannot be loaded") from None
        except Exception as error:  # a broken checkpoint must not take the server down
            raise user_error(f"The {kind} {name!r} failed to load: {error}", title="Model failed") from None

    def live_factory(settings: tuple[str, str, float]) -> LiveStream:
        captioner_name, segmenter_name, threshold = settings
        segmenter = segmenter_view(load("segmenter", segmenter_name), "live")
        captioner = load("captioner", captioner_name) if captioner_name else None
        return LiveStream(segmenter, captioner, threshold=threshold)

    live = SessionRegistry(live_factory, max_sessions=max(4, 2 * live_sessions))

    def run_jobs(image: Image.Image, jobs: list[tuple[str, str, str, dict]]) -> dict[str, tuple[Any, float]]:
        """Run ``(key, kind, name, options)`` model calls on one image -> ``{key: (output, ms)}``.

        CPU: each call in a worker thread, at the same time. ZeroGPU: one after the other inside one
        ``spaces.GPU`` call made from this request's thread (the GPU is attached for that call only, and it runs
        in a fork of the server where the server's thread pool does not exist).
        """
        loaded = {key: load(kind, name) for key, kind, name, _ in jobs}  # failures become messages here
        if on_zerogpu():
            return run_on_gpu(image, jobs)
        futures = {key: workers.submit(_timed, loaded[key], image, **options) for key, _, _, options in jobs}
        return {key: future.result() for key, future in futures.items()}

    @gpu(duration=DEFAULT_DURATION)
    def run_on_gpu(image: Image.Image, jobs: list[tuple[str, str, str, dict]]) -> dict[str, tuple[Any, float]]:
        # The models were placed on cuda at start-up; arguments and results are pickled across the fork.
        return {key: _timed(models.get(kind, name), image, **options) for key, kind, name, options in jobs}

    # -- handlers ----------------------------------------------------------------------------------------------

    def run_models(
        image: Image.Image,
        captioner: str,
        segmenter: str,
        options: dict[str, int],
        threshold: float,
        last: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """Run what changed since ``last`` (same picture: reuse the caption, the segmentation, or both)."""
        digest = image_digest(image)
        same = bool(last) and last["digest"] == digest
        reuse_caption = same and last["captioner"] == captioner and last["caption_options"] == options
        reuse_segments = same and last["segmenter"] == segmenter and last["floor"] <= threshold
        floor = min(float(threshold), RUN_THRESHOLD_FLOOR)
        start = time.perf_counter()
        jobs = [("caption", "captioner", captioner, options)] if not reuse_caption else []
        jobs += [("segment", "segmenter", segmenter, {"threshold": floor})] if not reuse_segments else []
        try:
            done = run_jobs(image, jobs)
            caption, caption_ms = (
                done["caption"] if not reuse_caption else ({"caption": last["caption"]}, last["caption_ms"])
            )
            segments, segment_ms = done["segment"] if not reuse_segments else (last["segments"], last["segment_ms"])
        except ValueError as error:
            raise user_error(str(error), title="This image cannot be analysed") from None
        except RuntimeError as error:  # e.g. out of memory inside a model: say so, keep serving
            raise user_error(f"The model failed on this image: {error}", title="Model failed") from None
        return {
            "digest": digest,
            "image": image,
            "captioner": captioner,
            "caption_options": options,
            "caption": caption["caption"],
            "caption_ms": caption_ms,
            "segmenter": segmenter,
            "floor": floor if not reuse_segments else last["floor"],
            "segments": segments,
            "segment_ms": segment_ms,
            "total_ms": (time.perf_counter() - start) * 1000.0,
            "reused": [name for name, kept in (("caption", reuse_caption), ("segmentation", reuse_segments)) if kept],
        }

    def render(analysis: dict[str, Any] | None, threshold: float, opacity: float, views: list[str], note: str = ""):
        """Everything the page shows, from a stored analysis; no model runs here."""
        if not analysis:
            empty = gr.update(value=None)
            return ("", "", empty, empty, empty, [], "", None)
        tick = time.perf_counter()
        image = analysis["image"]
        shown = with_threshold(analysis["segments"], threshold)
        instances = shown["instances"]
        annotated = draw_instances(image, instances, opacity=opacity) if "objects" in views else None
        semantic = draw_semantic(shown["semantic"], image, opacity=opacity) if "semantic" in views else None
        panoptic = draw_panoptic(shown["panoptic"], image, opacity=opacity) if "panoptic" in views else None
        result = {
            "caption": analysis["caption"],
            **shown,
            "models": {"captioner": analysis["captioner"], "segmenter": analysis["segmenter"]},
            "timings_ms": {
                "caption": round(analysis["caption_ms"], 1),
                "segment": round(analysis["segment_ms"], 1),
                "total": round(analysis["total_ms"], 1),
            },
            "threshold": threshold,
        }
        download = json_files.write(to_json(result), f"analysis-{analysis['digest'][:10]}")
        render_ms = (time.perf_counter() - tick) * 1000.0
        reused = analysis.get("reused") or []
        timings = (
            f"Caption **{analysis['caption_ms']:.0f} ms** ({analysis['captioner']}) · "
            f"objects **{analysis['segment_ms']:.0f} ms** ({analysis['segmenter']}) · "
            f"drawing {render_ms:.0f} ms"
            + (f" · reused: {', '.join(reused)}" if reused else "")
            + (f" · {note}" if note else "")
        )
        return (
            caption_sentence(analysis["caption"]),
            describe_objects(instances),
            gr.update(value=annotated, visible="objects" in views),
            gr.update(value=semantic, visible="semantic" in views),
            gr.update(value=panoptic, visible="panoptic" in views),
            objects_table(instances, image.size),
            timings,
            download,
        )

    def analyze_ui(payload, captioner, segmenter, threshold, opacity, views, decoding, length, last):
        if payload is None:
            return (*render(None, threshold, opacity, views), None)
        image = image_from_payload(payload)
        analysis = run_models(image, captioner, segmenter, caption_options(decoding, length), threshold, last)
        return (*render(analysis, threshold, opacity, views), analysis)

    def rerender_ui(threshold, opacity, views, last):
        if last and last["floor"] > threshold:
            gr.Info("The threshold is below the last run's: press Analyze to find fainter objects.")
        return render(
            last,
            max(threshold, last["floor"]) if last else threshold,
            opacity,
            views,
            note="re-drawn, models not re-run",
        )

    def caption_api(image, captioner):
        picture = image_from_payload(image)
        try:
            return run_jobs(picture, [("caption", "captioner", captioner, {})])["caption"][0]["caption"]
        except ValueError as error:
            raise user_error(str(error), title="This image cannot be captioned") from None

    def segment_api(image, segmenter, threshold, subtask):
        picture = image_from_payload(image)
        subtask = None if subtask in (None, "", "all") else subtask
        if subtask is not None and subtask not in SUBTASKS:
            raise user_error(f"subtask must be one of {['all', *SUBTASKS]}, got {subtask!r}", title="Bad subtask")
        try:
            options = {"threshold": float(threshold), "subtask": subtask}
            result = run_jobs(picture, [("segment", "segmenter", segmenter, options)])["segment"][0]
        except ValueError as error:
            raise user_error(str(error), title="This image cannot be segmented") from None
        return {**to_json(result), "models": {"segmenter": segmenter}}

    def analyze_api(image, captioner, segmenter, options):
        picture = image_from_payload(image)
        options = dict(options or {})
        unknown = sorted(set(options) - set(ANALYZE_OPTIONS))
        if unknown:
            raise user_error(f"unknown options {unknown}; accepted: {sorted(ANALYZE_OPTIONS)}", title="Bad options")
        settings = {**ANALYZE_OPTIONS, **options}
        opacity = settings.pop("opacity")
        start = time.perf_counter()
        caption_options = {key: settings[key] for key in ("max_new_tokens", "num_beams")}
        segment_options = {key: settings[key] for key in ("threshold", "subtask")}
        jobs = [("caption", "captioner", captioner, caption_options)]
        jobs.append(("segment", "segmenter", segmenter, segment_options))
        try:
            done = run_jobs(picture, jobs)
            (caption, caption_ms), (segments, segment_ms) = done["caption"], done["segment"]
        except ValueError as error:
            raise user_error(str(error), title="Bad request") from None
        result = {
            "caption": caption["caption"],
            **segments,
            "models": {"captioner": captioner, "segmenter": segmenter},
            "timings_ms": {
                "caption": caption_ms,
                "segment": segment_ms,
                "total": (time.perf_counter() - start) * 1000.0,
            },
        }
        return to_json(result), draw_instances(picture, segments["instances"], opacity=float(opacity))

    def live_frame(frame, captioner, segmenter, threshold, request: gr.Request):
        picture = frame if isinstance(frame, Image.Image) else image_from_payload(frame)
        session = live.get(
            request.session_hash if request else None, settings=(captioner, segmenter, round(float(threshold), 2))
        )
        shown = session.process(picture)
        if shown.image is None:  # nothing processed yet in this session
            return picture, "", shown.summary()
        annotated = draw_instances(shown.image, shown.result["instances"], opacity=0.5)
        return (
            annotated,
            caption_sentence(shown.caption),
            {
                **shown.summary(),
                "objects": describe_objects(shown.result["instances"]),
            },
        )

    def live_ui(frame, captioner, segmenter, threshold, request: gr.Request):
        if frame is None:
            return None, "", "Waiting for the camera…"
        annotated, caption, stats = live_frame(frame, captioner, segmenter, threshold, request)
        line = (
            f"**{stats['fps']:.1f} frames/s** · {stats['frames_processed']} processed · "
            f"{stats['frames_dropped']} stale dropped · objects: {stats.get('objects', '…')}"
        )
        return annotated, caption or "(the first caption is on its way…)", line

    # -- the page ----------------------------------------------------------------------------------------------

    with gr.Blocks(title="Describe and outline", delete_cache=(1800, 3600)) as demo:
        gr.Markdown(
            "# Describe and outline\nGive a photo: the app says in one sentence what it shows and outlines every "
            "object in it. The **Read aloud** button speaks the description."
        )
        notes = [
            f"the {kind} `{asked}` that was asked for cannot be loaded here ({availability(asked, kind)[1]}); "
            f"`{name}` is used instead."
            for kind, asked, name in (
                ("captioner", default_captioner, first_captioner),
                ("segmenter", default_segmenter, first_segmenter),
            )
            if asked and name != asked
        ]
        notes += [
            f"no {kind} that loads here was found, so analysis fails until one is installed (see the note under "
            "its menu, and the README)."
            for kind, name in (("captioner", first_captioner), ("segmenter", first_segmenter))
            if not name or not availability(name, kind)[0]
        ]
        if notes:
            gr.Markdown("**Note for the operator:** " + " ".join(notes), elem_id="setup-note")
        state = gr.State(None, time_to_live=1800)
        with gr.Tab("Photo", id="photo"):
            with gr.Row(equal_height=False):
                with gr.Column(scale=5, min_width=300):
                    image_in = gr.Image(
                        label="Photo",
                        sources=["upload", "clipboard", "webcam"],
                        type="filepath",
                        height=320,
                        elem_id="image-in",
                        placeholder="Drop a photo here, click to upload, paste, or use the camera",
                    )
                    if examples_dir is not None and examples_dir.is_dir():
                        example_files = sorted(
                            str(p) for p in examples_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")
                        )
                        gr.Examples(example_files, inputs=image_in, label="Examples (public domain / CC0)")
                    analyze_button = gr.Button("Analyze", variant="primary", elem_id="analyze")
                    # The sentence comes right after the photo so that a screen reader or a phone reaches it first.
                    caption_out = gr.Textbox(
                        label="What the photo shows",
                        lines=3,
                        max_lines=10,
                        interactive=False,
                        elem_id="caption",
                        buttons=["copy"],
                        placeholder="The description appears here.",
                    )
                    objects_out = gr.Textbox(label="Objects found", interactive=False, elem_id="objects-summary")
                    read_button = gr.Button("Read aloud", elem_id="read-aloud")
                    captioner_in = gr.Dropdown(
                        model_choices("captioner", captioner_names),
                        value=first_captioner,
                        label="Captioner",
                        elem_id="captioner",
                    )
                    captioner_note = gr.Markdown(model_status("captioner", first_captioner), elem_id="captioner-note")
                    segmenter_in = gr.Dropdown(
                        model_choices("segmenter", segmenter_names),
                        value=first_segmenter,
                        label="Segmenter",
                        elem_id="segmenter",
                    )
                    segmenter_note = gr.Markdown(model_status("segmenter", first_segmenter), elem_id="segmenter-note")
                    with gr.Accordion("Settings", open=False, elem_id="settings"):
                        threshold_in = gr.Slider(
                            0.05,
                            0.95,
                            value=default_threshold,
                            step=0.05,
                            label="Score threshold",
                            info="objects below this score are hidden",
                        )
                        opacity_in = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Mask opacity")
                        views_in = gr.CheckboxGroup(
                            [("Objects", "objects"), ("Semantic map", "semantic"), ("Panoptic view", "panoptic")],
                            value=list(VIEWS),
                            label="Views",
                            elem_id="views",
                        )
                        decoding_in = gr.Radio(
                            [GREEDY, BEAM], value=GREEDY, label="Caption search", elem_id="decoding"
                        )
                        length_in = gr.Slider(5, 60, value=30, step=1, label="Longest caption (tokens)")
                with gr.Column(scale=7, min_width=300):
                    annotated_out = gr.Image(
                        label="Objects", type="pil", format="jpeg", elem_id="annotated", interactive=False
                    )
                    with gr.Row():
                        semantic_out = gr.Image(
                            label="Semantic map",
                            type="pil",
                            format="png",
                            elem_id="semantic",
                            interactive=False,
                            min_width=280,
                        )
                        panoptic_out = gr.Image(
                            label="Panoptic view",
                            type="pil",
                            format="png",
                            elem_id="panoptic",
                            interactive=False,
                            min_width=280,
                        )
                    table_out = gr.Dataframe(
                        headers=TABLE_HEADERS,
                        label="Objects table",
                        interactive=False,
                        elem_id="objects-table",
                        max_height=320,
                    )
                    timings_out = gr.Markdown(elem_id="timings")
                    json_out = gr.File(label="Download the result (JSON, masks as COCO RLE)", elem_id="json")
        with gr.Tab("Live camera", id="live", visible=not on_zerogpu()):
            gr.Markdown(
                "Start the camera: each processed frame comes back with its objects outlined, and the caption "
                "is refreshed every few seconds or when the scene changes. Frames the server cannot keep up with "
                "are skipped, never queued."
            )
            with gr.Row():
                live_in = gr.Image(
                    label="Camera", sources=["webcam"], streaming=True, type="pil", elem_id="live-in", height=320
                )
                live_out = gr.Image(
                    label="Live objects", type="pil", format="jpeg", elem_id="live-out", interactive=False, height=320
                )
            live_caption = gr.Textbox(
                label="What the camera shows", lines=2, max_lines=6, interactive=False, elem_id="live-caption"
            )
            live_stats = gr.Markdown("Waiting for the camera…", elem_id="live-stats")
        with gr.Tab("API", id="api"):
            gr.Markdown(
                "Scripts call `/caption`, `/segment`, `/analyze` and `/live_frame` with `gradio_client`; "
                "`Client(url).view_api()` lists every parameter with its type and default. See the README."
            )
        # Hidden inputs and outputs that give the API endpoints their documented parameters.
        with gr.Column(visible=False):
            api_image = gr.Image(label="image", type="filepath")
            api_captioner = gr.Dropdown(
                captioner_names, value=first_captioner, label="captioner", allow_custom_value=True
            )
            api_segmenter = gr.Dropdown(
                segmenter_names, value=first_segmenter, label="segmenter", allow_custom_value=True
            )
            api_threshold = gr.Number(0.5, label="threshold", minimum=0.0, maximum=1.0)
            api_subtask = gr.Dropdown(["all", *SUBTASKS], value="all", label="subtask")
            api_options = gr.JSON(dict(ANALYZE_OPTIONS), label="options")
            api_caption = gr.Textbox(label="caption")
            api_json = gr.JSON(label="result")
            api_annotated = gr.Image(label="annotated image", type="pil", format="png")
            api_live_image = gr.Image(label="annotated frame", type="pil", format="jpeg")
            api_live_stats = gr.JSON(label="live stats")
            api_buttons = [gr.Button(visible=False) for _ in range(4)]

        # -- events ----------------------------------------------------------------------------------------------
        page_inputs = [
            image_in,
            captioner_in,
            segmenter_in,
            threshold_in,
            opacity_in,
            views_in,
            decoding_in,
            length_in,
            state,
        ]
        page_outputs = [
            caption_out,
            objects_out,
            annotated_out,
            semantic_out,
            panoptic_out,
            table_out,
            timings_out,
            json_out,
            state,
        ]
        heavy = {"concurrency_id": "heavy", "concurrency_limit": 1}
        # Progress (and, on failure, the error badge) shows on the caption only, not on every picture; the error's
        # message itself appears as a notice at the top of the page.
        ui_run = {
            "preprocess": False,
            "api_visibility": "private",
            "trigger_mode": "always_last",
            "show_progress_on": [caption_out],
            **heavy,
        }
        for trigger in (image_in.change, analyze_button.click, decoding_in.input, length_in.release):
            trigger(analyze_ui, page_inputs, page_outputs, **ui_run)
        for dropdown, note, kind in (
            (captioner_in, captioner_note, "captioner"),
            (segmenter_in, segmenter_note, "segmenter"),
        ):
            dropdown.input(
                lambda name, kind=kind: model_status(kind, name),
                dropdown,
                note,
                api_visibility="private",
                queue=False,
            ).then(analyze_ui, page_inputs, page_outputs, **ui_run)
        display_outputs = page_outputs[:-1]
        for trigger in (threshold_in.release, opacity_in.release, views_in.input):
            trigger(
                rerender_ui,
                [threshold_in, opacity_in, views_in, state],
                display_outputs,
                api_visibility="private",
                concurrency_id="display",
                concurrency_limit=4,
                trigger_mode="always_last",
                show_progress="minimal",
            )
        notes_timer = gr.Timer(2.0)

        def refresh_notes(captioner_name, segmenter_name):
            still_loading = "loading" in LOADING.values()
            return (
                model_status("captioner", captioner_name),
                model_status("segmenter", segmenter_name),
                gr.Timer(active=still_loading),
            )

        notes_timer.tick(
            refresh_notes,
            [captioner_in, segmenter_in],
            [captioner_note, segmenter_note, notes_timer],
            api_visibility="private",
            queue=False,
            show_progress="hidden",
        )
        read_button.click(None, [caption_out, objects_out], None, js=READ_ALOUD_JS, api_visibility="private")
        live_in.stream(
            live_ui,
            [live_in, captioner_in, segmenter_in, threshold_in],
            [live_out, live_caption, live_stats],
            api_visibility="private",
            stream_every=0.5,
            time_limit=live_time_limit,
            concurrency_id="live",
            concurrency_limit=live_sessions,
            show_progress="hidden",
        )
        api_buttons[0].click(
            caption_api,
            [api_image, api_captioner],
            api_caption,
            api_name="caption",
            preprocess=False,
            api_description="Caption one image: (image, captioner) -> the caption text.",
            **heavy,
        )
        api_buttons[1].click(
            segment_api,
            [api_image, api_segmenter, api_threshold, api_subtask],
            api_json,
            api_name="segment",
            preprocess=False,
            **heavy,
            api_description="Segment one image: (image, segmenter, threshold, subtask all|instance|semantic|"
            "panoptic) -> JSON with instances (masks as COCO RLE), semantic and panoptic maps (16-bit PNG).",
        )
        api_buttons[2].click(
            analyze_api,
            [api_image, api_captioner, api_segmenter, api_options],
            [api_json, api_annotated],
            api_name="analyze",
            preprocess=False,
            **heavy,
            api_description="Caption and segment one image: (image, captioner, segmenter, options) -> (the output "
            f"contract as JSON, the annotated image). options keys and defaults: {ANALYZE_OPTIONS}.",
        )
        api_buttons[3].click(
            live_frame,
            [api_image, api_captioner, api_segmenter, api_threshold],
            [api_live_image, api_caption, api_live_stats],
            api_name="live_frame",
            preprocess=False,
            concurrency_id="live_api",
            concurrency_limit=live_sessions,
            api_description="The live view's work on one frame: (frame, captioner, segmenter, threshold) -> "
            "(annotated frame, running caption, stats JSON with fps and dropped frames). Call it in a loop; "
            "the caption refreshes every few seconds or on a scene change.",
        )
    demo.queue(max_size=64, default_concurrency_limit=1)
    demo.model_cache = models  # for start-up preloading and tests
    demo.live_sessions = live
    return demo


def _timed(model: Any, image: Image.Image, **options: Any) -> tuple[Any, float]:
    tick = time.perf_counter()
    output = model(image, **options)
    return output, (time.perf_counter() - tick) * 1000.0


def launch_options(args: argparse.Namespace | None = None) -> dict[str, Any]:
    """``demo.launch`` keyword arguments: Gradio 6 takes the theme and css here, not in ``Blocks``."""
    options: dict[str, Any] = {"theme": THEME, "css": CSS, "max_file_size": "25mb", "footer_links": ["api"]}
    if args is not None:
        options.update(server_name=args.host, server_port=args.port)
    return options


def _settings_from(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "default_captioner": args.captioner,
        "default_segmenter": args.segmenter,
        "cache": ModelCache(
            device=args.device,
            max_models=None if on_zerogpu() else args.max_models,
            loaders={
                "captioner": partial(load_captioner, profile=args.profile),
                "segmenter": partial(load_segmenter, profile=args.profile),
            },
        ),
        "live_sessions": args.live_sessions,
    }


def _preload(cache: ModelCache, args: argparse.Namespace) -> None:
    """Load the default models (on ZeroGPU every model that loads here), recording progress in ``LOADING``."""
    kinds = ("captioner", args.captioner), ("segmenter", args.segmenter)
    wanted = [(kind, best_available(kind, [s.name for s in list_models(kind)], chosen)) for kind, chosen in kinds]
    if on_zerogpu():  # a model can only be placed on the GPU now, so place every one that can be loaded
        wanted += [
            (kind, spec.name) for kind, _ in kinds for spec in list_models(kind) if (kind, spec.name) not in wanted
        ]
    LOADING.update({key: "loading" for key in wanted})
    for kind, name in wanted:
        try:
            cache.get(kind, name)
            LOADING[(kind, name)] = "ready"
            print(f"loaded {kind} {name!r}")
        except (ModelUnavailableError, ValueError) as problem:
            LOADING[(kind, name)] = str(problem)
            print(f"warning: {problem}")


# `python app.py --help` answers before any model is touched; imported (tests, `gradio app.py`), flags come from the
# environment only.
_cli = parse_args() if __name__ == "__main__" else parse_args([])
if _cli.offline:
    os.environ["HF_HUB_OFFLINE"] = "1"
demo = build_demo(**_settings_from(_cli))

if __name__ == "__main__":
    if _cli.no_preload:
        demo.launch(**launch_options(_cli))
    elif on_zerogpu():
        # Models go to cuda in this main thread before launch(): spaces' CUDA emulation is active here only, and
        # launch() packs what was placed for the GPU workers.
        _preload(demo.model_cache, _cli)
        demo.launch(**launch_options(_cli))
    else:
        # Serve at once and load behind the page: a request for a model still loading waits for that one load.
        demo.launch(prevent_thread_lock=True, **launch_options(_cli))
        _preload(demo.model_cache, _cli)
        demo.block_thread()
