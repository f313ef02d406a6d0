"""The segmenter against torchvision's Mask R-CNN called directly (parity), its views and its options."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import draw_shapes
from torchvision.models.detection import maskrcnn_resnet50_fpn
from torchvision.transforms.functional import to_tensor

from pipeline import SegmentationPipeline

CATEGORIES = ["__background__", "circle", "square", "triangle", "star"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(1)
    return maskrcnn_resnet50_fpn(
        weights=None,
        weights_backbone=None,
        num_classes=len(CATEGORIES),
        min_size=160,
        max_size=200,
        box_detections_per_img=20,  # the mask head costs per detection: keep the test quick
    ).eval()


@pytest.fixture(scope="module")
def segmenter(model) -> SegmentationPipeline:
    return SegmentationPipeline(model, CATEGORIES, device="cpu")


def test_parity_with_torchvision(model, segmenter):
    image = draw_shapes(120, 90, seed=2)
    with torch.inference_mode():
        expected = model([to_tensor(image)])[0]
    assert len(expected["scores"]) >= 3  # random weights still detect plenty at torchvision's 0.05 cut
    result = segmenter(image, threshold=0.0, mask_threshold=0.5)
    instances = result["instances"]
    assert len(instances) == len(expected["scores"])
    assert [obj["score"] for obj in instances] == expected["scores"].tolist()
    assert [obj["label_id"] for obj in instances] == expected["labels"].tolist()
    assert [obj["label"] for obj in instances] == [CATEGORIES[i] for i in expected["labels"].tolist()]
    assert [obj["box"] for obj in instances] == expected["boxes"].tolist()
    for obj, probabilities in zip(instances, expected["masks"][:, 0]):
        thresholded = (probabilities > 0.5).numpy()
        assert obj["mask"].mode == "L" and obj["mask"].size == image.size
        assert (np.asarray(obj["mask"]) == thresholded * 255).all()
        assert obj["area"] == int(thresholded.sum())


def test_threshold_and_order(segmenter):
    image = draw_shapes(120, 90, seed=2)
    everything = segmenter(image, threshold=0.0, subtask="instance")["instances"]
    cut = float(np.median([obj["score"] for obj in everything]))
    kept = segmenter(image, threshold=cut, subtask="instance")["instances"]
    assert kept and all(obj["score"] >= cut for obj in kept)
    assert len(kept) == sum(obj["score"] >= cut for obj in everything)
    scores = [obj["score"] for obj in everything]
    assert scores == sorted(scores, reverse=True)
    none = segmenter(image, threshold=1.0)
    assert none["instances"] == [] and not none["semantic"]["map"].any() and none["panoptic"]["segments"] == []


def test_views_follow_subtask(segmenter):
    image = draw_shapes(120, 90, seed=3)
    assert set(segmenter(image, subtask="instance")) == {"instances"}
    assert set(segmenter(image, subtask="semantic")) == {"instances", "semantic"}
    assert set(segmenter(image, subtask="panoptic")) == {"instances", "panoptic"}
    full = segmenter(image, threshold=0.0)
    assert set(full) == {"instances", "semantic", "panoptic"}
    semantic, panoptic = full["semantic"], full["panoptic"]
    assert semantic["map"].shape == (90, 120) and semantic["map"].dtype == np.int32
    assert set(semantic["labels"]) == set(np.unique(semantic["map"])) - {0}
    assert panoptic["map"].shape == (90, 120)
    for segment in panoptic["segments"]:
        assert segment["area"] == int((panoptic["map"] == segment["id"]).sum())


def test_batch_equals_one_by_one(model):
    images = [draw_shapes(120, 90, seed=seed) for seed in range(3)]
    single = SegmentationPipeline(model, CATEGORIES, device="cpu")
    batched = SegmentationPipeline(model, CATEGORIES, device="cpu", batch_size=3)
    for one, many in zip([single(image, threshold=0.3) for image in images], batched(images, threshold=0.3)):
        # Same-size images share one padded batch, so the detections match to float rounding.
        assert [obj["label_id"] for obj in one["instances"]] == [obj["label_id"] for obj in many["instances"]]
        assert np.allclose(
            [obj["score"] for obj in one["instances"]], [obj["score"] for obj in many["instances"]], atol=1e-4
        )


def test_bad_options(segmenter):
    image = draw_shapes()
    with pytest.raises(ValueError, match=r"subtask must be one of \('instance', 'semantic', 'panoptic'\)"):
        segmenter(image, subtask="stuff")
    with pytest.raises(ValueError, match="threshold must be a number between 0 and 1, got 1.5"):
        segmenter(image, threshold=1.5)
    with pytest.raises(TypeError, match="unknown call options"):
        segmenter(image, num_beams=2)
    with pytest.raises(ValueError, match="categories must name at least the background"):
        SegmentationPipeline(segmenter.model, [], device="cpu")
