"""The Gradio app: say in one sentence what a photo or a webcam frame shows, and outline every object in it.

    python app.py                                   # http://127.0.0.1:7860, best models that load here
    python app.py --host 0.0.0.0 --port 8080 --captioner shapes --segmenter shapes --offline
    python app.py --help                            # every flag; each also has an environment variable

This file is the page's layout and its wiring only. The work is :class:`pipeline.serve.service.Service`'s
(gradio-free, unit-tested): requests checked against the model menus and the option bounds, models from one cache,
both halves at once, results and pictures; the handlers below turn its :class:`~pipeline.serve.intake.RequestError`
into the page's messages. The page's controls take their bounds from the pipelines' option declarations
(:mod:`pipeline.serve.options`). Endpoints for ``gradio_client`` (``Client(url).view_api()`` lists them with types
and bounds): ``/caption``, ``/segment``, ``/analyze``, ``/describe``, ``/ask``, ``/compare`` and ``/live_frame``
(the live view's per-frame work: streaming events cannot be called from ``gradio_client``). All but ``/live_frame``
are MCP tools for assistants too, at ``/gradio_api/mcp/`` (``--no-mcp`` turns them off; descriptions in
:mod:`pipeline.serve.tools`).

Concurrency: model runs share the ``heavy`` queue (one at a time, in photo worker threads of lowered priority), the
live stream and ``/live_frame`` have their own queues at the normal priority, and display-only redraws their own, so
a long analysis never holds up live frames or a slider.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from pipeline.answering import QUESTION
from pipeline.catalog import NO_STUFF, availability
from pipeline.serve.config import build_service, parse_args, setup_notes
from pipeline.serve.endpoints import ANALYZE_OPTIONS, ASK_OPTIONS, COMPARE_OPTIONS, DESCRIBE_OPTIONS, MAX_COMPARED
from pipeline.serve.intake import RequestError
from pipeline.serve.menus import NO_ANSWERER
from pipeline.serve.options import OPTIONS, client_defaults
from pipeline.serve.overlay import outlines_svg
from pipeline.serve.page_html import EMPTY_ANSWER, EMPTY_CAPTION, EMPTY_OBJECTS, PAGE_ASSETS
from pipeline.serve.photo import Analysis
from pipeline.serve.process import limit_malloc_arenas
from pipeline.serve.service import Service
from pipeline.serve.tools import endpoint_description, tool_docstring
from pipeline.serve.zerogpu import DEFAULT_DURATION, gpu, on_zerogpu

# The example photos are in a checkout and on the Space; installed from a wheel, the page goes without them.
EXAMPLES_DIR = Path(__file__).resolve().parent / "space" / "examples"
PAGE_DIR = PAGE_ASSETS  # the page's stylesheet and scripts, shipped with the package
CSS = (PAGE_DIR / "page.css").read_text()
READ_ALOUD_JS = (PAGE_DIR / "read_aloud.js").read_text()
ANSWER_SOURCE = (PAGE_DIR / "answer.js").read_text()  # after an answer: the live region, its outlines, its speech
# Run once on load: the accessibility fixes and highlights, speech, the camera choice (each one arrow function).
PAGE_SCRIPTS = ("a11y.js", "speech.js", "camera.js", "live_overlay.js")


def answer_js(prefix: str) -> str:
    """serve/page/answer.js for one tab's answer block, live region and "Read answers aloud" box: the ids
    :func:`_question_box` gives them after ``prefix``."""
    ids = {"block": f"#{prefix}answer", "region": f"#{prefix}answer-announcer", "speak": f"#{prefix}speak-answers"}
    return f"() => ({ANSWER_SOURCE.strip()})({json.dumps(ids)})()"


#: After an answer on the photo tab, and on the live tab.
ANSWER_JS, LIVE_ANSWER_JS = answer_js(""), answer_js("live-")
#: The live tab's outlines before the first frame: an empty drawing.
EMPTY_OUTLINES = outlines_svg([], (4, 3))
#: The least time between two frames the browser sends (s): 25 a second at most.
LIVE_STREAM_EVERY = 0.04
PAGE_JS = "() => {\n" + "".join(f"({(PAGE_DIR / name).read_text()})();\n" for name in PAGE_SCRIPTS) + "}"
SPEECH_JS = "() => {{ window.pageSpeech && window.pageSpeech.{}(); return []; }}"  # .format("stop" or "repeat")
GREEDY, BEAM = "Greedy (fastest)", "Beam search (4 beams, better wording)"
VIEWS = ("objects", "semantic", "panoptic")
TABLE_HEADERS = ["object", "score", "pixels", "%"]
THEME = gr.themes.Soft(primary_hue="indigo", text_size="lg")
#: The webcams start on the rear camera where there is one (someone describing their surroundings points the phone
#: at them); the page's camera choice overrides it (serve/page/camera.js). Not mirrored: the rear camera is not.
#: The size is the one Gradio asks for when given no constraints.
REAR_VIDEO = {"facingMode": {"ideal": "environment"}, "width": {"ideal": 1920}, "height": {"ideal": 1440}}
REAR_CAMERA = gr.WebcamOptions(mirror=False, constraints={"video": REAR_VIDEO})
#: The live tab asks for a 640x480 camera: the browser encodes every frame it sends as a JPEG, and the live view
#: shrinks frames to 480 px first (pipeline.stream), so a larger camera costs each frame time and gives nothing.
LIVE_VIDEO = {**REAR_VIDEO, "width": {"ideal": 640}, "height": {"ideal": 480}}
LIVE_CAMERA = gr.WebcamOptions(mirror=False, constraints={"video": LIVE_VIDEO})


# -- handlers: module-level, over the Service ---------------------------------------------------------------------


def for_clients(handler: Callable) -> Callable:
    """A client's mistake becomes a message in the page (and ``gradio_client``), never a traceback in the log."""

    @functools.wraps(handler)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except RequestError as error:
            raise gr.Error(str(error), title=error.title, print_exception=False) from None

    return run


