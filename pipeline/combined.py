"""Caption and segmentation of one image: the two pipelines run concurrently on one decoded image, and an optional
stuff model (sky, grass, water, ...) fills the views around the things (:func:`pipeline.panoptic.add_stuff`).

The one place where the two halves run together (:func:`run_halves`) and where the output contract is put together
(:func:`build_result`): the library's :class:`ImageAnalysisPipeline`, the app's session (:mod:`pipeline.serve`)
and the batch job all go through them. The contract itself is in pipeline/README.md, "The output contract".
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from PIL import Image

from .answering import AnswerPipeline, answer_question, check_question
from .captioning import CAPTION_OPTIONS, CaptionPipeline
from .describe import DESCRIBE_OPTIONS, check_options, describe
from .images import ImageInput, load_image
from .options import by_name
from .panoptic import add_stuff
from .segmentation import SEGMENT_OPTIONS, SegmentationPipeline
from .speed import SpeedProfile


class ImageAnalysisPipeline:
    """Caption an image and outline every object in it: the output contract (pipeline/README.md has it in full).

    The image is decoded once and handed to both pipelines, which run in two threads (PyTorch releases the GIL
    inside its kernels, so the captioner and the segmenter overlap).

    Args:
        captioner (CaptionPipeline): the captioning half.
        segmenter (SegmentationPipeline): the segmentation half.
        stuff (StuffPipeline | None, default None): a stuff model whose regions fill the views around the things
            (run in the segmentation half, after the segmenter); None: things only.
        answerer (AnswerPipeline | None, default None): the question-answering model of :meth:`ask` (None: only the
            questions the objects answer).
        concurrent (bool, default True): run the two halves at the same time.
        max_pixels (int | None, default None): image intake limit, see :func:`pipeline.images.load_image`.

    Call options: those of :class:`CaptionPipeline` (``prompt``, ``max_new_tokens``, ``num_beams``,
    ``repetition_penalty``, ``generate_kwargs``) and of :class:`SegmentationPipeline` (``threshold``,
    ``mask_threshold``, ``overlap_threshold``, ``subtask``), and those of the description (``detail``: ``"long"``
    or ``"short"``; ``max_objects``: int or None), see :func:`pipeline.describe.describe_scene`.

    Returns (per image):
        dict with
        - ``"caption"``: str;
        - ``"instances"``, ``"semantic"``, ``"panoptic"``: as :class:`SegmentationPipeline` returns them, the views
          with the stuff regions too when a stuff model is given (segments with ``isthing`` False);
        - ``"description"``: str, the caption then what is where (:func:`pipeline.describe.describe_scene`);
        - ``"grounding"``: list of ``{"word", "start", "end", "label", "instances"}``, the caption's words that
          name a label (:func:`pipeline.describe.ground_caption`);
        - ``"models"``: ``{"captioner": name, "segmenter": name, "stuff": name or None}``;
        - ``"timings_ms"``: ``{"decode", "caption", "segment", "stuff", "total"}`` in milliseconds (``segment``
          includes ``stuff``).

    >>> pipe = load_pipeline(captioner="shapes", segmenter="shapes", device="cpu")
    >>> result = pipe("space/examples/shapes.png")
    >>> result["caption"], len(result["instances"])
    ('A yellow triangle to the left of a blue circle and a red triangle.', 3)
    """

    #: Every half's call options (declared by each: :mod:`pipeline.options`).
    call_options = by_name((*CAPTION_OPTIONS, *SEGMENT_OPTIONS, *DESCRIBE_OPTIONS))

    def __init__(
        self,
        captioner: CaptionPipeline,
        segmenter: SegmentationPipeline,
        *,
        stuff: Any | None = None,
        answerer: AnswerPipeline | None = None,
        concurrent: bool = True,
        max_pixels: int | None = None,
    ):
        self.captioner = captioner
        self.segmenter = segmenter
        self.stuff = stuff
        self.answerer = answerer
        self.concurrent = concurrent
        self.max_pixels = max_pixels
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="analysis") if concurrent else None

    def __call__(self, images: ImageInput | Sequence[ImageInput], **kwargs: Any) -> Any:
        """Analyse one image (returns one result) or a list (returns a list, each half batched)."""
        caption_kwargs = {o.name: kwargs.pop(o.name) for o in CAPTION_OPTIONS if o.name in kwargs}
        segment_kwargs = {o.name: kwargs.pop(o.name) for o in SEGMENT_OPTIONS if o.name in kwargs}
        if kwargs.keys() - {o.name for o in DESCRIBE_OPTIONS}:
            raise TypeError(
                f"ImageAnalysisPipeline got unknown call options {sorted(kwargs.keys() - set(self.call_options))}; "
                f"it takes {sorted(self.call_options)}"
            )
        describe_kwargs = check_options(**kwargs)  # before the models run, not after
        single = not isinstance(images, (list, tuple))
        start = time.perf_counter()
        loaded = [load_image(image, max_pixels=self.max_pixels) for image in ([images] if single else images)]
        decode_ms = (time.perf_counter() - start) * 1000.0
        halves = run_halves(
            loaded, self.captioner, self.segmenter, caption_kwargs, segment_kwargs, executor=self._executor,
            stuff=self.stuff,
        )  # fmt: skip
        total_ms = (time.perf_counter() - start) * 1000.0
        share = len(loaded)  # a batch's time is shared evenly among its images
        timings = {
            "decode": decode_ms / share,
            "caption": halves.caption_ms / share,
            "segment": halves.segment_ms / share,
            "stuff": halves.stuff_ms / share,
            "total": total_ms / share,
        }
        models = {
            "captioner": self.captioner.name,
            "segmenter": self.segmenter.name,
            "stuff": self.stuff.name if self.stuff is not None else None,
        }
        labels = getattr(self.segmenter, "categories", None)  # what the segmenter could have found
        stuff_labels = getattr(self.stuff, "categories", None)
        results = [
            build_result(
                caption["caption"], segmentation, image.size, models=models, timings_ms=timings, labels=labels,
                stuff_labels=stuff_labels, **describe_kwargs,
            )
            for caption, segmentation, image in zip(halves.captions, halves.segments, loaded)
        ]  # fmt: skip
        return results[0] if single else results

    def ask(
        self, image: ImageInput, questions: str | Sequence[str], *, threshold: float | None = None
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """Answer questions about one image: the segmenter runs once, then each question is answered from its objects
        when they can (how many, is there, where, about a label it knows), else by the :attr:`answerer`
        (:func:`pipeline.answering.answer_question`).

        Args:
            image (ImageInput): one image.
            questions (str | Sequence[str]): one question (returns one answer) or several (returns a list); each
                at most 200 characters, not empty (checked before any model runs).
            threshold (float | None, default None): the segmenter's score threshold (None: its default).

        Returns:
            dict (or a list of them) with ``"question"``, ``"answer"``, ``"sentence"``, ``"source"`` and
            ``"instances"``.

        >>> pipe = load_pipeline(captioner="shapes", segmenter="shapes", device="cpu")
        >>> pipe.ask("space/examples/shapes.png", "How many triangles are there?")["sentence"]
        'There are 2 triangles: one in the centre and one at the bottom left.'
        """
        single = isinstance(questions, str)
        checked = [check_question(question) for question in ([questions] if single else questions)]
        if not checked:
            raise ValueError("questions must hold at least one question, got an empty list")
        picture = load_image(image, max_pixels=self.max_pixels)
        options = {"subtask": "instance"} if threshold is None else {"subtask": "instance", "threshold": threshold}
        instances = self.segmenter(picture, **options)["instances"]
        labels = getattr(self.segmenter, "categories", None)
        answers = [answer_question(q, picture, instances, labels=labels, answerer=self.answerer) for q in checked]
        return answers[0] if single else answers

    def close(self) -> None:
        """Stop the worker threads (they also stop with the process)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)


