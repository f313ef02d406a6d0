"""The photo tab's work, gradio-free: one photo's analysis kept between events, what the page shows of it, and
the model menus' entries and notes.

The page's photo is kept as an :class:`Analysis`: the same picture again reuses its caption or its segmentation, and
a display setting (threshold, opacity, views) only redraws. Pictures for people are drawn at display size; masks
are kept as COCO RLE, so what a session holds does not grow with the photo.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ..catalog import NO_STUFF, availability, get_spec
from ..combined import build_result
from ..jsonform import to_json
from ..model_card import card_summary
from ..panoptic import with_threshold
from ..render import describe_objects, draw_instances, draw_panoptic, draw_semantic, objects_table
from ..stream import scale_to_fit
from .endpoints import DISPLAY_SIDE
from .files import OutputFiles
from .intake import RequestError, checked_options, checked_question
from .models import ModelRunner
from .page_html import (
    EMPTY_CAPTION,
    EMPTY_OBJECTS,
    HISTORY_LENGTH,
    answer_html,
    grounded_caption_html,
    objects_list_html,
)

#: The page runs the segmenter at no more than this threshold and filters for display, so that raising the slider
#: (and lowering it down to here) redraws without running the model again.
RUN_THRESHOLD_FLOOR = 0.3
#: What the stuff menu's "none" means.
NO_STUFF_TEXT = "no stuff model: the views hold the objects only (no sky, grass, water, ...)"


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
        stuff, stuff_labels: the stuff model (``"none"``: none) whose regions the segmentation's views hold, and its
            class names (for the grounding).
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
    stuff: str = NO_STUFF
    stuff_labels: list[str] | None = None

    def result(self, threshold: float, **describe_options: Any) -> dict[str, Any]:
        """The output contract at a display threshold (at or above :attr:`floor`); no model runs."""
        shown = with_threshold(self.segments, max(threshold, self.floor))
        timings = {"caption": self.caption_ms, "segment": self.segment_ms, "total": self.total_ms}
        models = {"captioner": self.captioner, "segmenter": self.segmenter, "stuff": self.stuff}
        return build_result(
            self.caption, shown, self.size, models=models,
            timings_ms={key: round(value, 1) for key, value in timings.items()}, labels=self.labels,
            stuff_labels=self.stuff_labels, **describe_options,
        )  # fmt: skip


def answered(
    answer: dict[str, Any],
    instances: Sequence[dict[str, Any]],
    size: tuple[int, int],
    history: dict[str, Any] | None,
    digest: str,
    *,
    outlines: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """An answer's block for a page (:func:`~pipeline.serve.page_html.answer_html`) with the earlier answers about the
    same picture (``digest``: the photo's, or one live session's camera), and the history to keep, newest first
    (``{"digest", "answers"}``; another digest starts a new one). ``outlines``: see ``answer_html``."""
    same = history is not None and history.get("digest") == digest
    earlier = list(history["answers"]) if same else []
    said = {"question": answer["question"], "sentence": answer["sentence"]}
    kept = {"digest": digest, "answers": [said, *earlier][:HISTORY_LENGTH]}
    return answer_html(answer, instances, size, earlier, outlines=outlines), kept


class PhotoPage:
    """The photo tab over one :class:`ModelRunner`: analyse a photo (only what changed), show a kept analysis at
    display settings, and say what each model menu offers."""

    def __init__(self, models: ModelRunner, files: OutputFiles):
        self.models, self.files = models, files

    # -- what the page says --------------------------------------------------------------------------------------

    def menu(self, kind: str) -> list[tuple[str, str]]:
        """A model menu's entries ``(shown text, name)``: what each is good for, and for a model that cannot load
        here, that it is not available and why (in the text itself, so that it is seen, heard and read on focus)."""
        entries = []
        for name in self.models.menus.names(kind):
            if kind == "stuff" and name == NO_STUFF:
                entries.append((f"{NO_STUFF} — {NO_STUFF_TEXT}", NO_STUFF))
                continue
            spec = get_spec(name, kind)
            available, reason = availability(name, kind)
            mark = "" if available else f"  [not available here: {reason}]"
            entries.append((f"{spec.name} — {spec.description.split(': ', 1)[-1]}{mark}", spec.name))
        return entries

    def available(self, kind: str) -> list[str]:
        """The menu's models that can load here, in the menu's order: the only ones a page ticks or picks by
        default."""
        return [name for name in self.models.menus.names(kind) if availability(name, kind)[0]]

    def model_note(self, kind: str, name: str | None) -> str:
        """One Markdown line about the chosen model: what it is, that it is loading, or why it cannot be used here.

        A model folder trained here carries a card (:mod:`pipeline.model_card`): its summary (base model, data set,
        steps, the measured figures; never a path) follows the description."""
        if not name:
            return f"No {kind} is configured."
        if kind == "stuff" and name == NO_STUFF:
            return f"**{NO_STUFF}**: {NO_STUFF_TEXT}."
        try:
            spec = get_spec(self.models.menus.check(kind, name), kind)
        except ValueError as error:
            return f"**{kind.capitalize()}**: {error}"
        state = self.models.cache.status(kind, spec.name)
        if state == "loading":
            return f"**{spec.name} is loading** (the first start downloads its weights); a request for it waits."
        available, reason = availability(spec.name, kind)
        if state not in (None, "ready"):
            available, reason = False, state
        if available:
            summary = card_summary(spec.source) if Path(spec.source).is_dir() else None
            return f"**{spec.name}**: {spec.description}." + (f" {summary}." if summary else "")
        return f"**{spec.name} cannot be used here**: {reason}. Choose another {kind}, or install it (see README)."

    def page(
        self, analysis: Analysis | None, *, threshold: float, opacity: float, views: Sequence[str], note: str = ""
    ) -> dict[str, Any]:
        """What the photo tab shows of a kept analysis at display settings: ``caption``, ``description`` (what is
        where), ``grounded`` (the caption as HTML, its object words marked), ``objects`` (a sentence),
        ``objects_list`` (HTML, one item per object), ``pictures`` (``{view: path}`` for ``objects``, ``semantic``,
        ``panoptic`` as asked), ``table`` (rows), ``timings`` (Markdown) and ``download`` (the JSON file's path). No
        model runs (:mod:`pipeline.serve.page_html` writes the HTML)."""
        settings = checked_options({"threshold": threshold, "opacity": opacity}, ("threshold", "opacity"))
        threshold, opacity = settings["threshold"], settings["opacity"]
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
                f"objects **{analysis.segment_ms:.0f} ms** ({analysis.segmenter}"
                + (f" + {analysis.stuff}" if analysis.stuff != NO_STUFF else "")
                + ")",
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

    def ask(
        self,
        analysis: Analysis | None,
        question: Any,
        answerer: Any,
        *,
        threshold: float,
        history: dict[str, Any] | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """Answer a question about the page's photo from its kept analysis (the objects shown at ``threshold``; the
        segmenter does not run again), or by the answerer on its display picture.

        Returns:
            tuple ``(html, history)``: the answer block (:func:`~pipeline.serve.page_html.answer_html`, with the
            earlier answers about the same photo) and the history to keep, newest first (``{"digest", "answers"}``;
            another photo starts a new one).
        """
        question = checked_question(question)
        answerer = self.models.menus.check("answerer", answerer)
        threshold = checked_options({"threshold": threshold}, ("threshold",))["threshold"]
        if analysis is None:
            raise RequestError("No photo yet: upload, paste, drop or take a photo, then ask.", title="No photo")
        cut = max(threshold, analysis.floor)
        shown = [instance for instance in analysis.segments["instances"] if instance["score"] >= cut]
        answer = self.models.answer(
            question, analysis.picture, shown, analysis.labels, answerer, image_size=analysis.size
        )
        return answered(answer, shown, analysis.size, history, analysis.digest)

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
        stuff: Any = None,
    ) -> Analysis:
        """Analyse the page's photo, running only what changed since ``last`` (the same picture: its caption, its
        segmentation, or both are reused); ``stuff``, a stuff model of the menu (None: ``"none"``), fills the views
        around the objects."""
        menus = self.models.menus
        captioner, segmenter = menus.check("captioner", captioner), menus.check("segmenter", segmenter)
        stuff = menus.check("stuff", NO_STUFF if stuff is None else stuff)
        options = checked_options(caption_options, ("max_new_tokens", "num_beams"))
        threshold = checked_options({"threshold": threshold}, ("threshold",))["threshold"]
        start = time.perf_counter()
        image = self.models.image(payload)
        digest = image_digest(image)
        same = last is not None and last.digest == digest
        keep_caption = same and last.captioner == captioner and last.caption_options == options
        keep_segments = same and last.segmenter == segmenter and last.stuff == stuff and last.floor <= threshold
        floor = last.floor if keep_segments else min(threshold, RUN_THRESHOLD_FLOOR)
        halves = self.models.run(
            None if keep_caption else captioner,
            None if keep_segments else segmenter,
            image,
            options,
            {"threshold": floor, "mask_format": "rle"},
            stuff=stuff,
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
            labels=last.labels if keep_segments else self.models.labels(segmenter),
            stuff=stuff,
            stuff_labels=self.models.stuff_labels(stuff),
            total_ms=(time.perf_counter() - start) * 1000.0,
            reused=tuple(name for name, kept in (("caption", keep_caption), ("segmentation", keep_segments)) if kept),
        )