def caption_options(decoding: str, length: float) -> dict[str, int]:
    return {"max_new_tokens": int(length), "num_beams": 4 if decoding == BEAM else 1}


def page_views(service: Service, analysis: Analysis | None, threshold, opacity, views, note: str = "") -> tuple:
    """Everything the photo tab shows, from a kept analysis (:meth:`PhotoPage.page`); no model runs here."""
    shown = service.photos.page(analysis, threshold=threshold, opacity=opacity, views=views, note=note)
    pictures = [gr.update(value=shown["pictures"].get(view), visible=view in views) for view in VIEWS]
    words = [shown[key] for key in ("caption", "grounded", "description", "objects", "objects_list")]
    return (*words, *pictures, shown["table"], shown["timings"], shown["download"])


@for_clients
def analyze_ui(service, payload, captioner, segmenter, threshold, opacity, views, decoding, length, stuff, last):
    if payload is None:
        return (*page_views(service, None, threshold, opacity, views), None)
    analysis = service.photos.photo(
        payload,
        captioner,
        segmenter,
        caption_options=caption_options(decoding, length),
        threshold=threshold,
        last=last,
        stuff=stuff,
    )
    return (*page_views(service, analysis, threshold, opacity, views), analysis)


@for_clients
def ask_ui(service, question, answerer, threshold, last, history):
    return service.photos.ask(last, question, answerer, threshold=threshold, history=history)


@for_clients
def live_ask_ui(service, question, answerer, history, request: gr.Request):
    return service.live.ask(request.session_hash, question, answerer, history)


@for_clients
def rerender_ui(service, threshold, opacity, views, last):
    if last is not None and last.floor > threshold:
        gr.Info("The threshold is below the last run's: press Analyze to find fainter objects.")
    return page_views(service, last, threshold, opacity, views, note="re-drawn, models not re-run")


@for_clients
def live_frame_api(service, frame, captioner, segmenter, threshold, request: gr.Request):
    return service.live.frame(getattr(request, "session_hash", None), frame, captioner, segmenter, threshold)


@for_clients
def live_ui(service, frame, captioner, segmenter, threshold, request: gr.Request):
    if frame is None:
        return EMPTY_OUTLINES, "", "Waiting for the camera…"
    outlines, caption, stats = service.live.overlay(request.session_hash, frame, captioner, segmenter, threshold)
    # Only what changed: the caption when there is a new one, the figures twice a second, the outlines every frame.
    line = gr.skip()
    if stats is not None:
        line = (
            f"**{stats['fps']:.1f} frames/s** · {stats['frames_processed']} processed · "
            f"{stats['frames_dropped']} stale dropped · {stats.get('key_frames', 0)} key frames · "
            f"objects: {stats.get('objects', '…')}"
        )
    text = gr.skip() if caption is None else caption or "(the first caption is on its way…)"
    return outlines, text, line


@for_clients
def compare_ui(service, payload, captioners, decoding, length):
    rows = service.endpoints.compare(payload, captioners, caption_options(decoding, length))
    return [[row["name"], row["caption"] or f"(error: {row['error']})", round(row["milliseconds"])] for row in rows]


# -- the page -----------------------------------------------------------------------------------------------------


