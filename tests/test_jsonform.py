"""The JSON form of results: COCO RLE masks through pycocotools, PNG maps, and exact round trips."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from pipeline.jsonform import decode_map, decode_mask, encode_map, encode_mask, from_json, to_json
from pipeline.panoptic import fuse_panoptic, semantic_from_instances


def _result() -> dict:
    rng = np.random.default_rng(0)
    masks = rng.random((3, 17, 23)) > 0.6
    labels, scores = [1, 2, 1], [0.9, 0.8, 0.7]
    instances = [
        {
            "label": ["", "cat", "dog"][label],
            "label_id": label,
            "score": score,
            "box": [1.0, 2.0, 20.5, 15.25],
            "mask": Image.fromarray(mask.astype(np.uint8) * 255, mode="L"),
            "area": int(mask.sum()),
        }
        for mask, label, score in zip(masks, labels, scores)
    ]
    return {
        "caption": "a cat and a dog",
        "instances": instances,
        "semantic": {
            "map": semantic_from_instances(masks, labels, scores, height=17, width=23),
            "labels": {1: "cat", 2: "dog"},
        },
        "panoptic": fuse_panoptic(masks, labels, scores, {1: "cat", 2: "dog"}),
        "description": "A cat and a dog. 2 cats: one on the left and one on the right. 1 dog in the centre.",
        "grounding": [
            {"word": "cat", "start": 2, "end": 5, "label": "cat", "instances": [0, 2]},
            {"word": "dog", "start": 12, "end": 15, "label": "dog", "instances": [1]},
        ],
        "models": {"captioner": "tiny", "segmenter": "tiny"},
        "timings_ms": {"caption": 1.0, "segment": 2.0, "total": 3.0},
    }


def test_rle_is_real_coco_rle():
    mask = np.zeros((9, 11), dtype=bool)
    mask[2:7, 3:9] = True
    rle = encode_mask(mask)
    assert isinstance(rle["counts"], str)
    # pycocotools reads it back directly, area and box included.
    coco_rle = {"size": rle["size"], "counts": rle["counts"].encode()}
    assert mask_utils.area(coco_rle) == 30
    assert mask_utils.toBbox(coco_rle).tolist() == [3.0, 2.0, 6.0, 5.0]
    assert (np.asarray(decode_mask(rle)) == mask * 255).all()


def test_map_round_trip():
    label_map = np.arange(12 * 5, dtype=np.int32).reshape(12, 5) * 1000
    decoded = decode_map(encode_map(label_map))
    assert decoded.dtype == np.int32 and (decoded == label_map).all()


def test_whole_result_round_trips_and_dumps():
    result = _result()
    text = json.dumps(to_json(result))
    back = from_json(json.loads(text))
    assert back["caption"] == result["caption"]
    for original, restored in zip(result["instances"], back["instances"]):
        assert restored["mask"].mode == "L"
        assert (np.asarray(restored["mask"]) == np.asarray(original["mask"])).all()
        assert {k: v for k, v in restored.items() if k != "mask"} == {k: v for k, v in original.items() if k != "mask"}
    assert (back["semantic"]["map"] == result["semantic"]["map"]).all()
    assert back["semantic"]["labels"] == result["semantic"]["labels"]
    assert (back["panoptic"]["map"] == result["panoptic"]["map"]).all()
    assert back["panoptic"]["segments"] == result["panoptic"]["segments"]
    assert back["timings_ms"] == result["timings_ms"]
    assert back["description"] == result["description"] and back["grounding"] == result["grounding"]
