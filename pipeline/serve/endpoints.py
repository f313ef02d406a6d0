"""The script endpoints' work, gradio-free: ``/caption``, ``/segment``, ``/analyze``, ``/describe``, ``/ask``,
``/compare``.

Each checks a client's request (menus, option bounds, the image's limits), runs the models through the
:class:`~pipeline.serve.models.ModelRunner` and answers plain JSON-ready data, masks as COCO RLE; pictures are
written by :class:`~pipeline.serve.files.OutputFiles` and handed over as paths.
"""

from __future__ import annotations

import time
from typing import Any

from ..captioning import CAPTION_OPTIONS
from ..catalog import NO_STUFF
from ..combined import build_result
from ..compare import compare_captioners
from ..describe import DESCRIBE_OPTIONS as DESCRIPTION_OPTIONS
from ..describe import describe as describe_words
from ..describe import locate_objects
from ..jsonform import to_json
from ..render import draw_instances
from ..segmentation import SEGMENT_OPTIONS
from ..stream import scale_to_fit
from .files import OutputFiles
from .intake import RequestError, checked_options, checked_question
from .models import ModelRunner

#: Pictures for people are drawn at most this large (the longer side, in pixels), whatever the photo's size; the
#: JSON keeps the photo's own size.
DISPLAY_SIDE = 1280
#: The options each endpoint takes (declared by the pipelines, bounded by :mod:`pipeline.serve.options`); each goes
#: to the pipeline that declares it.
ANALYZE_OPTIONS = (
    "threshold", "max_new_tokens", "num_beams", "repetition_penalty", "subtask", "opacity", "detail", "max_objects"
)  # fmt: skip
DESCRIBE_OPTIONS = ("detail", "max_objects", "threshold")
COMPARE_OPTIONS = ("max_new_tokens", "num_beams")
ASK_OPTIONS = ("threshold",)
#: The most captioners one /compare request may run: the five caption families side by side (BLIP, GIT, ViT-GPT2,
#: attention-lstm, clip-prefix), each loaded in turn.
MAX_COMPARED = 5


