"""The combined pipeline: the output contract, both halves equal to running each alone, batching."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import draw_shapes
from PIL import Image

from pipeline import ImageAnalysisPipeline, describe_scene, ground_caption, load_pipeline, to_json


@pytest.fixture(scope="module")
def pipe(tiny_blip_dir, tiny_segmenter_dir) -> ImageAnalysisPipeline:
    return load_pipeline(tiny_blip_dir, tiny_segmenter_dir, device="cpu")


def _check_contract(result: dict, size: tuple[int, int]) -> None:
    width, height = size
    assert set(result) >= {"caption", "instances", "semantic", "panoptic", "description", "grounding", "models"}
    assert isinstance(result["caption"], str) and isinstance(result["description"], str)
    for entry in result["grounding"]:
        assert result["caption"][entry["start"] : entry["end"]] == entry["word"]
        assert all(result["instances"][i]["label"] == entry["label"] for i in entry["instances"])
    scores = [obj["score"] for obj in result["instances"]]
    assert scores == sorted(scores, reverse=True)
    for obj in result["instances"]:
        assert set(obj) == {"label", "label_id", "score", "box", "mask", "area"}
        assert isinstance(obj["mask"], Image.Image) and obj["mask"].mode == "L" and obj["mask"].size == size
        assert set(np.unique(np.asarray(obj["mask"]))) <= {0, 255}
        assert obj["area"] == int((np.asarray(obj["mask"]) == 255).sum())
        assert len(obj["box"]) == 4 and all(isinstance(v, float) for v in obj["box"])
    assert result["semantic"]["map"].shape == (height, width) and result["semantic"]["map"].dtype == np.int32
    assert result["panoptic"]["map"].shape == (height, width)
    assert set(result["timings_ms"]) >= {"caption", "segment", "total"}
    assert result["timings_ms"]["total"] >= max(result["timings_ms"]["caption"], result["timings_ms"]["segment"])


def test_contract_and_parts_equal_each_half(pipe):
    image = draw_shapes(seed=5)
    result = pipe(image, threshold=0.0, max_new_tokens=8, num_beams=2)
    _check_contract(result, image.size)
    assert result["instances"], "the tiny random segmenter should detect something at threshold 0"
    assert result["caption"] == pipe.captioner(image, max_new_tokens=8, num_beams=2)["caption"]
    alone = pipe.segmenter(image, threshold=0.0)
    assert [obj["score"] for obj in result["instances"]] == [obj["score"] for obj in alone["instances"]]
    assert (result["panoptic"]["map"] == alone["panoptic"]["map"]).all()
    assert result["models"] == {"captioner": pipe.captioner.name, "segmenter": pipe.segmenter.name, "stuff": None}
    json.dumps(to_json(result))


def test_sequential_equals_concurrent(pipe):
    image = draw_shapes(seed=6)
    sequential = ImageAnalysisPipeline(pipe.captioner, pipe.segmenter, concurrent=False)
    one, other = pipe(image, threshold=0.2), sequential(image, threshold=0.2)
    assert one["caption"] == other["caption"]
    assert [obj["box"] for obj in one["instances"]] == [obj["box"] for obj in other["instances"]]


def test_list_in_list_out(pipe, tmp_path):
    path = tmp_path / "b.png"
    draw_shapes(80, 60, seed=1).save(path)
    results = pipe([draw_shapes(seed=0), str(path)], threshold=0.3)
    assert isinstance(results, list) and len(results) == 2
    _check_contract(results[0], (96, 72))
    _check_contract(results[1], (80, 60))


def test_options_and_bad_input(pipe):
    with pytest.raises(TypeError, match=r"unknown call options \['colour'\]"):
        pipe(draw_shapes(), colour="red")
    with pytest.raises(ValueError, match="not an image"):
        pipe(b"not an image at all")
    assert pipe(draw_shapes(), subtask="instance").keys() >= {"caption", "instances"}


def test_description_and_grounding_options(pipe):
    image = draw_shapes(seed=5)
    result = pipe(image, threshold=0.0, max_new_tokens=8)
    assert result["instances"], "the tiny random segmenter should detect something at threshold 0"
    caption, instances = result["caption"], result["instances"]
    labels = pipe.segmenter.categories
    assert result["description"] == describe_scene(caption, instances, image.size, labels=labels)
    assert result["grounding"] == ground_caption(caption, instances, labels)
    short = pipe(image, threshold=0.0, max_new_tokens=8, detail="short", max_objects=1)
    assert short["description"] == describe_scene(
        caption, instances, image.size, detail="short", max_objects=1, labels=labels
    )
    assert short["description"] != result["description"]
    for option, value, accepted in (("detail", "verbose", "one of"), ("max_objects", -2, "an integer of at least 0")):
        with pytest.raises(ValueError, match=f"{option} must be {accepted}"):
            pipe(image, **{option: value})