def build_demo(
    service: Service,
    models: dict[str, str],
    *,
    examples_dir: Path | None = EXAMPLES_DIR,
    default_threshold: float = 0.5,
    live_time_limit: int = 900,
) -> gr.Blocks:
    """The Blocks app over ``service``, starting on ``models`` (:func:`build_service`'s), its queue configured; call
    ``launch(**launch_options())``."""
    bind = functools.partial
    menus = service.models.menus
    captioners, segmenters = menus.names("captioner"), menus.names("segmenter")
    default_captioner, default_segmenter = models.get("captioner"), models.get("segmenter")
    with gr.Blocks(title="Describe and outline", delete_cache=(1800, 3600)) as demo:
        gr.Markdown(
            "# Describe and outline\nGive a photo: the app says in one sentence what it shows and outlines "
            "every object in it. **Read aloud** speaks what it shows and where; Tab reaches every control."
        )
        notes = setup_notes(models)
        if notes:
            gr.Markdown("**Note for the operator:** " + " ".join(notes), elem_id="setup-note")
        state = gr.State(None, time_to_live=1800)
        page = _photo_tab(
            service, captioners, segmenters, default_captioner, default_segmenter, examples_dir, default_threshold,
            stuff=models.get("stuff"),
        )  # fmt: skip
        _ask_box(service, page, models.get("answerer", NO_ANSWERER))
        live = _live_tab()
        compare = _compare_tab(service, default_captioner)
        _wire_photo(service, page, state)
        _wire_live(service, page, live, live_time_limit)
        compare.button.click(
            bind(compare_ui, service),
            [compare.image, compare.captioners, page.decoding, page.length],
            compare.table,
            api_visibility="private",
            preprocess=False,
            concurrency_id="heavy",
        )
        _api_endpoints(
            service,
            captioners,
            segmenters,
            default_captioner,
            default_segmenter,
            models.get("stuff"),
            models.get("answerer", NO_ANSWERER),
        )
    # Gradio's queue recomputes a traffic summary (a pandas table of its last 10000 events) after every event, for its
    # /monitoring page, which launch_options turns off: 2-8 ms of CPU for each live frame. Once per 10**9 events.
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", str(10**9))
    # /live_frame's annotated frames are served from the live view's own bounded ring (in memory where the machine
    # has a tmpfs), not copied into Gradio's cache: a script's loop added a file there each call (30-65 KB, 8 a
    # second, kept an hour by delete_cache).
    gr.set_static_paths([service.live.files.folder])
    demo.queue(max_size=64, default_concurrency_limit=1)
    demo.service = service  # for start-up preloading and tests
    return demo


class _Parts(dict):
    """The components of one part of the page, by name (``parts.caption``)."""

    __getattr__ = dict.__getitem__


