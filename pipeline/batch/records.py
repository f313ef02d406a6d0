"""One image's record: what the batch job keeps of a result, the same whichever engine ran it.

A record is plain JSON: ``key``, ``file``, ``image_id``, ``width``, ``height``, ``caption`` (and ``description``
when the result has one), ``objects`` (count per label), ``timings_ms``, ``instances`` in the COCO results format
plus ``label`` / ``label_id`` (masks as COCO RLE, via :func:`pipeline.to_json`), and ``segments``: the panoptic
segments in the COCO panoptic format, their PNG (:func:`pipeline.evaluation.id_to_rgb` ids) written beside it under
``panoptic_png``. An image that could not be read gets ``{"key", "file", "image_id", "error"}``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from ..describe import count_labels
from ..evaluation import id_to_rgb
from ..jsonform import to_json
from .inputs import Item

#: Keys of a result's ``timings_ms`` kept in records, in milliseconds.
TIMINGS = ("decode", "caption", "segment", "total")


def png_name(image_id: int) -> str:
    """The panoptic PNG's file name of an image: its id, 12 digits (COCO's own naming)."""
    return f"{int(image_id):012d}.png"


def error_record(item: Item, message: str) -> dict[str, Any]:
    """The record of an image that could not be analysed."""
    return {"key": item.key, "file": item.file, "image_id": item.image_id, "error": message}


def result_record(
    item: Item, result: Mapping[str, Any], category_of: Mapping[str, int] | None
) -> tuple[dict[str, Any], bytes]:
    """One image's record and its panoptic PNG from an :class:`~pipeline.combined.ImageAnalysisPipeline` result.

    Args:
        item (Item): the image.
        result (Mapping): the pipeline's result for it (with ``"panoptic"``).
        category_of (Mapping[str, int] | None): label name -> the category id written; labels missing from it get
            ``category_id`` None (left out of ``instances.json``) and are unlabeled in the panoptic PNG. None uses
            the segmenter's own label ids.

    Returns:
        tuple ``(record, png_bytes)``.
    """

    def category(label: str, label_id: int, isthing: bool = True) -> int | None:
        if category_of is None or (not isthing and label not in category_of):
            return int(label_id)  # stuff keeps its own id (1000 and up) unless the table names it
        return category_of.get(label)

    instances = []
    for instance in to_json({"instances": result["instances"]})["instances"]:
        x0, y0, x1, y1 = (float(value) for value in instance["box"])
        instances.append(
            {
                "label": instance["label"],
                "label_id": int(instance["label_id"]),
                "category_id": category(instance["label"], instance["label_id"]),
                "score": float(instance["score"]),
                "bbox": [x0, y0, x1 - x0, y1 - y0],  # COCO [x, y, w, h], as pipeline.evaluation.coco_detections
                "segmentation": instance["mask"],
                "area": int(instance["area"]),
            }
        )
    panoptic_map = np.asarray(result["panoptic"]["map"])
    height, width = panoptic_map.shape
    segments, kept = [], np.zeros(panoptic_map.shape, dtype=bool)
    for segment in result["panoptic"]["segments"]:
        category_id = category(segment["label"], segment["label_id"], bool(segment.get("isthing", True)))
        if category_id is None:
            continue
        pixels = panoptic_map == segment["id"]
        kept |= pixels
        rows, columns = np.nonzero(pixels)
        box = [int(columns.min()), int(rows.min()), int(np.ptp(columns)) + 1, int(np.ptp(rows)) + 1]
        segments.append(
            {
                "id": int(segment["id"]),
                "category_id": category_id,
                "label": segment["label"],
                "score": segment["score"],
                "isthing": bool(segment.get("isthing", True)),
                "area": int(pixels.sum()),
                "bbox": box,
                "iscrowd": 0,
            }
        )
    buffer = io.BytesIO()
    Image.fromarray(id_to_rgb(np.where(kept, panoptic_map, 0)), mode="RGB").save(buffer, format="PNG")
    timings = result.get("timings_ms", {})
    record = {
        "key": item.key,
        "file": item.file,
        "image_id": item.image_id,
        "width": int(width),
        "height": int(height),
        "caption": result["caption"],
        **({"description": result["description"]} if "description" in result else {}),
        "objects": count_labels(result["instances"]),
        "timings_ms": {key: round(float(timings[key]), 1) for key in TIMINGS if key in timings},
        "instances": instances,
        "segments": segments,
        "panoptic_png": png_name(item.image_id),
    }
    return record, buffer.getvalue()


def analyse(
    pipe: Any,
    items: Sequence[Item],
    images: Sequence[Image.Image],
    options: Mapping[str, Any],
    category_of: Mapping[str, int] | None,
) -> list[tuple[dict[str, Any], bytes]]:
    """Run the pipeline on decoded images (one batched call) and return each image's record and PNG.

    Args:
        pipe (ImageAnalysisPipeline): the loaded pipeline.
        items (Sequence[Item]): the images' items, in the order of ``images``.
        images (Sequence[PIL.Image.Image]): decoded RGB images.
        options (Mapping): call options (``threshold``, ``max_new_tokens``, ...).
        category_of (Mapping[str, int] | None): see :func:`result_record`.
    """
    if not images:
        return []
    results = pipe(list(images), **options, subtask="panoptic")
    return [result_record(item, result, category_of) for item, result in zip(items, results)]
