"""The segmenter against torchvision's Mask R-CNN called directly (parity), its views and its options."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import draw_shapes
from PIL import Image
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


def test_the_mask_head_runs_only_on_what_the_threshold_keeps_with_the_same_instances(model, segmenter):
    image = draw_shapes(120, 90, seed=2)
    boxes_masked = []
    hook = model.roi_heads.mask_head.register_forward_hook(lambda _m, args, _o: boxes_masked.append(len(args[0])))
    try:
        everything = segmenter(image, threshold=0.0, subtask="instance", mask_format="rle")["instances"]
        cut = everything[len(everything) // 2]["score"]  # a score itself: the one equal to the threshold stays
        kept = segmenter(image, threshold=cut, subtask="instance", mask_format="rle")["instances"]
    finally:
        hook.remove()
    assert boxes_masked == [len(everything), len(kept)] and len(kept) < len(everything)
    expected = [obj for obj in everything if obj["score"] >= cut]
    assert [(o["label"], o["score"], o["box"], o["mask"]) for o in kept] == [
        (o["label"], o["score"], o["box"], o["mask"]) for o in expected
    ]
    assert model.roi_heads.score_thresh == 0.05  # the model's own setting is left as it was


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
    with pytest.raises(ValueError, match=r"subtask must be one of 'all', 'instance', .* got 'stuff'"):
        segmenter(image, subtask="stuff")
    with pytest.raises(ValueError, match="threshold must be a number from 0 to 1, got 1.5"):
        segmenter(image, threshold=1.5)
    with pytest.raises(TypeError, match="unknown call options"):
        segmenter(image, num_beams=2)
    with pytest.raises(ValueError, match="categories must name at least the background"):
        SegmentationPipeline(segmenter.model, [], device="cpu")


def test_rle_masks_are_the_pil_masks_encoded_and_the_views_are_the_same(segmenter):
    from pipeline.jsonform import encode_mask

    image = draw_shapes(120, 90, seed=2)
    as_pil = segmenter(image, threshold=0.0)
    as_rle = segmenter(image, threshold=0.0, mask_format="rle")
    assert [obj["mask"] for obj in as_rle["instances"]] == [encode_mask(obj["mask"]) for obj in as_pil["instances"]]
    assert [obj["area"] for obj in as_rle["instances"]] == [obj["area"] for obj in as_pil["instances"]]
    assert np.array_equal(as_rle["semantic"]["map"], as_pil["semantic"]["map"])
    assert as_rle["panoptic"]["segments"] == as_pil["panoptic"]["segments"]
    with pytest.raises(ValueError, match=r"mask_format must be one of 'pil', 'rle', got 'png'"):
        segmenter(image, mask_format="png")


@pytest.mark.parametrize("size", [(12, 2000), (2000, 12), (3, 500), (1, 1), (2, 2)])
def test_thin_and_tiny_pictures_give_a_result(segmenter, size):
    # torchvision fails inside its resize ("Input and output sizes should be greater than 0") when the shorter
    # side shrinks below a pixel; the pipeline pads such pictures on the bottom and right.
    width, height = size
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8))
    result = segmenter(image, threshold=0.0)
    assert result["semantic"]["map"].shape == (height, width) == result["panoptic"]["map"].shape
    for obj in result["instances"]:
        x0, y0, x1, y1 = obj["box"]
        assert 0 <= x0 <= x1 <= width and 0 <= y0 <= y1 <= height
        assert obj["mask"].size == (width, height)


def test_large_pictures_are_scaled_channel_by_channel_to_the_same_result(model, monkeypatch):
    # Above LEAN_ABOVE_PIXELS the picture is resized before normalising, one channel at a time: torchvision's own
    # arithmetic in another order, so the same detections within float rounding.
    from pipeline import segmentation

    image = draw_shapes(120, 90, seed=2)
    plain = SegmentationPipeline(model, CATEGORIES, device="cpu")(image, threshold=0.0)["instances"]
    monkeypatch.setattr(segmentation, "LEAN_ABOVE_PIXELS", 0)
    lean = SegmentationPipeline(model, CATEGORIES, device="cpu")(image, threshold=0.0)["instances"]
    assert len(lean) == len(plain) >= 3
    assert [obj["label_id"] for obj in lean] == [obj["label_id"] for obj in plain]
    assert np.allclose([obj["score"] for obj in lean], [obj["score"] for obj in plain], atol=1e-4)
    assert np.allclose([obj["box"] for obj in lean], [obj["box"] for obj in plain], atol=0.05)
    for ours, theirs in zip(lean, plain):
        a, b = np.asarray(ours["mask"]) > 0, np.asarray(theirs["mask"]) > 0
        assert np.count_nonzero(a ^ b) <= 0.01 * max(1, np.count_nonzero(a | b))