def _photo_tab(service, captioners, segmenters, captioner, segmenter, examples_dir, threshold, stuff=None) -> _Parts:
    parts = _Parts()
    with gr.Tab("Photo", id="photo"), gr.Row(equal_height=False, elem_id="photo-row"):
        with gr.Column(scale=5, min_width=300):
            parts["image"] = gr.Image(
                label="Photo",
                sources=["upload", "clipboard", "webcam"],
                type="filepath",
                height=320,
                elem_id="image-in",
                placeholder="Drop a photo here, click to upload, paste, or use the camera",
                webcam_options=REAR_CAMERA,
            )
            if examples_dir is not None and examples_dir.is_dir():
                files = sorted(str(p) for p in examples_dir.iterdir() if p.suffix.lower() in (".jpg", ".png"))
                gr.Examples(files, inputs=parts.image, label="Examples (public domain / CC0)")
            parts["analyze"] = gr.Button("Analyze", variant="primary", elem_id="analyze")
            # The sentence comes right after the photo so that a screen reader or a phone reaches it first.
            parts["caption"] = gr.Textbox(
                label="What the photo shows",
                lines=3,
                max_lines=10,
                interactive=False,
                elem_id="caption",
                buttons=["copy"],
                placeholder="The caption appears here.",
            )
            # Hovering or focusing a marked word outlines its objects (serve/page/a11y.js, serve/page_html.py)
            parts["grounded"] = gr.HTML(EMPTY_CAPTION, elem_id="grounded-caption")
            parts["description"] = gr.Textbox(
                label="What is where", lines=2, max_lines=12, interactive=False, elem_id="description"
            )
            parts["objects"] = gr.Textbox(label="Objects found", interactive=False, elem_id="objects-summary")
            parts["objects_list"] = gr.HTML(EMPTY_OBJECTS, label="Objects, one by one", elem_id="objects-list")
            parts["ask_group"] = gr.Group(elem_id="ask-group")  # filled by _ask_box
            with gr.Row(elem_id="speech-controls"):
                parts["read"] = gr.Button("Read aloud", elem_id="read-aloud", min_width=120)
                parts["stop"] = gr.Button("Stop reading", elem_id="stop-reading", size="md", min_width=100)
                parts["repeat"] = gr.Button("Repeat", elem_id="repeat-reading", size="md", min_width=100)
            parts["rate"] = gr.Slider(
                0.5, 2, 1, step=0.05, label="Speech rate", elem_id="speech-rate", interactive=True
            )
            kinds = (("captioner", captioner, "Captioner"), ("segmenter", segmenter, "Segmenter"),
                     ("stuff", stuff or NO_STUFF, "Stuff (sky, grass, water, ...)"))  # fmt: skip
            for kind, chosen, label in kinds:
                parts[kind] = gr.Dropdown(service.photos.menu(kind), value=chosen, label=label, elem_id=kind)
                parts[f"{kind}_note"] = gr.Markdown(service.photos.model_note(kind, chosen), elem_id=f"{kind}-note")
            with gr.Accordion("Settings", open=False, elem_id="settings"):
                parts["threshold"] = gr.Slider(
                    *OPTIONS["threshold"].bounds(bounded=True),
                    value=threshold,
                    step=0.05,
                    label="Score threshold",
                    info="objects below this are hidden",
                )
                opacity = OPTIONS["opacity"]
                parts["opacity"] = gr.Slider(
                    *opacity.bounds(bounded=True), value=opacity.default, step=0.05, label="Mask opacity"
                )
                parts["views"] = gr.CheckboxGroup(
                    [("Objects", "objects"), ("Semantic map", "semantic"), ("Panoptic view", "panoptic")],
                    value=list(VIEWS),
                    label="Views",
                    elem_id="views",
                )
                parts["decoding"] = gr.Radio([GREEDY, BEAM], value=GREEDY, label="Caption search", elem_id="decoding")
                length = OPTIONS["max_new_tokens"]
                parts["length"] = gr.Slider(
                    *length.bounds(bounded=True), value=length.default, step=1, label="Longest caption (tokens)"
                )
        with gr.Column(scale=7, min_width=300):
            parts["annotated"] = gr.Image(label="Objects", type="filepath", elem_id="annotated", interactive=False)
            with gr.Row(elem_id="maps"):
                for view, label in (("semantic", "Semantic map"), ("panoptic", "Panoptic view")):
                    parts[view] = gr.Image(
                        label=label, type="filepath", elem_id=view, interactive=False, min_width=280
                    )
            parts["table"] = gr.Dataframe(
                headers=TABLE_HEADERS,
                label="Objects table",
                interactive=False,
                elem_id="objects-table",
                max_height=320,
            )
            parts["timings"] = gr.Markdown(elem_id="timings")
            parts["json"] = gr.File(label="Download the result (JSON, masks as COCO RLE)", elem_id="json")
    return parts


def _question_box(parts: _Parts, prefix: str, label: str, example: str) -> None:
    """One tab's questions: a labelled box (Enter asks), the answer in large type with the earlier ones, a polite live
    region that says each answer (serve/page/answer.js writes it there: a screen reader hears each answer once, not
    the progress text) and "Read answers aloud". Element ids: the photo tab's, ``prefix`` ("live-") before them."""
    parts["question"] = gr.Textbox(
        label=label,
        placeholder=f"How many people are there? What colour is the car? {example}",
        max_length=QUESTION.max_length,
        lines=1,
        max_lines=1,
        elem_id=f"{prefix}ask-question",
    )
    with gr.Row(elem_id=f"{prefix}ask-controls"):
        parts["ask"] = gr.Button("Ask", elem_id=f"{prefix}ask-button", min_width=100)
        parts["speak_answers"] = gr.Checkbox(
            False, label="Read answers aloud", elem_id=f"{prefix}speak-answers", interactive=True, min_width=160
        )
    parts["answer"] = gr.HTML(EMPTY_ANSWER, elem_id=f"{prefix}answer")
    announcer = f'<p id="{prefix}answer-announcer" class="visually-hidden" aria-live="polite"></p>'
    gr.HTML(announcer, elem_id=f"{prefix}answer-region")
    parts["history"] = gr.State(None, time_to_live=1800)


def _ask_box(service: Service, page: _Parts, answerer: str) -> None:
    """The photo tab's questions (:func:`_question_box`) and the answerer menu ("none": the objects only)."""
    with page.ask_group:
        _question_box(page, "", "Ask about this photo", "Where is the dog?")
        none = (f"{NO_ANSWERER} — answers from the objects found only", NO_ANSWERER)
        page["answerer"] = gr.Dropdown(
            [*service.photos.menu("answerer"), none],
            value=answerer,
            label="Answerer (questions the objects cannot answer)",
            elem_id="answerer",
        )


