"""Tests of pipeline.render: colours, overlays, the semantic legend, the panoptic view, and re-thresholding parity."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline.captioning import caption_sentence
from pipeline.catalog import load_segmenter
from pipeline.panoptic import with_threshold
from pipeline.render import (
    color_for,
    describe_objects,
    draw_instances,
    draw_panoptic,
    draw_semantic,
    objects_table,
    palette,
    text_color,
)


def square_instance(label_id: int, label: str, score: float, box: tuple[int, int, int, int], size=(64, 48)) -> dict:
    x0, y0, x1, y1 = box
    mask = np.zeros(size[::-1], dtype=np.uint8)
    mask[y0:y1, x0:x1] = 255
    return {
        "label": label,
        "label_id": label_id,
        "score": score,
        "box": [float(x0), float(y0), float(x1), float(y1)],
        "mask": Image.fromarray(mask, mode="L"),
        "area": int((mask > 0).sum()),
    }


def test_colours_are_stable_distinct_and_readable():
    colours = palette(40)
    assert len(set(colours)) == 40
    assert color_for(3) == colours[2] == color_for(3)
    assert color_for(0) == (0, 0, 0)
    assert text_color((255, 255, 255)) == (0, 0, 0)
    assert text_color((0, 0, 120)) == (255, 255, 255)


def test_draw_instances_tints_inside_the_mask_only():
    image = Image.new("RGB", (64, 48), (100, 100, 100))
    instance = square_instance(2, "square", 0.9, (20, 20, 50, 44))
    drawn = np.asarray(draw_instances(image, [instance], opacity=0.5, boxes=False, labels=False, outlines=False))
    expected = np.round(np.array([100, 100, 100]) * 0.5 + np.array(color_for(2)) * 0.5)
    assert np.abs(drawn[30, 35].astype(float) - expected).max() <= 1
    assert drawn[5, 5].tolist() == [100, 100, 100]
    unchanged = np.asarray(draw_instances(image, [instance], opacity=0.0, boxes=False, labels=False, outlines=False))
    assert (unchanged == 100).all()


def test_draw_instances_draws_boxes_and_labels_and_checks_inputs():
    image = Image.new("RGB", (64, 48), (100, 100, 100))
    instance = square_instance(1, "circle", 0.75, (20, 20, 50, 44))
    drawn = np.asarray(draw_instances(image, [instance], opacity=0.0))
    assert drawn[20, 35].tolist() == list(color_for(1))  # the box's top edge
    assert (drawn[:20] != 100).any()  # the tag above the box
    with pytest.raises(ValueError, match="opacity must be a number from 0 to 1"):
        draw_instances(image, [instance], opacity=1.5)
    with pytest.raises(ValueError, match="mask of 'circle'"):
        draw_instances(Image.new("RGB", (10, 10)), [instance])


def test_draw_semantic_adds_a_legend_and_colours_labels():
    label_map = np.zeros((48, 64), dtype=np.int32)
    label_map[10:30, 10:30] = 2
    plain = draw_semantic({"map": label_map, "labels": {2: "square"}}, legend=False)
    assert plain.size == (64, 48)
    assert np.asarray(plain)[20, 20].tolist() == list(color_for(2))
    assert np.asarray(plain)[40, 50].tolist() == [0, 0, 0]
    with_legend = draw_semantic({"map": label_map, "labels": {2: "square"}}, Image.new("RGB", (64, 48), "white"))
    assert with_legend.width == 64 and with_legend.height > 48
    legend = np.asarray(with_legend)[48:]
    assert (np.abs(legend.astype(int) - np.array(color_for(2))).sum(axis=2) == 0).any()  # the swatch


def test_draw_panoptic_separates_segments_with_white_borders():
    segment_map = np.zeros((48, 64), dtype=np.int32)
    segment_map[:, :32] = 1
    segment_map[:, 32:] = 2
    segments = [
        {"id": 1, "label": "circle", "label_id": 1, "isthing": True, "score": 0.9, "area": 48 * 32},
        {"id": 2, "label": "circle", "label_id": 1, "isthing": True, "score": 0.8, "area": 48 * 32},
    ]
    drawn = np.asarray(draw_panoptic({"map": segment_map, "segments": segments}, labels=False))
    assert drawn[40, 31].tolist() == [255, 255, 255]
    # Two instances of one label get two different shades.
    assert drawn[40, 10].tolist() != drawn[40, 50].tolist()


def test_with_threshold_equals_a_fresh_run_at_that_threshold(tiny_segmenter_dir, shapes_image):
    segmenter = load_segmenter(tiny_segmenter_dir, device="cpu")
    low = segmenter(shapes_image, threshold=0.0)
    scores = sorted(instance["score"] for instance in low["instances"])
    assert len(scores) >= 4, "the tiny model is expected to return several low-score boxes"
    threshold = float(scores[len(scores) // 2])
    fresh = segmenter(shapes_image, threshold=threshold)
    redrawn = with_threshold(low, threshold)
    assert [(i["label"], i["score"]) for i in redrawn["instances"]] == [
        (i["label"], i["score"]) for i in fresh["instances"]
    ]
    assert 0 < len(redrawn["instances"]) < len(low["instances"])
    assert np.array_equal(redrawn["semantic"]["map"], fresh["semantic"]["map"])
    assert redrawn["semantic"]["labels"] == fresh["semantic"]["labels"]
    assert np.array_equal(redrawn["panoptic"]["map"], fresh["panoptic"]["map"])
    assert redrawn["panoptic"]["segments"] == fresh["panoptic"]["segments"]
    with pytest.raises(ValueError, match="threshold must be a number from 0 to 1"):
        with_threshold(low, 2)


def test_tables_and_sentences_for_people():
    instances = [square_instance(1, "cat", 0.91234, (0, 0, 32, 24)), square_instance(1, "cat", 0.6, (0, 0, 8, 6))]
    assert objects_table(instances, (64, 48)) == [["cat", 0.912, 768, 25.0], ["cat", 0.6, 48, 1.6]]
    assert describe_objects(instances) == "2 cats"
    assert describe_objects([]) == "no objects found"
    assert caption_sentence("  a dog   on a bench ") == "A dog on a bench."
    assert caption_sentence("") == ""


def test_drawing_at_display_size_from_rle_masks(tiny_segmenter_dir, shapes_image):
    # A server draws what a person sees at screen size, from the compact masks it keeps: the same picture,
    # scaled, as drawing at full size and shrinking.
    segmenter = load_segmenter(tiny_segmenter_dir, device="cpu")
    large = shapes_image.resize((shapes_image.width * 4, shapes_image.height * 4))
    result = segmenter(large, threshold=0.0, mask_format="rle")
    assert result["instances"] and isinstance(result["instances"][0]["mask"], dict)
    small = large.resize(shapes_image.size)
    drawn = draw_instances(small, result["instances"], labels=False, outlines=False, boxes=False)
    tinted = np.abs(np.asarray(drawn, np.int16) - np.asarray(small, np.int16)).max(axis=2) > 0
    from pipeline.masks import crop_of

    union = np.any([crop_of(instance["mask"]).full() for instance in result["instances"]], axis=0)
    expected = np.asarray(Image.fromarray(union).resize(small.size, Image.Resampling.NEAREST))
    assert np.count_nonzero(tinted & expected) / np.count_nonzero(tinted | expected) > 0.9
    assert draw_semantic(result["semantic"], small).size[0] == small.width
    assert draw_panoptic(result["panoptic"], small).size == small.size
    with pytest.raises(ValueError, match="the image is"):
        draw_instances(small.resize((small.width, small.height * 2)), result["instances"])