class Endpoints:
    """The script endpoints over one :class:`ModelRunner`; every method raises :class:`RequestError` for a client's
    mistake, with a message that names it."""

    def __init__(self, models: ModelRunner, files: OutputFiles):
        self.models, self.files = models, files

    def caption(self, image: Any, captioner: Any) -> str:
        """``/caption``: the caption of one image."""
        captioner = self.models.menus.check("captioner", captioner)
        picture = self.models.image(image)
        return self.models.run(captioner, None, picture, {}, None).captions[0]["caption"]

    def segment(self, image: Any, segmenter: Any, threshold: Any, subtask: Any, stuff: Any = None) -> dict[str, Any]:
        """``/segment``: the JSON form of one image's instances and views (with the stuff model's regions, unless
        ``stuff`` is None or "none")."""
        segmenter = self.models.menus.check("segmenter", segmenter)
        stuff = self._stuff(stuff)
        options = checked_options({"threshold": threshold, "subtask": subtask or "all"}, ("threshold", "subtask"))
        picture = self.models.image(image)
        segment_options = {**options, "mask_format": "rle"}
        segments = self.models.run(None, segmenter, picture, None, segment_options, stuff=stuff).segments[0]
        return {**to_json(segments), "models": {"segmenter": segmenter, "stuff": stuff}}

    def _stuff(self, stuff: Any) -> str:
        """The client's stuff model: a menu name ("none" included); None (not sent) is "none"."""
        return self.models.menus.check("stuff", NO_STUFF if stuff is None else stuff)

    def analyze(
        self, image: Any, captioner: Any, segmenter: Any, options: Any, stuff: Any = None
    ) -> tuple[dict[str, Any], str]:
        """``/analyze``: the output contract as JSON (the photo's own size), and the path of the annotated picture
        (a display copy, its longer side at most :data:`DISPLAY_SIDE`)."""
        menus = self.models.menus
        captioner, segmenter = menus.check("captioner", captioner), menus.check("segmenter", segmenter)
        stuff = self._stuff(stuff)
        settings = checked_options(options, ANALYZE_OPTIONS)
        start = time.perf_counter()
        picture = self.models.image(image)
        caption_options = _declared_by(CAPTION_OPTIONS, settings)
        segment_options = {**_declared_by(SEGMENT_OPTIONS, settings), "mask_format": "rle"}
        halves = self.models.run(captioner, segmenter, picture, caption_options, segment_options, stuff=stuff)
        timings = {"caption": halves.caption_ms, "segment": halves.segment_ms, "stuff": halves.stuff_ms}
        result = build_result(
            halves.captions[0]["caption"], halves.segments[0], picture.size,
            models={"captioner": captioner, "segmenter": segmenter, "stuff": stuff},
            timings_ms={**timings, "total": (time.perf_counter() - start) * 1000.0},
            labels=self.models.labels(segmenter), stuff_labels=self.models.stuff_labels(stuff),
            **_declared_by(DESCRIPTION_OPTIONS, settings),
        )  # fmt: skip
        picture = draw_instances(scale_to_fit(picture, DISPLAY_SIDE), result["instances"], opacity=settings["opacity"])
        return to_json(result), self.files.image(picture, "annotated", "png")

    def describe(self, image: Any, captioner: Any, segmenter: Any, options: Any, stuff: Any = None) -> dict[str, Any]:
        """``/describe``: what an alt-text tool wants: the alt text, the description, the grounding, the objects
        (and, with a stuff model, where the main stuff regions are)."""
        menus = self.models.menus
        captioner, segmenter = menus.check("captioner", captioner), menus.check("segmenter", segmenter)
        stuff = self._stuff(stuff)
        settings = checked_options(options, DESCRIBE_OPTIONS)
        picture = self.models.image(image)
        subtask = "panoptic" if stuff != NO_STUFF else "instance"  # stuff's places are read from the panoptic view
        segment_options = {"threshold": settings["threshold"], "subtask": subtask, "mask_format": "rle"}
        halves = self.models.run(captioner, segmenter, picture, {}, segment_options, stuff=stuff)
        instances = halves.segments[0]["instances"]
        words = {
            "labels": self.models.labels(segmenter),
            "panoptic": halves.segments[0].get("panoptic"),
            "stuff_labels": self.models.stuff_labels(stuff),
        }
        caption = halves.captions[0]["caption"]
        short = describe_words(caption, instances, picture.size, detail="short", **words)
        long = describe_words(
            caption, instances, picture.size, detail=settings["detail"], max_objects=settings["max_objects"], **words
        )
        return {
            "alt_text": short["description"],
            "description": long["description"],
            "caption": caption,
            "grounding": long["grounding"],
            "objects": locate_objects(instances, picture.size),
            "models": {"captioner": captioner, "segmenter": segmenter, "stuff": stuff},
        }

    def ask(self, image: Any, question: Any, segmenter: Any, answerer: Any, options: Any) -> dict[str, Any]:
        """``/ask``: one question about one image, answered from the segmenter's objects (how many, is there, where,
        about a label it knows) or by the answerer (``"none"``: the objects only): ``{"question", "answer",
        "sentence", "source", "instances", "objects"}``, ``instances`` indexing ``objects`` (each with its label,
        score, box, position and words)."""
        question = checked_question(question)
        menus = self.models.menus
        segmenter, answerer = menus.check("segmenter", segmenter), menus.check("answerer", answerer)
        settings = checked_options(options, ASK_OPTIONS)
        picture = self.models.image(image)
        segment_options = {"threshold": settings["threshold"], "subtask": "instance", "mask_format": "rle"}
        instances = self.models.run(None, segmenter, picture, None, segment_options).segments[0]["instances"]
        answer = self.models.answer(question, picture, instances, self.models.labels(segmenter), answerer)
        return {**answer, "objects": _objects_by_index(instances, picture.size)}

    def compare(self, image: Any, captioners: Any, options: Any) -> list[dict[str, Any]]:
        """``/compare``: one image captioned by two to five of the menu's captioners, each caption with its time."""
        menus = self.models.menus
        names = captioners if isinstance(captioners, (list, tuple)) else None
        if not names or not 2 <= len(names) <= MAX_COMPARED or len(set(map(str, names))) != len(names):
            raise RequestError(
                f"captioners must list 2 to {MAX_COMPARED} different captioners of {menus.names('captioner')}, "
                f"got {captioners!r}"[:400],
                title="Choose captioners to compare",
            )
        names = [menus.check("captioner", name) for name in names]
        settings = checked_options(options, COMPARE_OPTIONS)
        picture = self.models.image(image)
        loaders = {name: (lambda name=name: self.models.cache.get("captioner", name)) for name in names}
        job = self.models.photo_threads.submit(compare_captioners, picture, loaders, public=True, **settings)
        return job.result()


def _objects_by_index(instances: list[dict[str, Any]], size: tuple[int, int]) -> list[dict[str, Any]]:
    """The objects found, in the instances' own order (an answer's ``instances`` index them), each with its label,
    score, box (pixels) and where it is in words."""
    places = {place["index"]: place for place in locate_objects(instances, size)}
    return [
        {
            "label": instance["label"],
            "score": round(float(instance["score"]), 4),
            "box": [round(float(value), 1) for value in instance["box"]],
            "position": places[index]["position"],
            "text": places[index]["text"],
        }
        for index, instance in enumerate(instances)
    ]


def _declared_by(declarations: tuple, settings: dict[str, Any]) -> dict[str, Any]:
    """The checked settings that a pipeline declares, for that pipeline's call."""
    return {option.name: settings[option.name] for option in declarations if option.name in settings}