def _live_tab() -> _Parts:
    parts = _Parts()
    with gr.Tab("Live camera", id="live", visible=not on_zerogpu()):
        gr.Markdown(
            "Start the camera: the objects are outlined on the camera's picture several times a second, and the "
            "caption is refreshed every few seconds or when the scene changes. Frames the server cannot keep up "
            "with are skipped, never queued."
        )
        # On a phone the sentence and its speech come first, above the pictures, reachable without scrolling.
        parts["caption"] = gr.Textbox(
            label="What the camera shows", lines=2, max_lines=6, interactive=False, elem_id="live-caption"
        )
        with gr.Row(elem_id="live-controls"):
            parts["speak"] = gr.Checkbox(
                False, label="Speak each new caption", elem_id="speak-live", interactive=True, min_width=160
            )
            # serve/page/camera.js asks the browser for this camera when the webcam starts.
            parts["facing"] = gr.Radio(
                [("Rear camera", "environment"), ("Front camera (selfie)", "user")],
                value="environment",
                label="Camera",
                info="the rear one sees what is in front of you; switch at any time",
                elem_id="camera-facing",
                interactive=True,  # read by the page's script, an input of no event: Gradio would disable it
                min_width=160,
            )
        _live_ask_box(parts)
        with gr.Row(elem_id="live-row"):
            parts["camera"] = gr.Image(
                label="Camera",
                sources=["webcam"],
                streaming=True,
                type="pil",
                elem_id="live-in",
                height=320,
                webcam_options=LIVE_CAMERA,
            )
        # The outlines of each frame, as SVG that serve/page/live_overlay.js lays over the camera's own preview.
        parts["outlines"] = gr.HTML(EMPTY_OUTLINES, elem_id="live-outlines", padding=False)
        # A screen reader hears each new caption once (serve/page/a11y.js mirrors the box), not every frame.
        gr.HTML('<p id="live-announcer" class="visually-hidden" aria-live="polite"></p>', elem_id="live-region")
        parts["stats"] = gr.Markdown("Waiting for the camera…", elem_id="live-stats")
    return parts


def _live_ask_box(parts: _Parts) -> None:
    """The live tab's questions about the camera's latest frame, as the photo tab's (:func:`_question_box`); the
    answerer is the photo tab's menu."""
    with gr.Group(elem_id="live-ask-group"):
        _question_box(parts, "live-", "Ask about what the camera shows", "Where is the door?")


def _compare_tab(service: Service, chosen: str | None) -> _Parts:
    parts = _Parts()
    usable = service.photos.available("captioner")
    with gr.Tab("Compare", id="compare"):
        gr.Markdown(f"Caption one photo with 2 to {MAX_COMPARED} captioners, side by side, each with its time.")
        if len(usable) < 2:
            gr.Markdown(
                f"**Only {len(usable)} of the captioners can be loaded on this server**: the others are marked "
                "*not available here*, with the reason.",
                elem_id="compare-note",
            )
        with gr.Row(equal_height=False):
            parts["image"] = gr.Image(
                label="Photo to compare",
                sources=["upload", "clipboard"],
                type="filepath",
                height=260,
                elem_id="compare-in",
            )
            with gr.Column():
                # Ticked by default: the page's captioner and the next one that loads here, never one that cannot.
                ticked = [name for name in [chosen, *usable] if name in usable]
                parts["captioners"] = gr.CheckboxGroup(
                    service.photos.menu("captioner"),
                    value=list(dict.fromkeys(ticked))[:2],
                    label="Captioners",
                    elem_id="compare-captioners",
                )
                parts["button"] = gr.Button("Compare", variant="primary", elem_id="compare-run")
        parts["table"] = gr.Dataframe(
            headers=["captioner", "caption", "ms"],
            label="Captions side by side",
            interactive=False,
            elem_id="compare-table",
            wrap=True,
        )
    return parts