@dataclass
class Halves:
    """What :func:`run_halves` returns: each half's outputs (None when it did not run) and milliseconds
    (``segment_ms`` includes ``stuff_ms``, the stuff model's share of the segmentation half)."""

    captions: list[dict[str, Any]] | None
    caption_ms: float
    segments: list[dict[str, Any]] | None
    segment_ms: float
    stuff_ms: float = 0.0


def run_halves(
    images: list[Image.Image],
    captioner: Any | None,
    segmenter: Any | None,
    caption_options: dict[str, Any] | None = None,
    segment_options: dict[str, Any] | None = None,
    *,
    executor: Executor | None = None,
    stuff: Any | None = None,
) -> Halves:
    """Caption and segment the same decoded images: at the same time in ``executor``'s threads when one is given
    (PyTorch releases the GIL inside its kernels, so the two overlap), else one after the other. A half that is
    None does not run (a caller reusing an earlier caption or segmentation). The one place the two run together.
    A ``stuff`` model runs in the segmentation half, after the segmenter, and its regions are fused into the views
    (:func:`~pipeline.panoptic.add_stuff`); a segmentation without views (subtask ``"instance"``) skips it.
    """
    stuff_ms = 0.0

    def timed(pipeline: Any, options: dict[str, Any] | None) -> tuple[Any, float]:
        if pipeline is None:
            return None, 0.0
        tick = time.perf_counter()
        output = pipeline(images, **(options or {}))
        return output, (time.perf_counter() - tick) * 1000.0

    def segment() -> tuple[Any, float]:
        nonlocal stuff_ms
        tick = time.perf_counter()
        segments, _ = timed(segmenter, segment_options)
        if segments is not None and stuff is not None and (segment_options or {}).get("subtask") != "instance":
            stuff_tick = time.perf_counter()
            segments = [add_stuff(result, regions) for result, regions in zip(segments, stuff(images))]
            stuff_ms = (time.perf_counter() - stuff_tick) * 1000.0
        return segments, (time.perf_counter() - tick) * 1000.0 if segmenter is not None else 0.0

    if executor is not None and captioner is not None and segmenter is not None:
        caption_job = executor.submit(timed, captioner, caption_options)
        segment_job = executor.submit(segment)
        (captions, caption_ms), (segments, segment_ms) = caption_job.result(), segment_job.result()
    else:
        captions, caption_ms = timed(captioner, caption_options)
        segments, segment_ms = segment()
    return Halves(captions, caption_ms, segments, segment_ms, stuff_ms)


