"""Panoptic fusion and the semantic map on hand-made masks."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.panoptic import fuse_panoptic, semantic_from_instances

NAMES = {1: "cat", 2: "dog"}


def _box_mask(top: int, left: int, bottom: int, right: int, size: tuple[int, int] = (10, 10)) -> np.ndarray:
    mask = np.zeros(size, dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def _check_invariants(panoptic: dict) -> None:
    segment_map, segments = panoptic["map"], panoptic["segments"]
    ids = [segment["id"] for segment in segments]
    assert len(ids) == len(set(ids)) and 0 not in ids
    assert set(np.unique(segment_map)) - {0} == set(ids)
    for segment in segments:
        assert segment["area"] == int((segment_map == segment["id"]).sum())
    # One int per pixel: no pixel can be in two segments; the areas add up to the labelled pixels.
    assert sum(segment["area"] for segment in segments) == int((segment_map != 0).sum())


def test_score_threshold_drops_low_scores():
    masks = np.stack([_box_mask(0, 0, 5, 5), _box_mask(5, 5, 10, 10)])
    panoptic = fuse_panoptic(masks, [1, 2], [0.9, 0.4], NAMES, score_threshold=0.5)
    assert [segment["label"] for segment in panoptic["segments"]] == ["cat"]
    _check_invariants(panoptic)


def test_more_than_half_covered_is_dropped():
    first = _box_mask(0, 0, 10, 6)  # 60 pixels, placed first (higher score)
    second = _box_mask(0, 0, 10, 8)  # 80 pixels, 60 of them (75%) already taken -> dropped
    panoptic = fuse_panoptic(np.stack([first, second]), [1, 2], [0.9, 0.8], NAMES)
    assert [segment["label_id"] for segment in panoptic["segments"]] == [1]
    _check_invariants(panoptic)


def test_less_than_half_covered_takes_only_free_pixels():
    first = _box_mask(0, 0, 10, 3)  # 30 pixels
    second = _box_mask(0, 0, 10, 8)  # 80 pixels, 30 (37.5%) taken -> keeps the 50 free ones
    panoptic = fuse_panoptic(np.stack([second, first]), [2, 1], [0.7, 0.9], NAMES)
    segments = {segment["label"]: segment for segment in panoptic["segments"]}
    assert segments["cat"]["area"] == 30 and segments["dog"]["area"] == 50
    assert panoptic["segments"][0]["label"] == "cat"  # placed by score, not by input order
    assert (panoptic["map"][:, :3] == segments["cat"]["id"]).all()
    _check_invariants(panoptic)


def test_exactly_half_covered_is_kept():
    first = _box_mask(0, 0, 10, 4)
    second = _box_mask(0, 0, 10, 8)  # 40 of 80 covered: not more than half
    panoptic = fuse_panoptic(np.stack([first, second]), [1, 2], [0.9, 0.8], NAMES)
    assert [segment["area"] for segment in panoptic["segments"]] == [40, 40]


def test_stuff_fills_free_pixels_above_the_minimum_area():
    masks = np.stack([_box_mask(0, 0, 10, 5, size=(10, 20))])
    stuff = np.zeros((10, 20), dtype=np.int32)
    stuff[:, :12] = 7  # "grass": 120 pixels, 50 under the cat -> 70 free
    stuff[:, 12:] = 8  # "sky": 80 pixels, all free
    panoptic = fuse_panoptic(
        masks, [1], [0.9], NAMES, stuff_map=stuff, stuff_names={7: "grass", 8: "sky"}, stuff_area_min=75
    )
    labels = {segment["label"]: segment for segment in panoptic["segments"]}
    assert set(labels) == {"cat", "sky"}  # grass keeps 70 < 75 free pixels: dropped
    assert labels["sky"]["isthing"] is False and labels["sky"]["score"] is None and labels["sky"]["area"] == 80
    _check_invariants(panoptic)
    with_grass = fuse_panoptic(masks, [1], [0.9], NAMES, stuff_map=stuff, stuff_area_min=70)
    assert sorted(segment["area"] for segment in with_grass["segments"]) == [50, 70, 80]
    _check_invariants(with_grass)


def test_no_instances_gives_an_empty_map():
    panoptic = fuse_panoptic(np.zeros((0, 4, 6), dtype=bool), [], [], NAMES)
    assert panoptic["map"].shape == (4, 6) and not panoptic["map"].any() and panoptic["segments"] == []
    with pytest.raises(ValueError, match=r"masks must be shaped \[N, H, W\]"):
        fuse_panoptic(np.zeros((4, 6), dtype=bool), [], [], NAMES)


def test_semantic_highest_score_wins_each_pixel():
    low = _box_mask(0, 0, 10, 7)
    high = _box_mask(0, 3, 10, 10)
    semantic = semantic_from_instances(np.stack([high, low]), [2, 1], [0.95, 0.6], height=10, width=10)
    assert semantic.dtype == np.int32
    assert (semantic[:, :3] == 1).all() and (semantic[:, 3:] == 2).all()
    empty = semantic_from_instances(np.zeros((0, 3, 4), dtype=bool), [], [], height=3, width=4)
    assert empty.shape == (3, 4) and not empty.any()