def _wire_photo(service: Service, page: _Parts, state: gr.State) -> None:
    settings = ("image", "captioner", "segmenter", "threshold", "opacity", "views", "decoding", "length", "stuff")
    inputs = [*(page[name] for name in settings), state]
    shown = ("caption", "grounded", "description", "objects", "objects_list", "annotated", "semantic", "panoptic")
    outputs = [page[name] for name in (*shown, "table", "timings", "json")]
    # Progress (and, on failure, the error badge) shows on the caption only; the message is a notice at the top.
    run = {
        "api_visibility": "private",
        "preprocess": False,  # the handler reads the upload itself, so that a bad file becomes a message
        "trigger_mode": "always_last",
        "show_progress_on": [page.caption],
        "concurrency_id": "heavy",
        "concurrency_limit": 1,
    }
    analyze = functools.partial(analyze_ui, service)
    for trigger in (page.image.change, page.analyze.click, page.decoding.input, page.length.release):
        trigger(analyze, inputs, [*outputs, state], **run)
    timer = gr.Timer(2.0)

    def refresh_notes(captioner, segmenter, stuff):
        return (
            service.photos.model_note("captioner", captioner),
            service.photos.model_note("segmenter", segmenter),
            service.photos.model_note("stuff", stuff),
            gr.Timer(active=service.models.cache.loading()),
        )

    notes = {
        "fn": refresh_notes,
        "inputs": [page.captioner, page.segmenter, page.stuff],
        "outputs": [page.captioner_note, page.segmenter_note, page.stuff_note, timer],
        "api_visibility": "private",
        "queue": False,
        "show_progress": "hidden",
    }
    for kind in ("captioner", "segmenter", "stuff"):
        # The note says at once what was chosen, again when the analysis with it is done (it may have loaded it).
        page[kind].input(**notes).then(analyze, inputs, [*outputs, state], **run).then(**notes)
    for trigger in (page.threshold.release, page.opacity.release, page.views.input):
        trigger(
            functools.partial(rerender_ui, service),
            [page.threshold, page.opacity, page.views, state],
            outputs,
            api_visibility="private",
            concurrency_id="display",
            concurrency_limit=4,
            trigger_mode="always_last",
            show_progress="minimal",
        )
    timer.tick(**notes)
    asked = {
        "fn": functools.partial(ask_ui, service),
        "inputs": [page.question, page.answerer, page.threshold, state, page.history],
        "outputs": [page.answer, page.history],
        "api_visibility": "private",
        "concurrency_id": "heavy",
        "concurrency_limit": 1,
        "show_progress_on": [page.answer],
    }
    for trigger in (page.question.submit, page.ask.click):
        trigger(**asked).success(None, None, None, js=ANSWER_JS, api_visibility="private")
    # Another photo: its answers start afresh.
    page.image.change(
        lambda: (EMPTY_ANSWER, None), None, [page.answer, page.history], api_visibility="private", queue=False,
        show_progress="hidden",
    )  # fmt: skip
    read = [page.caption, page.description, page.objects]
    page.read.click(None, read, None, js=READ_ALOUD_JS, api_visibility="private")
    for button in ("stop", "repeat"):
        page[button].click(None, None, None, js=SPEECH_JS.format(button), api_visibility="private")


def _wire_live(service: Service, page: _Parts, live: _Parts, time_limit: int) -> None:
    def stream(frame, captioner, segmenter, threshold, request: gr.Request):
        return live_ui(service, frame, captioner, segmenter, threshold, request)

    live.camera.stream(
        stream,
        [live.camera, page.captioner, page.segmenter, page.threshold],
        [live.outlines, live.caption, live.stats],
        api_visibility="private",
        # The frame as the browser sent it (a data: URL), decoded in memory with the app's byte and pixel limits.
        preprocess=False,
        # The browser sends the next frame once the last is answered, at most this often: the server's pace sets the
        # rate (gradio's default, 0.5 s, capped it at 2 frames/s).
        stream_every=LIVE_STREAM_EVERY,
        time_limit=time_limit,
        concurrency_id="live",
        concurrency_limit=service.models.live_sessions,
        show_progress="hidden",
    )

    # Not named "ask": Gradio names an event's endpoint after its function, and /ask is the scripts' own.
    def live_question(question, answerer, history, request: gr.Request):
        return live_ask_ui(service, question, answerer, history, request)

    asked = {
        "fn": live_question,
        "inputs": [live.question, page.answerer, live.history],
        "outputs": [live.answer, live.history],
        "api_visibility": "private",
        "concurrency_id": "heavy",
        "concurrency_limit": 1,
        "show_progress_on": [live.answer],
    }
    for trigger in (live.question.submit, live.ask.click):
        trigger(**asked).success(None, None, None, js=LIVE_ANSWER_JS, api_visibility="private")


#: The endpoints for scripts (each an MCP tool too): (name, its hidden inputs, its outputs). The descriptions, with
#: the option bounds from the pipelines' declarations, are pipeline.serve.tools'.
ENDPOINTS = [
    ("caption", ["image", "captioner"], ["text"]),
    ("segment", ["image", "segmenter", "threshold", "subtask", "stuff"], ["data"]),
    ("analyze", ["image", "captioner", "segmenter", "options", "stuff"], ["data", "picture"]),
    ("describe", ["image", "captioner", "segmenter", "describe_options", "stuff"], ["data"]),
    ("ask", ["image", "question", "segmenter", "answerer", "ask_options"], ["data"]),
    ("compare", ["image", "captioners", "compare_options"], ["data"]),
]