def build_result(
    caption: str,
    segmentation: dict[str, Any],
    image_size: tuple[int, int],
    *,
    models: dict[str, str],
    timings_ms: dict[str, float],
    labels: Sequence[str] | None = None,
    stuff_labels: Sequence[str] | None = None,
    **describe_options: Any,
) -> dict[str, Any]:
    """One image's output contract from its two halves: the one place it is put together.

    Args:
        caption (str): the captioner's sentence.
        segmentation (dict): the segmenter's ``instances`` and views (masks in any form).
        image_size (tuple[int, int]): ``(width, height)`` of the analysed image.
        models (dict): ``{"captioner": name, "segmenter": name}``.
        timings_ms (dict): milliseconds by step.
        labels (Sequence[str] | None): what the segmenter could have found (for the grounding).
        stuff_labels (Sequence[str] | None): what the stuff model could have found (its stuff words are grounded
            too); None when no stuff model ran.
        **describe_options: ``detail``, ``max_objects`` (:func:`pipeline.describe.describe_scene`).

    Returns:
        dict: ``caption``, ``instances``, ``semantic``/``panoptic`` (those computed), ``description``,
        ``grounding``, ``models``, ``timings_ms``.
    """
    words = describe(
        caption, segmentation["instances"], image_size, labels=labels, panoptic=segmentation.get("panoptic"),
        stuff_labels=stuff_labels, **describe_options,
    )  # fmt: skip
    return {"caption": caption, **segmentation, **words, "models": dict(models), "timings_ms": dict(timings_ms)}


def load_pipeline(
    captioner: str = "blip-base",
    segmenter: str = "maskrcnn-v2",
    *,
    device: str = "auto",
    concurrent: bool = True,
    batch_size: int = 1,
    max_pixels: int | None = None,
    segmenter_model_kwargs: dict | None = None,
    profile: str | SpeedProfile = "full",
    stuff: str | None = None,
    answerer: str | None = None,
) -> ImageAnalysisPipeline:
    """Load a captioner and a segmenter (and optionally a stuff model) from the catalog and combine them.

    Args:
        captioner (str, default "blip-base"): catalog name, local directory or hub id.
        segmenter (str, default "maskrcnn-v2"): catalog name or fine-tuned checkpoint directory.
        device (str, default "auto"): ``"cpu"``, ``"cuda"`` or ``"auto"``.
        concurrent (bool, default True): run the two models at the same time.
        batch_size (int, default 1): images per forward pass when a list is given.
        max_pixels (int | None, default None): image intake limit.
        segmenter_model_kwargs (dict | None, default None): Mask R-CNN inference settings (``min_size``, ...).
        profile (str | SpeedProfile, default "full"): ``"full"`` (outputs of the models' own settings) or ``"fast"``
            (faster on CPU at a small cost in quality), see :mod:`pipeline.speed` and space/benchmark/README.md.
        stuff (str | None, default None): a stuff model (catalog name, directory or hub id: sky, grass, water, ...
            around the objects, :func:`pipeline.catalog.load_stuff`); None or ``"none"``: things only.
        answerer (str | None, default None): a question answerer for :meth:`ImageAnalysisPipeline.ask` (catalog
            name, local directory or hub id); None answers only the questions the objects answer.

    Returns:
        ImageAnalysisPipeline

    >>> load_pipeline(captioner="shapes", segmenter="shapes", device="cpu").segmenter.name
    'shapes'
    """
    from .catalog import NO_STUFF, load_answerer, load_captioner, load_segmenter, load_stuff

    stuff_model = None
    if stuff is not None and stuff != NO_STUFF:
        stuff_model = load_stuff(stuff, device=device, batch_size=batch_size, max_pixels=max_pixels, profile=profile)
    return ImageAnalysisPipeline(
        load_captioner(captioner, device=device, batch_size=batch_size, max_pixels=max_pixels, profile=profile),
        load_segmenter(
            segmenter,
            device=device,
            batch_size=batch_size,
            max_pixels=max_pixels,
            model_kwargs=segmenter_model_kwargs,
            profile=profile,
        ),
        stuff=stuff_model,
        answerer=load_answerer(answerer, device=device, max_pixels=max_pixels) if answerer else None,
        concurrent=concurrent,
        max_pixels=max_pixels,
    )
