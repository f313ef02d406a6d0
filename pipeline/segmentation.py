"""The Mask R-CNN pipeline: instances with masks, a semantic map and a panoptic view of each image."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.models.detection.transform import resize_boxes
from torchvision.transforms.functional import pil_to_tensor

from .base import Pipeline
from .masks import MASK_FORMATS, paste_crop
from .options import Option, by_name
from .panoptic import DEFAULT_OVERLAP_THRESHOLD, THRESHOLD, VIEWS, ViewBuilder

SUBTASKS = ("instance", "semantic", "panoptic")
#: The segmenters' call options, declared once (see :mod:`pipeline.options`).
SEGMENT_OPTIONS = (
    THRESHOLD,
    Option("mask_threshold", "float", 0.5, "a mask pixel belongs to the object above this probability", low=0.0,
           high=1.0, public=False),
    Option("overlap_threshold", "float", DEFAULT_OVERLAP_THRESHOLD, "panoptic fusion drops an instance covered more "
           "than this much", low=0.0, high=1.0, public=False),
    Option("subtask", "choice", None, "which segmentation views to return", choices=SUBTASKS, none_means="all"),
    Option("mask_format", "choice", "pil", "masks as mode-L pictures or COCO RLE", choices=MASK_FORMATS,
           public=False),
)  # fmt: skip
#: A picture's shorter side, once the model has scaled it, is padded to at least this many pixels: a 12x2000 strip
#: would otherwise shrink below one feature-map cell and fail inside torchvision.
MIN_SCALED_SIDE = 32
#: A picture of more pixels than this is scaled for the model one colour channel at a time (torchvision's own
#: bilinear resize, then its normalisation: the same numbers within float rounding), so that a 40-megapixel photo
#: never becomes float tensors of its full size; smaller ones go through torchvision's transform as they are.
LEAN_ABOVE_PIXELS = 16_000_000


class SegmentationPipeline(Pipeline):
    """Segment images with a torchvision Mask R-CNN.

    Args:
        model (torchvision.models.detection.MaskRCNN): the detector; moved to ``device``, eval mode.
        categories (Sequence[str]): label name of each class index, index 0 being the background.
        name (str, default "custom"): the catalog name, reported in results.
        device, batch_size, max_pixels: see :class:`pipeline.base.Pipeline`.

    Call options (:data:`SEGMENT_OPTIONS`):
        threshold (float, default 0.5): instances scoring below this are dropped (also the panoptic score cut).
        mask_threshold (float, default 0.5): a mask pixel belongs to the object where its probability is above this.
        overlap_threshold (float, default 0.5): panoptic fusion drops an instance more than this much covered.
        subtask (str | None, default None): ``"instance"``, ``"semantic"`` or ``"panoptic"`` to compute one view;
            None (or ``"all"``) computes all three.
        mask_format (str, default "pil"): ``"pil"`` (mode-"L" images, the contract's form) or ``"rle"`` (COCO RLE,
            the JSON form, made without a picture-sized mask per instance: what a server holding many results or a
            large photo wants).

    Returns (per image):
        dict with
        - ``"instances"``: list of ``{"label", "label_id", "score", "box", "mask", "area"}``, highest score
          first; ``box`` is ``[x0, y0, x1, y1]`` in pixels, ``mask`` a mode-"L" PIL image of 0/255 the size of the
          input (or its COCO RLE), ``area`` its count of mask pixels. Always present: the views are built from it.
        - ``"semantic"`` (subtask None or "semantic"): ``{"map": np.ndarray[H, W] int32, "labels": {id: name}}``.
        - ``"panoptic"`` (subtask None or "panoptic"): ``{"map": np.ndarray[H, W] int32, "segments": [...]}``.

    The masks are torchvision's (the same pixels as ``model(images)``), pasted into each instance's box only and
    after the score threshold. A picture of more than :data:`LEAN_ABOVE_PIXELS` is scaled for the model one channel
    at a time, and one too thin for the network is padded; boxes and masks are always in the input's own frame.

    >>> from pipeline import load_segmenter
    >>> segmenter = load_segmenter("shapes")
    >>> [obj["label"] for obj in segmenter("space/examples/shapes.png", threshold=0.7)["instances"]]
    ['circle', 'triangle', 'triangle']
    """

    call_options = by_name(SEGMENT_OPTIONS)

    def __init__(self, model: torch.nn.Module, categories: Sequence[str], *, name: str = "custom", **kwargs: Any):
        super().__init__(**kwargs)
        if not categories:
            raise ValueError("categories must name at least the background class")
        self.name = name
        self.categories = list(categories)
        self.model = model.to(self.device).eval()

    def preprocess(self, image: Image.Image) -> dict[str, Any]:
        transform = self.model.transform
        size = (image.height, image.width)
        pixels = pil_to_tensor(image)  # uint8 [3, H, W]
        scale = min(max(transform.min_size) / min(size), transform.max_size / max(size))
        short = math.ceil(MIN_SCALED_SIDE / scale)
        pad_h, pad_w = max(0, short - size[0]), max(0, short - size[1])
        if pad_h or pad_w:  # on the bottom and right, so that coordinates stay the picture's own
            pixels = torch.nn.functional.pad(pixels, (0, pad_w, 0, pad_h))
        padded = tuple(pixels.shape[-2:])
        if size[0] * size[1] > LEAN_ABOVE_PIXELS:
            return {"image": self._scale_by_channel(pixels), "scaled": True, "size": size, "padded": padded}
        # The same conversion as torchvision's weights.transforms(): uint8 CHW -> float in [0, 1].
        return {"image": pixels.float().div_(255.0), "scaled": False, "size": size, "padded": padded}

    def _scale_by_channel(self, pixels: torch.Tensor) -> torch.Tensor:
        """torchvision's resize and normalisation of a large picture, one channel at a time (resize first)."""
        transform = self.model.transform
        height, width = pixels.shape[-2:]
        scale = min(max(transform.min_size) / min(height, width), transform.max_size / max(height, width))
        channels = []
        for index, (mean, std) in enumerate(zip(transform.image_mean, transform.image_std)):
            channel = pixels[index].float().div_(255.0)[None, None]
            resized = torch.nn.functional.interpolate(
                channel, scale_factor=scale, mode="bilinear", recompute_scale_factor=True, align_corners=False
            )
            channels.append(resized[0, 0].sub_(mean).div_(std))
        return torch.stack(channels)

    def _image_list(self, model_inputs: list[dict[str, Any]]) -> Any:
        """torchvision's ``GeneralizedRCNNTransform.forward`` at inference, with the large pictures already scaled."""
        from torchvision.models.detection.image_list import ImageList

        transform = self.model.transform
        images = []
        for inputs in model_inputs:
            image = inputs["image"].to(self.device)
            if not inputs["scaled"]:
                image, _ = transform.resize(transform.normalize(image))
            images.append(image)
        sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in images]
        return ImageList(transform.batch_images(images, size_divisible=transform.size_divisible), sizes)

    def _sanitize_parameters(self, **kwargs: Any) -> tuple[dict, dict, dict]:
        preprocess_kwargs, forward_kwargs, postprocess_kwargs = super()._sanitize_parameters(**kwargs)
        # The model itself drops what the threshold would (see _forward), so it gets the threshold too.
        forward_kwargs["threshold"] = postprocess_kwargs.get("threshold", THRESHOLD.default)
        return preprocess_kwargs, forward_kwargs, postprocess_kwargs

    def _forward(
        self, model_inputs: list[dict[str, Any]], threshold: float = THRESHOLD.default
    ) -> list[dict[str, Any]]:
        # torchvision's GeneralizedRCNN.forward up to its transform.postprocess, which would paste every detection's
        # mask into a picture-sized float image; boxes are brought back to the input's frame here, masks later.
        model = self.model
        batch = self._image_list(model_inputs)
        features = model.backbone(batch.tensors)
        if isinstance(features, torch.Tensor):
            features = {"0": features}
        proposals, _ = model.rpn(batch, features)
        detections, _ = self._heads(threshold)(features, proposals, batch.image_sizes)
        outputs = []
        for detection, scaled, inputs in zip(detections, batch.image_sizes, model_inputs):
            boxes = resize_boxes(detection["boxes"], scaled, inputs["padded"])
            height, width = inputs["size"]
            if inputs["padded"] != inputs["size"]:  # a box may reach into the padding
                limit = torch.tensor([width, height] * 2, dtype=boxes.dtype, device=boxes.device)
                boxes = boxes.clamp(min=0).minimum(limit)
            outputs.append(
                {
                    "boxes": boxes.cpu(),
                    "labels": detection["labels"].cpu(),
                    "scores": detection["scores"].cpu(),
                    "mask_probabilities": detection["masks"][:, 0].float().cpu(),
                    "size": (height, width),
                }
            )
        return outputs

    def _heads(self, threshold: float) -> torch.nn.Module:
        """The model's box and mask heads, keeping only detections the threshold keeps.

        torchvision's heads keep every box scoring above ``box_score_thresh`` (0.05) and run the mask head on each,
        up to ``box_detections_per_img`` (100): on a busy photo most of the mask head's work was for boxes the
        threshold then dropped. Dropping them before the mask head gives the same instances (non-maximum suppression
        keeps or drops a box by the boxes scoring higher only, and the highest ``box_detections_per_img`` above the
        threshold are the same), for a share of the work. A shallow copy of the heads per call, so that calls with
        other thresholds can run at once; the weights are the same objects.
        """
        heads = self.model.roi_heads
        # torchvision keeps scores above score_thresh, and both it and postprocess compare float32 scores in float32:
        # the float32 just below the threshold keeps a score equal to it.
        floor = float(np.nextafter(np.float32(threshold), np.float32(-np.inf)))
        if floor <= heads.score_thresh:
            return heads
        pruned = copy.copy(heads)
        pruned.score_thresh = floor
        return pruned

    def postprocess(
        self,
        outputs: dict[str, Any],
        threshold: float = 0.5,
        mask_threshold: float = 0.5,
        overlap_threshold: float = DEFAULT_OVERLAP_THRESHOLD,
        subtask: str | None = None,
        mask_format: str = "pil",
    ) -> dict[str, Any]:
        height, width = outputs["size"]
        scores = outputs["scores"]
        order = [int(i) for i in torch.argsort(scores, descending=True, stable=True) if scores[i] >= threshold]
        views = VIEWS if subtask is None else tuple(view for view in VIEWS if view == subtask)
        builder = ViewBuilder(
            height, width, views=views, score_threshold=threshold, overlap_threshold=overlap_threshold
        )
        instances = []
        for i in order:  # one picture-sized mask at most exists at a time
            box = outputs["boxes"][i]
            crop = paste_crop(outputs["mask_probabilities"][i], box, height, width, mask_threshold)
            label_id, score = int(outputs["labels"][i]), float(scores[i])
            builder.add(crop, label_id, score, self.label_name(label_id))
            instances.append(
                {
                    "label": self.label_name(label_id),
                    "label_id": label_id,
                    "score": score,
                    "box": [float(v) for v in box],
                    "mask": crop.to(mask_format),
                    "area": crop.area,
                }
            )
        result: dict[str, Any] = {"instances": instances}
        if "semantic" in views:
            result["semantic"] = builder.semantic()
        if "panoptic" in views:
            result["panoptic"] = builder.panoptic()
        return result

    def label_name(self, label_id: int) -> str:
        if 0 <= label_id < len(self.categories):
            return self.categories[label_id]
        return f"class {label_id}"