OBJECT = {"type": "object", "additionalProperties": True}


def json_input(value: Any, label: str, schema: dict[str, Any]) -> gr.JSON:
    """A ``gr.JSON`` input that tells API clients its JSON Schema type. ``gr.JSON`` says ``{"type": {}}`` ("any
    JSON"), which is no JSON Schema: an MCP server checks each call against the schema it lists, and every call of a
    tool with such a parameter fails. Gradio reads an input's type from ``api_info_as_input``."""
    component = gr.JSON(value, label=label)
    component.api_info_as_input = lambda: {**schema, "description": f"JSON {schema['type']}"}
    return component


def tool_handler(service: Service, name: str, defaults: dict[str, str | None]) -> Callable:
    """The endpoint's handler, named after it, with the docstring whose ``Args:`` gradio's MCP server reads."""
    method = getattr(service.endpoints, name)
    handler = for_clients(method)
    menus = {kind: service.models.menus.names(kind) for kind in ("captioner", "segmenter", "stuff", "answerer")}
    handler.__doc__ = tool_docstring(name, list(inspect.signature(method).parameters), menus, defaults)
    return handler


def _api_endpoints(
    service: Service, captioners, segmenters, captioner, segmenter, stuff=None, answerer=NO_ANSWERER
) -> None:
    """Hidden inputs and outputs that give each endpoint its documented parameters, and the endpoints."""
    threshold, subtask = OPTIONS["threshold"], OPTIONS["subtask"]
    low, high = threshold.bounds(bounded=True)
    with gr.Column(visible=False):
        fields = {
            "image": gr.Image(label="image", type="filepath"),
            "captioner": gr.Dropdown(captioners, value=captioner, label="captioner", allow_custom_value=True),
            "segmenter": gr.Dropdown(segmenters, value=segmenter, label="segmenter", allow_custom_value=True),
            "stuff": gr.Dropdown(
                service.models.menus.names("stuff"), value=stuff or NO_STUFF, label="stuff", allow_custom_value=True
            ),
            "threshold": gr.Number(threshold.default, label="threshold", minimum=low, maximum=high),
            "subtask": gr.Dropdown(
                [subtask.none_means, *subtask.choices], value=subtask.client_default, label="subtask"
            ),
            "options": json_input(client_defaults(ANALYZE_OPTIONS), "options", OBJECT),
            "describe_options": json_input(client_defaults(DESCRIBE_OPTIONS), "options", OBJECT),
            "compare_options": json_input(client_defaults(COMPARE_OPTIONS), "options", OBJECT),
            "ask_options": json_input(client_defaults(ASK_OPTIONS), "options", OBJECT),
            "question": gr.Textbox(label="question", max_length=QUESTION.max_length),
            "answerer": gr.Dropdown(
                [*service.models.menus.names("answerer"), NO_ANSWERER],
                value=answerer,
                label="answerer",
                allow_custom_value=True,
            ),
            "captioners": json_input([captioner], "captioners", {"type": "array", "items": {"type": "string"}}),
            "text": gr.Textbox(label="caption"),
            "data": gr.JSON(label="result"),
            "picture": gr.Image(label="annotated image", type="filepath"),
            "frame": gr.Image(label="annotated frame", type="filepath", format="jpeg"),  # a frame: quick to encode
        }
        buttons = [gr.Button(visible=False) for _ in range(len(ENDPOINTS) + 1)]
    defaults = {"captioner": captioner, "segmenter": segmenter, "stuff": stuff or NO_STUFF, "answerer": answerer}
    for button, (name, inputs, outputs) in zip(buttons, ENDPOINTS):
        button.click(
            tool_handler(service, name, defaults),
            [fields[f] for f in inputs],
            [fields[f] for f in outputs],
            api_name=name,
            api_description=endpoint_description(name),
            preprocess=False,
            concurrency_id="heavy",
        )

    def live_frame(frame, captioner, segmenter, threshold, request: gr.Request):
        return live_frame_api(service, frame, captioner, segmenter, threshold, request)

    # Off the MCP list: a frame loop is the live view's, not an assistant's. Gradio's MCP server lists a handler as a
    # tool when its _mcp_type is "tool" or unset (gr.mcp.tool, resource and prompt set it), so any other value keeps
    # it off the list of tools, resources and prompts while gradio_client still calls it.
    live_frame._mcp_type = "none"

    buttons[-1].click(
        live_frame,
        [fields[f] for f in ("image", "captioner", "segmenter", "threshold")],
        [fields["frame"], fields["text"], fields["data"]],
        api_name="live_frame",
        preprocess=False,
        concurrency_id="live_api",
        concurrency_limit=service.models.live_sessions,
        api_description="The live view's work on one frame -> (annotated frame, running caption, stats: fps, dropped "
        "frames, key frames, and the frame's instances, masks as COCO RLE at the size sent); call it in a loop: "
        "between key frames the outlines are carried by optical flow, and another threshold or model applies to the "
        "next frame. threshold: " + threshold.describe(bounded=True),
    )


