"""Caption and segmentation of one image: the two pipelines run concurrently on one decoded image."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .captioning import CaptionPipeline
from .describe import check_options, describe
from .images import ImageInput, load_image
from .segmentation import SegmentationPipeline
from .speed import SpeedProfile

CAPTION_OPTIONS = ("prompt", "max_new_tokens", "num_beams", "repetition_penalty", "generate_kwargs", "sentence")
SEGMENT_OPTIONS = ("threshold", "mask_threshold", "overlap_threshold", "subtask")
DESCRIBE_OPTIONS = ("detail", "max_objects")


class ImageAnalysisPipeline:
    """Caption an image and outline every object in it; the output contract of DESIGN.md.

    The image is decoded once and handed to both pipelines, which run in two threads (PyTorch releases the GIL
    inside its kernels, so the captioner and the segmenter overlap).

    Args:
        captioner (CaptionPipeline): the captioning half.
        segmenter (SegmentationPipeline): the segmentation half.
        concurrent (bool, default True): run the two halves at the same time.
        max_pixels (int | None, default None): image intake limit, see :func:`pipeline.images.load_image`.

    Call options: those of :class:`CaptionPipeline` (``prompt``, ``max_new_tokens``, ``num_beams``,
    ``repetition_penalty``, ``generate_kwargs``) and of :class:`SegmentationPipeline` (``threshold``,
    ``mask_threshold``, ``overlap_threshold``, ``subtask``), and those of the description (``detail``: ``"long"``
    or ``"short"``; ``max_objects``: int or None), see :func:`pipeline.describe.describe_scene`.

    Returns (per image):
        dict with
        - ``"caption"``: str;
        - ``"instances"``, ``"semantic"``, ``"panoptic"``: as :class:`SegmentationPipeline` returns them;
        - ``"description"``: str, the caption then what is where (:func:`pipeline.describe.describe_scene`);
        - ``"grounding"``: list of ``{"word", "start", "end", "label", "instances"}``, the caption's words that
          name a label (:func:`pipeline.describe.ground_caption`);
        - ``"models"``: ``{"captioner": name, "segmenter": name}``;
        - ``"timings_ms"``: ``{"caption", "segment", "total"}`` in milliseconds.

    >>> pipe = load_pipeline(captioner="shapes", segmenter="shapes", device="cpu")  # doctest: +SKIP
    >>> result = pipe("shapes.png")  # doctest: +SKIP
    >>> result["caption"], len(result["instances"])  # doctest: +SKIP
    ('a red circle to the left of a blue square', 2)
    """

    def __init__(
        self,
        captioner: CaptionPipeline,
        segmenter: SegmentationPipeline,
        *,
        concurrent: bool = True,
        max_pixels: int | None = None,
    ):
        self.captioner = captioner
        self.segmenter = segmenter
        self.concurrent = concurrent
        self.max_pixels = max_pixels
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="analysis") if concurrent else None

    def __call__(self, images: ImageInput | Sequence[ImageInput], **kwargs: Any) -> Any:
        """Analyse one image (returns one result) or a list (returns a list, each half batched)."""
        caption_kwargs = {key: kwargs.pop(key) for key in CAPTION_OPTIONS if key in kwargs}
        segment_kwargs = {key: kwargs.pop(key) for key in SEGMENT_OPTIONS if key in kwargs}
        describe_kwargs = {key: kwargs.pop(key) for key in DESCRIBE_OPTIONS if key in kwargs}
        if kwargs:
            raise TypeError(f"ImageAnalysisPipeline got unknown call options {sorted(kwargs)}")
        check_options(**describe_kwargs)  # before the models run, not after
        single = not isinstance(images, (list, tuple))
        start = time.perf_counter()
        loaded = [load_image(image, max_pixels=self.max_pixels) for image in ([images] if single else images)]
        decode_ms = (time.perf_counter() - start) * 1000.0

        def timed(pipeline, options):
            tick = time.perf_counter()
            output = pipeline(loaded, **options)
            return output, (time.perf_counter() - tick) * 1000.0

        if self._executor is not None:
            caption_job = self._executor.submit(timed, self.captioner, caption_kwargs)
            segment_job = self._executor.submit(timed, self.segmenter, segment_kwargs)
            (captions, caption_ms), (segments, segment_ms) = caption_job.result(), segment_job.result()
        else:
            captions, caption_ms = timed(self.captioner, caption_kwargs)
            segments, segment_ms = timed(self.segmenter, segment_kwargs)
        total_ms = (time.perf_counter() - start) * 1000.0
        share = len(loaded)  # a batch's time is shared evenly among its images
        labels = getattr(self.segmenter, "categories", None)  # what the segmenter could have found
        results = [
            {
                "caption": caption["caption"],
                **segmentation,
                **describe(
                    caption["caption"], segmentation["instances"], image.size, labels=labels, **describe_kwargs
                ),
                "models": {"captioner": self.captioner.name, "segmenter": self.segmenter.name},
                "timings_ms": {
                    "decode": decode_ms / share,
                    "caption": caption_ms / share,
                    "segment": segment_ms / share,
                    "total": total_ms / share,
                },
            }
            for caption, segmentation, image in zip(captions, segments, loaded)
        ]
        return results[0] if single else results

    def close(self) -> None:
        """Stop the worker threads (they also stop with the process)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)


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
) -> ImageAnalysisPipeline:
    """Load a captioner and a segmenter from the catalog and combine them.

    Args:
        captioner (str, default "blip-base"): catalog name, local directory or hub id.
        segmenter (str, default "maskrcnn-v2"): catalog name or fine-tuned checkpoint directory.
        device (str, default "auto"): ``"cpu"``, ``"cuda"`` or ``"auto"``.
        concurrent (bool, default True): run the two models at the same time.
        batch_size (int, default 1): images per forward pass when a list is given.
        max_pixels (int | None, default None): image intake limit.
        segmenter_model_kwargs (dict | None, default None): Mask R-CNN inference settings (``min_size``, ...).
        profile (str | SpeedProfile, default "full"): ``"full"`` (outputs of the models' own settings) or ``"fast"``
            (about 5x faster on CPU), see :mod:`pipeline.speed`.

    Returns:
        ImageAnalysisPipeline

    >>> pipe = load_pipeline(captioner="shapes", segmenter="shapes", device="cpu")  # doctest: +SKIP
    """
    from .catalog import load_captioner, load_segmenter

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
        concurrent=concurrent,
        max_pixels=max_pixels,
    )
