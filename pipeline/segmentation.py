"""The Mask R-CNN pipeline: instances with masks, a semantic map and a panoptic view of each image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

from .base import Pipeline
from .panoptic import DEFAULT_OVERLAP_THRESHOLD, fuse_panoptic, semantic_from_instances

SUBTASKS = ("instance", "semantic", "panoptic")


class SegmentationPipeline(Pipeline):
    """Segment images with a torchvision Mask R-CNN.

    Args:
        model (torchvision.models.detection.MaskRCNN): the detector; moved to ``device``, eval mode.
        categories (Sequence[str]): label name of each class index, index 0 being the background.
        name (str, default "custom"): the catalog name, reported in results.
        device, batch_size, max_pixels: see :class:`pipeline.base.Pipeline`.

    Call options:
        threshold (float, default 0.5): instances scoring below this are dropped (also the panoptic score cut).
        mask_threshold (float, default 0.5): a mask pixel belongs to the object where its probability is above this.
        overlap_threshold (float, default 0.5): panoptic fusion drops an instance more than this much covered.
        subtask (str | None, default None): ``"instance"``, ``"semantic"`` or ``"panoptic"`` to compute one view;
            None computes all three.

    Returns (per image):
        dict with
        - ``"instances"``: list of ``{"label", "label_id", "score", "box", "mask", "area"}``, highest score
          first; ``box`` is ``[x0, y0, x1, y1]`` in pixels, ``mask`` a mode-"L" PIL image of 0/255 the size of the
          input, ``area`` its count of 255 pixels. Always present: the other views are built from it.
        - ``"semantic"`` (subtask None or "semantic"): ``{"map": np.ndarray[H, W] int32, "labels": {id: name}}``.
        - ``"panoptic"`` (subtask None or "panoptic"): ``{"map": np.ndarray[H, W] int32, "segments": [...]}``.

    >>> segmenter = load_segmenter("shapes")  # doctest: +SKIP
    >>> [obj["label"] for obj in segmenter("shapes.png", threshold=0.7)["instances"]]  # doctest: +SKIP
    ['circle', 'square']
    """

    def __init__(self, model: torch.nn.Module, categories: Sequence[str], *, name: str = "custom", **kwargs: Any):
        super().__init__(**kwargs)
        if not categories:
            raise ValueError("categories must name at least the background class")
        self.name = name
        self.categories = list(categories)
        self.model = model.to(self.device).eval()

    def _sanitize_parameters(self, **kwargs: Any) -> tuple[dict, dict, dict]:
        postprocess_kwargs = {}
        for key in ("threshold", "mask_threshold", "overlap_threshold", "subtask"):
            if key in kwargs:
                postprocess_kwargs[key] = kwargs.pop(key)
        if kwargs:
            raise TypeError(f"SegmentationPipeline got unknown call options {sorted(kwargs)}")
        subtask = postprocess_kwargs.get("subtask")
        if subtask is not None and subtask not in SUBTASKS:
            raise ValueError(f"subtask must be one of {SUBTASKS} or None, got {subtask!r}")
        for key in ("threshold", "mask_threshold", "overlap_threshold"):
            value = postprocess_kwargs.get(key, 0.5)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{key} must be a number between 0 and 1, got {value!r}")
        return {}, {}, postprocess_kwargs

    def preprocess(self, image: Image.Image) -> dict[str, Any]:
        # The same conversion as torchvision's weights.transforms(): uint8 CHW -> float in [0, 1].
        return {"image": pil_to_tensor(image).float().div_(255.0), "size": (image.height, image.width)}

    def _forward(self, model_inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        outputs = self.model([inputs["image"].to(self.device) for inputs in model_inputs])
        return [
            {**{key: value.cpu() for key, value in output.items()}, "size": inputs["size"]}
            for output, inputs in zip(outputs, model_inputs)
        ]

    def postprocess(
        self,
        outputs: dict[str, Any],
        threshold: float = 0.5,
        mask_threshold: float = 0.5,
        overlap_threshold: float = DEFAULT_OVERLAP_THRESHOLD,
        subtask: str | None = None,
    ) -> dict[str, Any]:
        height, width = outputs["size"]
        scores = outputs["scores"]
        order = [int(i) for i in torch.argsort(scores, descending=True, stable=True) if scores[i] >= threshold]
        masks = (outputs["masks"][order, 0] > mask_threshold).numpy() if order else np.zeros((0, height, width), bool)
        labels = [int(outputs["labels"][i]) for i in order]
        kept_scores = [float(scores[i]) for i in order]
        instances = [
            {
                "label": self.label_name(label_id),
                "label_id": label_id,
                "score": score,
                "box": [float(v) for v in outputs["boxes"][i]],
                "mask": Image.fromarray(mask.astype(np.uint8) * 255, mode="L"),
                "area": int(mask.sum()),
            }
            for i, label_id, score, mask in zip(order, labels, kept_scores, masks)
        ]
        result: dict[str, Any] = {"instances": instances}
        if subtask in (None, "semantic"):
            semantic = semantic_from_instances(masks, labels, kept_scores, height=height, width=width)
            present = sorted(int(i) for i in np.unique(semantic) if i != 0)
            result["semantic"] = {"map": semantic, "labels": {i: self.label_name(i) for i in present}}
        if subtask in (None, "panoptic"):
            names = {label_id: self.label_name(label_id) for label_id in set(labels)}
            result["panoptic"] = fuse_panoptic(
                masks,
                labels,
                kept_scores,
                names,
                score_threshold=threshold,
                overlap_threshold=overlap_threshold,
            )
        return result

    def label_name(self, label_id: int) -> str:
        if 0 <= label_id < len(self.categories):
            return self.categories[label_id]
        return f"class {label_id}"