def launch_options(args: argparse.Namespace | None = None) -> dict[str, Any]:
    """``demo.launch`` keyword arguments: Gradio 6 takes the theme, css and page script here, not in ``Blocks``."""
    options: dict[str, Any] = {"theme": THEME, "css": CSS, "js": PAGE_JS, "max_file_size": "25mb"}
    options["footer_links"] = ["api"]
    # No /monitoring page: its summary (every endpoint's request counts and timings) is open to anyone who asks.
    options["enable_monitoring"] = False
    if args is not None:  # MCP at /gradio_api/mcp/ unless --no-mcp (APP_MCP=0)
        options.update(server_name=args.host, server_port=args.port, mcp_server=args.mcp)
    return options


@gpu(duration=DEFAULT_DURATION)
def run_on_gpu(captioner, segmenter, images, caption_options, segment_options, stuff=None):
    """ZeroGPU: the model run, inside ``spaces.GPU`` (a fork of the server with a GPU attached for this call; the
    models were placed on cuda at start-up, arguments and results are pickled across)."""
    return demo.service.run_models(
        captioner, segmenter, images, caption_options, segment_options, concurrent=False, stuff=stuff
    )


@gpu(duration=DEFAULT_DURATION)
def answer_on_gpu(question, image, instances, labels, answerer, image_size):
    """ZeroGPU: a question the objects cannot answer, answered inside ``spaces.GPU`` (as :func:`run_on_gpu`)."""
    return demo.service.models.answer_here(question, image, instances, labels, answerer, image_size)


def _gpu_runners() -> dict[str, Callable | None]:
    """The model runs that go through ``spaces.GPU`` on ZeroGPU; elsewhere none (they run in the photo threads)."""
    zerogpu = on_zerogpu()
    return {"runner": run_on_gpu if zerogpu else None, "answer_runner": answer_on_gpu if zerogpu else None}


# `python app.py --help` answers before any model is touched; imported (tests, `gradio app.py`, the
# `caption-segment-app` command before main()), flags come from the environment only.
_cli = parse_args() if __name__ == "__main__" else parse_args([])
limit_malloc_arenas()  # before the server's threads: its memory stays flat under load (pipeline.serve.process)
if _cli.offline:
    os.environ["HF_HUB_OFFLINE"] = "1"
_service, _defaults = build_service(_cli, **_gpu_runners())
demo = build_demo(_service, _defaults)


def main(argv: list[str] | None = None) -> None:
    """Serve the app with these flags (``caption-segment-app``, ``python app.py``; ``argv`` defaults to the command
    line's). The page built at import is reused when the flags are the environment's; other flags build it again."""
    global _cli, _service, _defaults, demo
    args = parse_args(argv)
    if args != _cli:
        if args.offline:
            os.environ["HF_HUB_OFFLINE"] = "1"
        _cli = args
        _service.close()  # the page built at import is replaced: its threads stop
        _service, _defaults = build_service(args, **_gpu_runners())
        demo = build_demo(_service, _defaults)
    kinds = ("captioner", "segmenter", "stuff")
    wanted = [(kind, _defaults[kind]) for kind in kinds if _defaults.get(kind) not in (None, NO_STUFF)]
    if on_zerogpu():  # a model can only be placed on the GPU now: place every one that can be loaded, then serve
        menus = _service.models.menus
        wanted += [(k, n) for k in kinds for n in menus.names(k) if (k, n) not in wanted and n != NO_STUFF]
        wanted += [("answerer", name) for name in menus.names("answerer") if availability(name, "answerer")[0]]
        _service.models.cache.preload(wanted)
        demo.launch(**launch_options(args))
    elif args.no_preload:
        demo.launch(**launch_options(args))
    else:  # serve at once and load behind the page: a request for a model still loading waits for that one load
        demo.launch(prevent_thread_lock=True, **launch_options(args))
        _service.models.cache.preload(wanted)
        demo.block_thread()


if __name__ == "__main__":
    main()
