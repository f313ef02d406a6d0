"""Stuff: the amorphous regions around the objects (sky, grass, water, sand, wall, road), from a semantic model.

Any transformers ``AutoModelForSemanticSegmentation`` (SegFormer, UperNet, DPT, ...) with its image processor runs
here. Mask R-CNN outlines the things, so of the semantic model's labels only those that are stuff are kept
(:func:`stuff_labels`): the ones a model's config lists under ``stuff_labels`` (the ``shapes`` stuff model does), else
those of its labels that ADE20K's panoptic split calls stuff (:data:`ADE20K_STUFF`), else, for a model whose labels
are none of those, all of them. A pixel the model gives to one of its other labels (a person, a car) is no stuff.

Stuff label ids start at :data:`STUFF_ID_OFFSET` (``1000 +`` the model's class index), so that they never meet a
segmenter's thing ids (COCO's run to 90) in the semantic map; :func:`pipeline.panoptic.add_stuff` fuses them into
both views.

>>> sorted(ADE20K_STUFF & {"sky", "grass", "person"})
['grass', 'sky']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from .base import Pipeline

#: A stuff label's id in the semantic map and the panoptic segments: this plus the model's class index.
STUFF_ID_OFFSET = 1000
#: The labels of ADE20K's 150 that its panoptic split (as used by Mask2Former and OneFormer) counts as stuff, by the
#: first name of each (transformers' SegFormer configs name them so); the other 100 are things.
ADE20K_STUFF = frozenset(
    ("wall", "building", "sky", "floor", "tree", "ceiling", "road", "grass", "sidewalk", "earth", "mountain", "plant",
     "water", "house", "sea", "rug", "field", "rock", "base", "sand", "skyscraper", "grandstand", "path", "runway",
     "stairway", "river", "bridge", "blind", "hill", "bar", "hovel", "tower", "dirt track", "land", "escalator",
     "buffet", "poster", "stage", "conveyer belt", "canopy", "pool", "swimming pool", "falls", "waterfall", "tent",
     "cradle", "tank", "lake", "blanket", "pier", "crt screen", "shower")
)  # fmt: skip
#: The semantic map's longer side is at most this many pixels before it is scaled to the picture (nearest): the
#: model's own output is coarser still (SegFormer: a quarter of its 512 px input).
MAP_SIDE = 512


def _first_name(label: str) -> str:
    return str(label).split(",")[0].strip().lower()


def stuff_labels(id2label: Mapping[int, str], listed: Sequence[str] | None = None) -> dict[int, str]:
    """The class indices of a semantic model that are stuff, with their names (the first of a comma list).

    Args:
        id2label (Mapping[int, str]): the model config's class names.
        listed (Sequence[str] | None, default None): the names the model declares as stuff (its config's
            ``stuff_labels``); None: ADE20K's stuff names, or every label when none of them is one.

    Returns:
        dict[int, str]: class index -> name, in index order.

    >>> stuff_labels({0: "wall", 1: "person", 2: "road, route"})
    {0: 'wall', 2: 'road'}
    >>> stuff_labels({0: "background", 1: "sky"}, listed=["sky"])
    {1: 'sky'}
    """
    names = {int(index): _first_name(label) for index, label in sorted(id2label.items(), key=lambda kv: int(kv[0]))}
    if listed is not None:
        wanted = {_first_name(name) for name in listed}
        return {index: name for index, name in names.items() if name in wanted}
    known = {index: name for index, name in names.items() if name in ADE20K_STUFF}
    return known or names


class StuffPipeline(Pipeline):
    """Label every pixel with a stuff class (or none), with the model's mean confidence per class.

    Args:
        model (transformers.PreTrainedModel): an ``AutoModelForSemanticSegmentation`` model; moved to ``device``,
            eval mode. Its ``config.id2label`` names the classes; ``config.stuff_labels``, when set, says which are
            stuff (see :func:`stuff_labels`).
        processor: its image processor (resizing and normalisation).
        name (str, default "custom"): the catalog name, reported in results.
        device, batch_size, max_pixels: see :class:`pipeline.base.Pipeline`.

    Returns (per image):
        dict with
        - ``"map"``: np.ndarray[H, W] int32, the input's size: :data:`STUFF_ID_OFFSET` plus the class index where a
          stuff class wins, 0 elsewhere;
        - ``"labels"``: ``{id: name}`` of the stuff ids present;
        - ``"scores"``: ``{id: float}``, the model's mean probability of that class over its pixels.

    >>> from pipeline import load_stuff
    >>> result = load_stuff("shapes")("space/examples/shapes-outdoors.png")
    >>> result["labels"], result["map"].shape
    ({1000: 'sky', 1001: 'grass'}, (384, 384))
    """

    def __init__(self, model: torch.nn.Module, processor: Any, *, name: str = "custom", **kwargs: Any):
        super().__init__(**kwargs)
        id2label = getattr(model.config, "id2label", None) or {}
        self.classes = stuff_labels(id2label, getattr(model.config, "stuff_labels", None))
        if not self.classes:
            raise ValueError(f"stuff model {name!r} names no stuff class among its labels {sorted(id2label.values())}")
        self.name = name
        self.processor = processor
        self.model = model.to(self.device).eval()
        #: What a grounding may look for: the stuff names.
        self.categories = sorted(set(self.classes.values()))
        mask = torch.zeros(int(model.config.num_labels), dtype=torch.bool)
        mask[list(self.classes)] = True
        self._is_stuff = mask

    def preprocess(self, image: Image.Image) -> dict[str, Any]:
        pixels = self.processor(images=image, return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixels[0], "size": (image.height, image.width)}

    def _forward(self, model_inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        dtype = next(self.model.parameters()).dtype
        batch = torch.stack([inputs["pixel_values"] for inputs in model_inputs]).to(self.device, dtype)
        logits = self.model(pixel_values=batch).logits.float()
        outputs = []
        for row, inputs in zip(logits, model_inputs):
            height, width = inputs["size"]
            scale = min(1.0, MAP_SIDE / max(height, width))
            target = (max(1, round(height * scale)), max(1, round(width * scale)))
            # Only the classes that win somewhere at the model's own resolution are scaled up (a few of ADE20K's 150
            # in a photo): a pixel between two cells takes one of its neighbours' winners. The confidence is the
            # winner's probability over every class, scaled up the same way.
            confidence, winners = row.softmax(dim=0).max(dim=0)
            present = torch.unique(winners)
            scaled = torch.nn.functional.interpolate(row[present][None], size=target, mode="bilinear")[0]
            classes = present[scaled.argmax(dim=0)]
            confidence = torch.nn.functional.interpolate(confidence[None, None], size=target, mode="bilinear")[0, 0]
            outputs.append({"classes": classes.cpu(), "confidence": confidence.cpu(), "size": (height, width)})
        return outputs

    def postprocess(self, outputs: dict[str, Any]) -> dict[str, Any]:
        classes, confidence = outputs["classes"], outputs["confidence"]
        stuff = self._is_stuff[classes]
        small = torch.where(stuff, classes + STUFF_ID_OFFSET, torch.zeros_like(classes)).numpy().astype(np.int32)
        count = len(self._is_stuff)
        pixels = torch.bincount(classes[stuff], minlength=count).numpy()
        sums = torch.bincount(classes[stuff], weights=confidence[stuff].double(), minlength=count).numpy()
        labels = {STUFF_ID_OFFSET + int(i): self.classes[int(i)] for i in np.flatnonzero(pixels)}
        scores = {STUFF_ID_OFFSET + int(i): round(float(sums[i] / pixels[i]), 4) for i in np.flatnonzero(pixels)}
        height, width = outputs["size"]
        if small.shape != (height, width):
            small = np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.NEAREST))
        return {"map": small.astype(np.int32), "labels": labels, "scores": scores}
