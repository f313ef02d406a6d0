"""The JSON form of the output contract, and back.

Instance masks become COCO run-length encodings (``pycocotools.mask.encode``, ``counts`` as str), the semantic and
panoptic maps become 16-bit PNGs in base64, and label-id keys become strings (JSON objects have string keys).
:func:`to_json` and :func:`from_json` are exact inverses on the contract's data.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from .masks import MaskCrop, encode_full


def encode_mask(mask: Image.Image | np.ndarray | dict[str, Any]) -> dict[str, Any]:
    """Encode a binary mask (mode-"L" 0/255 image, bool array ``[H, W]``, or a :class:`~pipeline.masks.MaskCrop`)
    as COCO RLE with str counts; a mask already in that form is returned as it is.

    >>> encode_mask(np.eye(2, dtype=bool))
    {'size': [2, 2], 'counts': '0120'}
    """
    if isinstance(mask, dict):
        return mask
    if isinstance(mask, MaskCrop):
        return mask.to_rle()
    return encode_full(np.asarray(mask) > 0)


def decode_mask(rle: dict[str, Any]) -> Image.Image:
    """Decode a COCO RLE (str or bytes counts) into a mode-"L" 0/255 image."""
    counts = rle["counts"].encode("ascii") if isinstance(rle["counts"], str) else rle["counts"]
    array = mask_utils.decode({"size": list(rle["size"]), "counts": counts})
    return Image.fromarray(array.astype(np.uint8) * 255, mode="L")


def encode_map(label_map: np.ndarray) -> dict[str, Any]:
    """Encode an int map ``[H, W]`` (values 0..65535) as a base64 16-bit PNG."""
    if label_map.size and (label_map.min() < 0 or label_map.max() > 65535):
        raise ValueError(
            f"map values must lie in 0..65535 to fit a 16-bit PNG, got {label_map.min()}..{label_map.max()}"
        )
    buffer = io.BytesIO()
    Image.fromarray(label_map.astype(np.uint16), mode="I;16").save(buffer, format="PNG")
    return {"format": "png16", "size": list(label_map.shape), "data": base64.b64encode(buffer.getvalue()).decode()}


def decode_map(encoded: dict[str, Any]) -> np.ndarray:
    """Decode a map written by :func:`encode_map` into ``np.ndarray[H, W]`` int32."""
    if encoded.get("format") != "png16":
        raise ValueError(f"map format must be 'png16', got {encoded.get('format')!r}")
    image = Image.open(io.BytesIO(base64.b64decode(encoded["data"])))
    return np.asarray(image).astype(np.int32).reshape(encoded["size"])


def to_json(result: dict[str, Any]) -> dict[str, Any]:
    """The JSON-ready form of one result (``json.dumps`` accepts it as is).

    Args:
        result (dict): one image's output as :class:`~pipeline.combined.ImageAnalysisPipeline` or
            :class:`~pipeline.segmentation.SegmentationPipeline` returns it.

    Returns:
        dict: the same keys; masks as RLE, maps as PNG, label-id keys as str. ``caption``, ``description`` and
        ``grounding`` are JSON already and are carried as they are (``grounding`` indexes ``instances``, whose
        order is kept).
    """
    out = {key: value for key, value in result.items() if key not in ("instances", "semantic", "panoptic")}
    if "instances" in result:
        out["instances"] = [{**instance, "mask": encode_mask(instance["mask"])} for instance in result["instances"]]
    if "semantic" in result:
        semantic = result["semantic"]
        out["semantic"] = {
            "map": encode_map(semantic["map"]),
            "labels": {str(label_id): name for label_id, name in semantic["labels"].items()},
        }
    if "panoptic" in result:
        out["panoptic"] = {
            "map": encode_map(result["panoptic"]["map"]),
            "segments": [dict(segment) for segment in result["panoptic"]["segments"]],
        }
    return out


def from_json(data: dict[str, Any]) -> dict[str, Any]:
    """Rebuild the contract's data (PIL masks, numpy maps, int label ids) from :func:`to_json`'s form."""
    out = {key: value for key, value in data.items() if key not in ("instances", "semantic", "panoptic")}
    if "instances" in data:
        out["instances"] = [{**instance, "mask": decode_mask(instance["mask"])} for instance in data["instances"]]
    if "semantic" in data:
        out["semantic"] = {
            "map": decode_map(data["semantic"]["map"]),
            "labels": {int(label_id): name for label_id, name in data["semantic"]["labels"].items()},
        }
    if "panoptic" in data:
        out["panoptic"] = {
            "map": decode_map(data["panoptic"]["map"]),
            "segments": [dict(segment) for segment in data["panoptic"]["segments"]],
        }
    return out
