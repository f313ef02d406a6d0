"""Speed profiles: "full" is the plain models exactly, "fast" caps the segmenter and quantizes the captioner."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline import load_captioner, load_pipeline, load_segmenter
from pipeline.catalog import load_segmenter_checkpoint
from pipeline.speed import (
    PROFILES,
    SpeedProfile,
    apply_captioner_profile,
    get_profile,
    segmenter_settings,
    segmenter_view,
)


def test_get_profile_names_and_errors():
    assert get_profile(None) is PROFILES["full"] and get_profile("full").is_identity
    assert not get_profile("fast").is_identity
    custom = SpeedProfile("mine", "test", segmenter={"min_size": 200})
    assert get_profile(custom) is custom
    with pytest.raises(ValueError, match="profile must be one of"):
        get_profile("turbo")
    with pytest.raises(ValueError, match="segmenter settings must be among"):
        SpeedProfile("bad", "test", segmenter={"box_score_thresh": 1})
    with pytest.raises(ValueError, match="must be a positive integer"):
        SpeedProfile("bad", "test", segmenter={"min_size": 0})


def test_full_profile_equals_the_models_called_directly(tiny_blip_dir, tiny_segmenter_dir, shapes_image):
    """Parity: load_pipeline(profile="full") against BLIP generate and Mask R-CNN called directly, exact."""
    from transformers import BlipForConditionalGeneration, BlipProcessor

    pipe = load_pipeline(tiny_blip_dir, tiny_segmenter_dir, device="cpu", profile="full")
    result = pipe(shapes_image, max_new_tokens=6, generate_kwargs={"min_new_tokens": 6}, threshold=0.0)
    pipe.close()

    processor = BlipProcessor.from_pretrained(tiny_blip_dir)
    blip = BlipForConditionalGeneration.from_pretrained(tiny_blip_dir).eval()
    model, _ = load_segmenter_checkpoint(tiny_segmenter_dir)
    with torch.inference_mode():
        ids = blip.generate(**processor(images=shapes_image, return_tensors="pt"), max_new_tokens=6, min_new_tokens=6)
        raw = model.eval()([torch.from_numpy(np.array(shapes_image)).permute(2, 0, 1).float() / 255.0])[0]
    assert result["caption"] == processor.decode(ids[0], skip_special_tokens=True)
    order = torch.argsort(raw["scores"], descending=True, stable=True)
    assert len(result["instances"]) == len(order) > 0
    for index, instance in zip(order.tolist(), result["instances"], strict=True):
        assert instance["label_id"] == int(raw["labels"][index])
        assert instance["score"] == float(raw["scores"][index])
        assert instance["box"] == [float(v) for v in raw["boxes"][index]]
        assert np.array_equal(np.asarray(instance["mask"]) > 0, (raw["masks"][index, 0] > 0.5).numpy())


def test_fast_profile_caps_segmenter_settings_never_raises_them(tiny_segmenter_dir):
    full = load_segmenter(tiny_segmenter_dir, device="cpu")
    fast = load_segmenter(tiny_segmenter_dir, device="cpu", profile="fast")
    assert segmenter_settings(full.model) == {
        "min_size": 128,
        "max_size": 160,
        "rpn_pre_nms_top_n_test": 1000,
        "rpn_post_nms_top_n_test": 1000,
    }
    # the tiny checkpoint's 128/160 px are below the fast caps and stay; the proposal counts are capped
    assert segmenter_settings(fast.model) == {
        "min_size": 128,
        "max_size": 160,
        "rpn_pre_nms_top_n_test": 300,
        "rpn_post_nms_top_n_test": 100,
    }
    chosen = load_segmenter(
        tiny_segmenter_dir, device="cpu", profile="fast", model_kwargs={"rpn_post_nms_top_n_test": 500}
    )
    assert segmenter_settings(chosen.model)["rpn_post_nms_top_n_test"] == 500  # the caller's setting wins


def test_fast_profile_quantizes_the_captioner_on_cpu_only(tiny_blip_dir):
    from transformers import BlipForConditionalGeneration

    fast = load_captioner(tiny_blip_dir, device="cpu", profile="fast")
    kinds = {type(module).__module__ + "." + type(module).__name__ for module in fast.model.modules()}
    assert any("quantized" in kind and kind.endswith("Linear") for kind in kinds)
    assert not any(type(module) is torch.nn.Linear for module in fast.model.modules())
    plain = BlipForConditionalGeneration.from_pretrained(tiny_blip_dir)
    assert apply_captioner_profile(plain, "fast", device="cuda") is plain  # int8 dynamic kernels are CPU kernels
    assert apply_captioner_profile(plain, "full") is plain


def test_fast_profile_returns_the_output_contract(tiny_blip_dir, tiny_segmenter_dir, shapes_image):
    pipe = load_pipeline(tiny_blip_dir, tiny_segmenter_dir, device="cpu", profile="fast")
    result = pipe(shapes_image, max_new_tokens=5, threshold=0.0)
    pipe.close()
    assert isinstance(result["caption"], str)
    assert result["instances"], "random weights still return detections at threshold 0"
    scores = [instance["score"] for instance in result["instances"]]
    assert scores == sorted(scores, reverse=True)
    for instance in result["instances"]:
        assert set(instance) == {"label", "label_id", "score", "box", "mask", "area"}
        assert instance["mask"].mode == "L" and instance["mask"].size == shapes_image.size
    size = (shapes_image.height, shapes_image.width)
    assert result["semantic"]["map"].shape == result["panoptic"]["map"].shape == size
    assert result["semantic"]["map"].dtype == np.int32
    assert set(result["timings_ms"]) >= {"caption", "segment", "total"}


def test_segmenter_view_runs_the_live_settings_on_shared_weights(tiny_segmenter_dir, shapes_image):
    full = load_segmenter(tiny_segmenter_dir, device="cpu")
    before = segmenter_settings(full.model)
    live = segmenter_view(full, "live")
    assert segmenter_settings(full.model) == before  # the original keeps its settings
    assert segmenter_settings(live.model) == {**before, "rpn_pre_nms_top_n_test": 300, "rpn_post_nms_top_n_test": 100}
    assert live.model.backbone is full.model.backbone and live.model.roi_heads is full.model.roi_heads
    result = live(shapes_image, threshold=0.0)
    assert result["semantic"]["map"].shape == (shapes_image.height, shapes_image.width)
