"""What the served app does with a photo or a webcam frame, with no gradio: every endpoint's work, unit-tested alone.

:class:`Service` is the app's one worker: each request is checked (the model menus and the option bounds of
:mod:`pipeline.serving` and :mod:`pipeline.options`), its models come from one :class:`~pipeline.cache.ModelCache`,
the two halves run together (:func:`pipeline.combined.run_halves`) in photo worker threads of lowered priority, and
the output contract is put together by :func:`pipeline.combined.build_result`. The page's photo is kept between
events as an :class:`Analysis`: the same picture again reuses its caption or its segmentation, and a display
setting only redraws. Pictures for people are drawn at display size; masks are kept as COCO RLE, so what a session
holds does not grow with the photo. The app (``app.py``) turns :class:`~pipeline.serving.RequestError` into the
page's messages and hands the model runs to ZeroGPU where there is one (``runner``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from .cache import ModelCache, public_message
from .catalog import availability, get_spec
from .combined import Halves, build_result, run_halves
from .compare import compare_captioners
from .describe import describe as describe_words
from .describe import locate_objects
from .jsonform import to_json
from .kernels import limit_intraop_threads
from .options import OptionError, check_options
from .page_html import EMPTY_CAPTION, EMPTY_OBJECTS, grounded_caption_html, objects_list_html
from .panoptic import with_threshold
from .render import describe_objects, draw_instances, draw_panoptic, draw_semantic, objects_table
from .serving import ModelMenus, OutputFiles, RequestError, image_from_payload, lower_thread_priority
from .speed import segmenter_view
from .stream import LiveStream, SessionRegistry, scale_to_fit

#: The page runs the segmenter at no more than this threshold and filters for display, so that raising the slider
#: (and lowering it down to here) redraws without running the model again.
RUN_THRESHOLD_FLOOR = 0.3
#: Pictures for people are drawn at most this large (the longer side, in pixels), whatever the photo's size.
DISPLAY_SIDE = 1280
#: The options of each endpoint (their bounds are pipeline.options.OPTIONS).
ANALYZE_OPTIONS = ("threshold", "max_new_tokens", "num_beams", "subtask", "opacity", "detail", "max_objects")
DESCRIBE_OPTIONS = ("detail", "max_objects", "threshold")
COMPARE_OPTIONS = ("max_new_tokens", "num_beams")
#: The most captioners one /compare request may run.
MAX_COMPARED = 4


def image_digest(image: Image.Image) -> str:
    """A short content hash: the same picture uploaded twice is recognised and not analysed twice."""
    return hashlib.blake2b(image.tobytes() + repr(image.size).encode(), digest_size=12).hexdigest()


@dataclass
class Analysis:
    """One photo's analysis as the page keeps it between events (the photo itself is not kept, only its picture at
    display size; masks are COCO RLE).

    Attributes:
        digest: :func:`image_digest` of the photo.
        picture: the photo scaled to :data:`DISPLAY_SIDE`, to draw on.
        size: the photo's own ``(width, height)``.
        captioner, caption_options, caption, caption_ms: the caption and how it was made.
        segmenter, floor, segments, segment_ms: the segmentation (run at threshold ``floor``) and its time.
        labels: the segmenter's category names (for the grounding).
        total_ms: the run's wall time; reused: the halves taken from the previous analysis.
    """

    digest: str
    picture: Image.Image
    size: tuple[int, int]
    captioner: str
    caption_options: dict[str, Any]
    caption: str
    caption_ms: float
    segmenter: str
    floor: float
    segments: dict[str, Any]
    segment_ms: float
    labels: list[str] | None
    total_ms: float
    reused: tuple[str, ...] = field(default_factory=tuple)

    def result(self, threshold: float, **describe_options: Any) -> dict[str, Any]:
        """The output contract at a display threshold (at or above :attr:`floor`); no model runs."""
        shown = with_threshold(self.segments, max(threshold, self.floor))
        timings = {"caption": self.caption_ms, "segment": self.segment_ms, "total": self.total_ms}
        return build_result(
            self.caption, shown, self.size, models={"captioner": self.captioner, "segmenter": self.segmenter},
            timings_ms={key: round(value, 1) for key, value in timings.items()}, labels=self.labels,
            **describe_options,
        )  # fmt: skip


class Service:
    """Every endpoint's work: checks, models, runs, results (see the module docstring).

    Args:
        cache (ModelCache): where models are loaded and kept.
        menus (ModelMenus): what clients may choose.
        live_sessions (int, default 2): webcam streams served at once (more sessions are kept, least recent closed).
        runner (Callable | None, default None): runs a model job elsewhere (ZeroGPU: a ``spaces.GPU`` function);
            called as ``runner(captioner, segmenter, images, caption_options, segment_options)`` and returning
            :meth:`run_models`' :class:`~pipeline.combined.Halves`. None runs here, in the photo workers.
        max_pixels (int | None, default None): the image pixel limit; None reads ``PIPELINE_MAX_PIXELS``.
    """

    def __init__(
        self,
        cache: ModelCache,
        menus: ModelMenus,
        *,
        live_sessions: int = 2,
        runner: Callable[..., Halves] | None = None,
        max_pixels: int | None = None,
    ):
        self.cache, self.menus, self.runner, self.max_pixels = cache, menus, runner, max_pixels
        self.live_sessions = live_sessions
        # Model work runs in threads of its own, so that the threads that ever run PyTorch (each with its own team of
        # intra-op threads and their caches) are these few, not whichever of the web server's threads took a
        # request. Photo work runs at a lower priority, so that live frames get the cores first (pipeline.serving).
        self.workers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="photo", initializer=lower_thread_priority)
        self.live_workers = ThreadPoolExecutor(max_workers=live_sessions, thread_name_prefix="live")
        self.live_captions = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="live-caption",
            initializer=limit_intraop_threads,
            initargs=(max(1, torch.get_num_threads() // 2),),
        )
        self.files = OutputFiles()
        self.live = SessionRegistry(self._live_stream, max_sessions=max(4, 2 * live_sessions))

    # -- models ----------------------------------------------------------------------------------------------

    def model(self, kind: str, name: Any) -> Any:
        """The loaded model a client named, or a :class:`RequestError` that says why not (no server paths)."""
        checked = self.menus.check(kind, name)
        try:
            return self.cache.get(kind, checked)
        except Exception as error:  # a missing or broken model must not take the server down
            raise RequestError(public_message(error), title=f"The {kind} {checked!r} cannot be used") from error

    def run_models(
        self,
        captioner: str | None,
        segmenter: str | None,
        images: list[Image.Image],
        caption_options: dict[str, Any] | None = None,
        segment_options: dict[str, Any] | None = None,
        *,
        concurrent: bool = True,
    ) -> Halves:
        """Run the named (already checked) models on decoded images, both at once unless ``concurrent`` is False
        (a ZeroGPU worker is a fork of the server, without its threads); a None model is skipped."""
        captioning = self.cache.get("captioner", captioner) if captioner else None
        segmenting = self.cache.get("segmenter", segmenter) if segmenter else None
        executor = self.workers if concurrent else None
        return run_halves(images, captioning, segmenting, caption_options, segment_options, executor=executor)

    def _run(self, captioner: str | None, segmenter: str | None, image: Image.Image, caption_options, segment_options):
        for kind, name in (("captioner", captioner), ("segmenter", segmenter)):
            if name:
                self.model(kind, name)  # load (or fail with a message) before any GPU time is asked for
        try:
            if self.runner is not None:
                return self.runner(captioner, segmenter, [image], caption_options, segment_options)
            if captioner and segmenter:
                return self.run_models(captioner, segmenter, [image], caption_options, segment_options)
            # One half: still in a photo worker, at the photo priority.
            return self.workers.submit(
                self.run_models, captioner, segmenter, [image], caption_options, segment_options
            ).result()
        except (ValueError, TypeError) as error:  # an option a model refuses (e.g. a prompt it takes none of)
            raise RequestError(str(error)) from None
        except RuntimeError as error:  # e.g. out of memory inside a model: say so, keep serving
            raise RequestError(f"The model failed on this image: {error}", title="Model failed") from None

    def image(self, payload: Any) -> Image.Image:
        return image_from_payload(payload, max_pixels=self.max_pixels)

    # -- what the page says --------------------------------------------------------------------------------------

    def menu(self, kind: str) -> list[tuple[str, str]]:
        """A model menu's entries ``(shown text, name)``: what each is good for, marked when it cannot load here."""
        entries = []
        for name in self.menus.names(kind):
            spec = get_spec(name, kind)
            mark = "" if availability(name, kind)[0] else "  [not available here]"
            entries.append((f"{spec.name} — {spec.description.split(': ', 1)[-1]}{mark}", spec.name))
        return entries

    def model_note(self, kind: str, name: str | None) -> str:
        """One Markdown line about the chosen model: what it is, that it is loading, or why it cannot be used here."""
        if not name:
            return f"No {kind} is configured."
        try:
            spec = get_spec(self.menus.check(kind, name), kind)
        except ValueError as error:
            return f"**{kind.capitalize()}**: {error}"
        state = self.cache.status(kind, spec.name)
        if state == "loading":
            return f"**{spec.name} is loading** (the first start downloads its weights); a request for it waits."
        available, reason = availability(spec.name, kind)
        if state not in (None, "ready"):
            available, reason = False, state
        if available:
            return f"**{spec.name}**: {spec.description}."
        return f"**{spec.name} cannot be used here**: {reason}. Choose another {kind}, or install it (see README)."

    def page(
        self, analysis: Analysis | None, *, threshold: float, opacity: float, views: Sequence[str], note: str = ""
    ) -> dict[str, Any]:
        """What the photo tab shows of a kept analysis at display settings: ``caption``, ``description`` (what is
        where), ``grounded`` (the caption as HTML, its object words marked), ``objects`` (a sentence),
        ``objects_list`` (HTML, one item per object), ``pictures`` (``{view: path}`` for ``objects``, ``semantic``,
        ``panoptic`` as asked), ``table`` (rows), ``timings`` (Markdown) and ``download`` (the JSON file's path). No
        model runs (:mod:`pipeline.page_html` writes the HTML)."""
        if analysis is None:
            return {
                "caption": "", "description": "", "grounded": EMPTY_CAPTION, "objects": "",
                "objects_list": EMPTY_OBJECTS, "pictures": {}, "table": [], "timings": "", "download": None,
            }  # fmt: skip
        tick = time.perf_counter()
        result = analysis.result(threshold)
        picture, instances = analysis.picture, result["instances"]
        drawers = {
            "objects": lambda: draw_instances(picture, instances, opacity=opacity),
            "semantic": lambda: draw_semantic(result["semantic"], picture, opacity=opacity),
            "panoptic": lambda: draw_panoptic(result["panoptic"], picture, opacity=opacity),
        }
        pictures = {
            view: self.files.image(drawers[view](), view, "jpeg" if view == "objects" else "png")
            for view in drawers
            if view in views
        }
        download = self.files.json({**to_json(result), "threshold": threshold}, f"analysis-{analysis.digest[:10]}")
        extras = ([f"reused: {', '.join(analysis.reused)}"] if analysis.reused else []) + ([note] if note else [])
        timings = " · ".join(
            [
                f"Caption **{analysis.caption_ms:.0f} ms** ({analysis.captioner})",
                f"objects **{analysis.segment_ms:.0f} ms** ({analysis.segmenter})",
                f"drawing {(time.perf_counter() - tick) * 1000.0:.0f} ms",
                *extras,
            ]
        )
        return {
            "caption": result["caption"],
            "description": result["description"],
            "grounded": grounded_caption_html(result["caption"], result["grounding"], instances, analysis.size),
            "objects": describe_objects(instances),
            "objects_list": objects_list_html(instances, analysis.size),
            "pictures": pictures,
            "table": objects_table(instances, analysis.size),
            "timings": timings,
            "download": download,
        }

    # -- the page's photo --------------------------------------------------------------------------------------

    def photo(
        self,
        payload: Any,
        captioner: Any,
        segmenter: Any,
        *,
        caption_options: dict[str, Any],
        threshold: float,
        last: Analysis | None = None,
    ) -> Analysis:
        """Analyse the page's photo, running only what changed since ``last`` (the same picture: its caption, its
        segmentation, or both are reused)."""
        captioner, segmenter = self.menus.check("captioner", captioner), self.menus.check("segmenter", segmenter)
        options = _checked(caption_options, ("max_new_tokens", "num_beams"))
        threshold = _checked({"threshold": threshold}, ("threshold",))["threshold"]
        start = time.perf_counter()
        image = self.image(payload)
        digest = image_digest(image)
        same = last is not None and last.digest == digest
        keep_caption = same and last.captioner == captioner and last.caption_options == options
        keep_segments = same and last.segmenter == segmenter and last.floor <= threshold
        floor = last.floor if keep_segments else min(threshold, RUN_THRESHOLD_FLOOR)
        halves = self._run(
            None if keep_caption else captioner,
            None if keep_segments else segmenter,
            image,
            options,
            {"threshold": floor, "mask_format": "rle"},
        )
        return Analysis(
            digest=digest,
            picture=last.picture if same else scale_to_fit(image, DISPLAY_SIDE),
            size=image.size,
            captioner=captioner,
            caption_options=options,
            caption=last.caption if keep_caption else halves.captions[0]["caption"],
            caption_ms=last.caption_ms if keep_caption else halves.caption_ms,
            segmenter=segmenter,
            floor=floor,
            segments=last.segments if keep_segments else halves.segments[0],
            segment_ms=last.segment_ms if keep_segments else halves.segment_ms,
            labels=last.labels if keep_segments else self._labels(segmenter),
            total_ms=(time.perf_counter() - start) * 1000.0,
            reused=tuple(name for name, kept in (("caption", keep_caption), ("segmentation", keep_segments)) if kept),
        )

    def _labels(self, segmenter: str) -> list[str] | None:
        return getattr(self.cache.get("segmenter", segmenter), "categories", None)

    # -- the endpoints ---------------------------------------------------------------------------------------

    def caption(self, image: Any, captioner: Any) -> str:
        """``/caption``: the caption of one image."""
        captioner = self.menus.check("captioner", captioner)
        picture = self.image(image)
        return self._run(captioner, None, picture, {}, None).captions[0]["caption"]

    def segment(self, image: Any, segmenter: Any, threshold: Any, subtask: Any) -> dict[str, Any]:
        """``/segment``: the JSON form of one image's instances and views."""
        segmenter = self.menus.check("segmenter", segmenter)
        options = _checked({"threshold": threshold, "subtask": subtask or "all"}, ("threshold", "subtask"))
        picture = self.image(image)
        wanted = {"threshold": options["threshold"], "subtask": _subtask(options["subtask"]), "mask_format": "rle"}
        segments = self._run(None, segmenter, picture, None, wanted).segments[0]
        return {**to_json(segments), "models": {"segmenter": segmenter}}

    def analyze(self, image: Any, captioner: Any, segmenter: Any, options: Any) -> tuple[dict[str, Any], str]:
        """``/analyze``: the output contract as JSON, and the path of the annotated picture (display size)."""
        captioner, segmenter = self.menus.check("captioner", captioner), self.menus.check("segmenter", segmenter)
        settings = _checked(options, ANALYZE_OPTIONS)
        start = time.perf_counter()
        picture = self.image(image)
        caption_options = {key: settings[key] for key in ("max_new_tokens", "num_beams")}
        segment_options = {"threshold": settings["threshold"], "subtask": _subtask(settings["subtask"])}
        halves = self._run(captioner, segmenter, picture, caption_options, {**segment_options, "mask_format": "rle"})
        timings = {"caption": halves.caption_ms, "segment": halves.segment_ms}
        result = build_result(
            halves.captions[0]["caption"], halves.segments[0], picture.size,
            models={"captioner": captioner, "segmenter": segmenter},
            timings_ms={**timings, "total": (time.perf_counter() - start) * 1000.0},
            labels=self._labels(segmenter), detail=settings["detail"], max_objects=settings["max_objects"],
        )  # fmt: skip
        picture = draw_instances(scale_to_fit(picture, DISPLAY_SIDE), result["instances"], opacity=settings["opacity"])
        return to_json(result), self.files.image(picture, "annotated", "png")

    def describe(self, image: Any, captioner: Any, segmenter: Any, options: Any) -> dict[str, Any]:
        """``/describe``: what an alt-text tool wants: the alt text, the description, the grounding, the objects."""
        captioner, segmenter = self.menus.check("captioner", captioner), self.menus.check("segmenter", segmenter)
        settings = _checked(options, DESCRIBE_OPTIONS)
        picture = self.image(image)
        halves = self._run(
            captioner, segmenter, picture, {}, {"threshold": settings["threshold"], "subtask": "instance",
                                              "mask_format": "rle"}
        )  # fmt: skip
        instances = halves.segments[0]["instances"]
        labels = self._labels(segmenter)
        caption = halves.captions[0]["caption"]
        short = describe_words(caption, instances, picture.size, labels=labels, detail="short")
        long = describe_words(
            caption, instances, picture.size, labels=labels, detail=settings["detail"],
            max_objects=settings["max_objects"],
        )  # fmt: skip
        objects = locate_objects(instances, picture.size)
        return {
            "alt_text": short["description"],
            "description": long["description"],
            "caption": caption,
            "grounding": long["grounding"],
            "objects": objects,
            "models": {"captioner": captioner, "segmenter": segmenter},
        }

    def compare(self, image: Any, captioners: Any, options: Any) -> list[dict[str, Any]]:
        """``/compare``: one image captioned by two to four of the menu's captioners, each caption with its time."""
        names = captioners if isinstance(captioners, (list, tuple)) else None
        if not names or not 2 <= len(names) <= MAX_COMPARED or len(set(map(str, names))) != len(names):
            raise RequestError(
                f"captioners must list 2 to {MAX_COMPARED} different captioners of {self.menus.names('captioner')}, "
                f"got {captioners!r}"[:400],
                title="Choose captioners to compare",
            )
        names = [self.menus.check("captioner", name) for name in names]
        settings = _checked(options, COMPARE_OPTIONS)
        picture = self.image(image)
        loaders = {name: (lambda name=name: self.cache.get("captioner", name)) for name in names}
        job = self.workers.submit(compare_captioners, picture, loaders, public=True, **settings)
        return job.result()

    # -- live frames -------------------------------------------------------------------------------------------

    def _live_stream(self, settings: tuple[str, str, float]) -> LiveStream:
        captioner, segmenter, threshold = settings
        return LiveStream(
            segmenter_view(self.model("segmenter", segmenter), "live"),
            self.model("captioner", captioner),
            threshold=threshold,
            executor=self.live_captions,
            workers=self.live_workers,
        )

    def live_frame(
        self, key: Any, frame: Any, captioner: Any, segmenter: Any, threshold: Any
    ) -> tuple[str, str, dict[str, Any]]:
        """``/live_frame`` and the live tab: one frame of a session's stream -> (annotated picture's path, the
        running caption, stats). The newest frame wins: one sent while another is processed replaces any waiting."""
        captioner, segmenter = self.menus.check("captioner", captioner), self.menus.check("segmenter", segmenter)
        threshold = _checked({"threshold": threshold}, ("threshold",))["threshold"]
        picture = frame if isinstance(frame, Image.Image) else self.image(frame)
        session = self.live.get(key, settings=(captioner, segmenter, round(threshold, 2)))
        try:
            shown = session.process(picture)
        except RuntimeError as error:
            raise RequestError(f"The model failed on this frame: {error}", title="Model failed") from None
        if shown.image is None:  # nothing processed yet in this session (this frame was replaced at once)
            return self.files.image(scale_to_fit(picture, DISPLAY_SIDE), "frame"), "", shown.summary()
        annotated = draw_instances(shown.image, shown.result["instances"], opacity=0.5)
        stats = {**shown.summary(), "objects": describe_objects(shown.result["instances"])}
        return self.files.image(annotated, "frame"), shown.caption, stats

    def close(self) -> None:
        self.live.close()
        for pool in (self.workers, self.live_workers, self.live_captions):
            pool.shutdown(wait=False)


def _checked(options: Any, names: Sequence[str]) -> dict[str, Any]:
    try:
        return check_options(options, names)
    except OptionError as error:
        raise RequestError(str(error), title="Bad option") from None


def _subtask(subtask: str) -> str | None:
    return None if subtask == "all" else subtask
