"""Speed profiles: "full" is the plain models (within float tolerance), "fast" caps, quantizes and uses bfloat16."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from pipeline import load_captioner, load_pipeline, load_segmenter
from pipeline.captioning import caption_sentence
from pipeline.checkpoints import load_segmenter_checkpoint
from pipeline.kernels import BFloat16Stage, ParallelRoIPool, bfloat16_enabled, fuse_blip_attention, native_bfloat16
from pipeline.speed import (
    BFLOAT16_STAGES,
    PROFILES,
    SpeedProfile,
    apply_captioner_profile,
    get_profile,
    live_profile,
    segmenter_precision,
    segmenter_settings,
    segmenter_view,
)
from train.shapes import draw_sample


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
    """Parity: load_pipeline(profile="full") against BLIP generate and Mask R-CNN called directly.

    The caption is the same string (the pipeline's BLIP runs its vision attention fused, the plain one the eager way);
    the instances are the same within float tolerance (on CPU the full profile stores the segmenter's convolution
    weights channels-last: the same arithmetic, summed in another order)."""
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
    assert result["caption"] == caption_sentence(processor.decode(ids[0], skip_special_tokens=True))
    order = torch.argsort(raw["scores"], descending=True, stable=True)
    assert len(result["instances"]) == len(order) > 0
    for index, instance in zip(order.tolist(), result["instances"], strict=True):
        assert instance["label_id"] == int(raw["labels"][index])
        assert instance["score"] == pytest.approx(float(raw["scores"][index]), rel=1e-5, abs=1e-6)
        assert instance["box"] == pytest.approx([float(v) for v in raw["boxes"][index]], abs=1e-3)
        ours, theirs = np.asarray(instance["mask"]) > 0, (raw["masks"][index, 0] > 0.5).numpy()
        assert np.count_nonzero(ours != theirs) <= max(2, theirs.sum() // 1000)  # a pixel on a 0.5 tie at most


def test_blip_vision_attention_runs_fused_with_the_same_outputs(tiny_blip_dir, tiny_blip_vqa_dir, tiny_git_dir):
    """Every BLIP loaded through the catalog (captioner and answerer, any profile) runs its vision attention through
    the fused kernel: the same weights under the same names, the same encoder output within float rounding, and
    training (dropout) still works; other families are left as they are."""
    from transformers import BlipForConditionalGeneration
    from transformers.models.blip.modeling_blip import BlipAttention

    from pipeline import load_answerer

    for pipe in (load_captioner(tiny_blip_dir, device="cpu"), load_answerer(tiny_blip_vqa_dir, device="cpu")):
        layers = [m for m in pipe.model.vision_model.modules() if isinstance(m, BlipAttention)]
        assert layers and all(type(m).__name__ == "FusedBlipAttention" for m in layers)
        assert fuse_blip_attention(pipe.model) == 0  # already fused
    plain = BlipForConditionalGeneration.from_pretrained(tiny_blip_dir).eval()
    fused = BlipForConditionalGeneration.from_pretrained(tiny_blip_dir).eval()
    assert fuse_blip_attention(fused) == plain.config.vision_config.num_hidden_layers
    assert list(fused.state_dict()) == list(plain.state_dict())
    pixels = torch.randn(2, 3, plain.config.vision_config.image_size, plain.config.vision_config.image_size)
    with torch.inference_mode():
        want = plain.vision_model(pixel_values=pixels).last_hidden_state
        got = fused.vision_model(pixel_values=pixels).last_hidden_state
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)
    again = pickle.loads(pickle.dumps(fused))  # torch.save(model) pickles it: the class must be importable
    with torch.inference_mode():
        assert torch.equal(again.vision_model(pixel_values=pixels).last_hidden_state, got)
    fused.train()
    fused.vision_model(pixel_values=pixels).last_hidden_state.sum().backward()
    assert fused.vision_model.encoder.layers[0].self_attn.qkv.weight.grad is not None
    git = load_captioner(tiny_git_dir, device="cpu")
    assert fuse_blip_attention(git.model) == 0


def test_cpu_segmenters_store_convolutions_channels_last(tiny_segmenter_dir):
    segmenter = load_segmenter(tiny_segmenter_dir, device="cpu")  # "full"
    conv = next(module for module in segmenter.model.modules() if isinstance(module, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert segmenter_precision(segmenter.model) == "float32"


@pytest.mark.parametrize("setting", ["1", "0"])
def test_bfloat16_stages_follow_the_profile_and_pipeline_bfloat16(tiny_segmenter_dir, monkeypatch, setting):
    monkeypatch.setenv("PIPELINE_BFLOAT16", setting)
    full = load_segmenter(tiny_segmenter_dir, device="cpu")
    fast = load_segmenter(tiny_segmenter_dir, device="cpu", profile="fast")
    assert segmenter_precision(full.model) == "float32"
    assert segmenter_precision(fast.model) == ("bfloat16" if setting == "1" else "float32")
    wrapped = [path for path in BFLOAT16_STAGES if isinstance(fast.model.get_submodule(path), BFloat16Stage)]
    assert wrapped == (list(BFLOAT16_STAGES) if setting == "1" else [])
    assert fast.model.backbone.out_channels == full.model.backbone.out_channels  # attributes reach the stage


def test_bfloat16_segmenter_finds_what_float32_finds(monkeypatch):
    """The trained shapes segmenter on a shapes picture: the bfloat16 stages change boxes by pixels, not objects."""
    image = next(
        sample.image for seed in range(100) if len((sample := draw_sample(np.random.default_rng(seed))).objects) >= 3
    )
    monkeypatch.setenv("PIPELINE_BFLOAT16", "0")
    plain = load_segmenter("shapes", device="cpu", profile="fast")(image, threshold=0.5)["instances"]
    monkeypatch.setenv("PIPELINE_BFLOAT16", "1")
    bf16 = load_segmenter("shapes", device="cpu", profile="fast")(image, threshold=0.5)["instances"]
    assert len(plain) >= 3 and [i["label"] for i in bf16] == [i["label"] for i in plain]
    for ours, theirs in zip(bf16, plain, strict=True):
        assert isinstance(ours["score"], float) and abs(ours["score"] - theirs["score"]) < 0.05
        assert np.abs(np.subtract(ours["box"], theirs["box"])).max() < 3.0
        a, b = np.asarray(ours["mask"]) > 0, np.asarray(theirs["mask"]) > 0
        assert np.count_nonzero(a & b) / np.count_nonzero(a | b) > 0.9


def test_pipeline_bfloat16_rejects_unknown_values(monkeypatch):
    monkeypatch.setenv("PIPELINE_BFLOAT16", "maybe")
    with pytest.raises(ValueError, match="PIPELINE_BFLOAT16 must be one of"):
        bfloat16_enabled("cpu")
    monkeypatch.setenv("PIPELINE_BFLOAT16", "1")
    assert bfloat16_enabled("cpu") and not bfloat16_enabled("cuda")
    monkeypatch.setenv("PIPELINE_BFLOAT16", "auto")
    assert bfloat16_enabled("cpu") == native_bfloat16()


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


def test_fast_profile_quantizes_the_captioner_on_cpu_only(tiny_blip_dir, monkeypatch):
    from transformers import BlipForConditionalGeneration

    monkeypatch.setenv("PIPELINE_BFLOAT16", "0")
    fast = load_captioner(tiny_blip_dir, device="cpu", profile="fast")
    kinds = {type(module).__module__ + "." + type(module).__name__ for module in fast.model.modules()}
    assert any("quantized" in kind and kind.endswith("Linear") for kind in kinds)
    assert not any(type(module) is torch.nn.Linear for module in fast.model.modules())
    plain = BlipForConditionalGeneration.from_pretrained(tiny_blip_dir)
    assert apply_captioner_profile(plain, "fast", device="cuda") is plain  # int8 dynamic kernels are CPU kernels
    assert apply_captioner_profile(plain, "full") is plain


def test_fast_profile_runs_the_vision_encoder_in_bfloat16_where_enabled(tiny_blip_dir, shapes_image, monkeypatch):
    monkeypatch.setenv("PIPELINE_BFLOAT16", "1")
    fast = load_captioner(tiny_blip_dir, device="cpu", profile="fast")
    assert isinstance(fast.model.vision_model, BFloat16Stage)
    assert {p.dtype for p in fast.model.vision_model.parameters()} == {torch.bfloat16}
    decoder = {type(module).__module__ for module in fast.model.text_decoder.modules()}
    assert any("quantized" in kind for kind in decoder)  # the text decoder stays int8
    assert not any(type(module) is torch.nn.Linear for module in fast.model.text_decoder.modules())
    caption = fast(shapes_image, max_new_tokens=6, generate_kwargs={"min_new_tokens": 6})["caption"]
    assert isinstance(caption, str) and len(caption.split()) >= 3  # six word pieces made it through float32 decoding


@pytest.mark.parametrize("setting", ["1", "0"])
@pytest.mark.parametrize(
    "directory, encoder", [("tiny_vit_gpt2_dir", "encoder"), ("tiny_git_dir", "git.image_encoder")]
)
def test_fast_profile_of_the_other_families(request, directory, encoder, setting, shapes_image, monkeypatch):
    # ViT-GPT2: the ViT encoder in bfloat16, GPT-2's Conv1D layers int8 as Linear; GIT: its CLIP image encoder in
    # bfloat16, the projection and text decoder int8.
    from transformers.pytorch_utils import Conv1D

    monkeypatch.setenv("PIPELINE_BFLOAT16", setting)
    fast = load_captioner(request.getfixturevalue(directory), device="cpu", profile="fast")
    vision = fast.model.get_submodule(encoder)
    assert isinstance(vision, BFloat16Stage) == (setting == "1")
    if setting == "1":
        assert {p.dtype for p in vision.parameters()} == {torch.bfloat16}
        assert any(type(module) is torch.nn.Linear for module in vision.modules())  # bfloat16, not int8
    outside = [m for name, m in fast.model.named_modules() if setting == "0" or not name.startswith(encoder)]
    assert not any(type(module) is torch.nn.Linear or isinstance(module, Conv1D) for module in outside)
    assert any("quantized" in type(module).__module__ for module in outside)
    caption = fast(shapes_image, max_new_tokens=6, generate_kwargs={"min_new_tokens": 6})["caption"]
    assert isinstance(caption, str) and caption


def test_gpt2_conv1d_layers_become_linear_layers_of_the_same_weights(tiny_vit_gpt2_dir):
    from transformers import VisionEncoderDecoderModel

    from pipeline.speed import _conv1d_as_linear

    model = VisionEncoderDecoderModel.from_pretrained(tiny_vit_gpt2_dir).eval()
    pixels, ids = torch.rand(1, 3, 32, 32), torch.tensor([[0, 5, 9, 12]])
    with torch.inference_mode():
        before = model(pixel_values=pixels, decoder_input_ids=ids).logits
        _conv1d_as_linear(model)
        after = model(pixel_values=pixels, decoder_input_ids=ids).logits
    assert isinstance(model.decoder.transformer.h[0].attn.c_attn, torch.nn.Linear)
    assert torch.allclose(before, after, atol=1e-5)


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
    assert live.model.backbone is not full.model.backbone or segmenter_precision(live.model) == "float32"
    assert segmenter_precision(full.model) == "float32"  # bfloat16 stages, where used, are the view's own
    ours = {tensor.data_ptr() for tensor in live.model.state_dict().values()}
    assert ours == {tensor.data_ptr() for tensor in full.model.state_dict().values()}  # the same weights
    result = live(shapes_image, threshold=0.0)
    assert result["semantic"]["map"].shape == (shapes_image.height, shapes_image.width)


def test_parallel_roi_pool_returns_exactly_torchvisions_numbers():
    from collections import OrderedDict

    from torchvision.ops import MultiScaleRoIAlign

    generator = torch.Generator().manual_seed(0)
    features = OrderedDict(
        (name, torch.randn(2, 8, 64 // stride, 96 // stride, generator=generator))
        for name, stride in zip("0123", (1, 2, 4, 8), strict=True)
    )
    channels_last = OrderedDict((k, v.contiguous(memory_format=torch.channels_last)) for k, v in features.items())

    def boxes(count: int) -> torch.Tensor:
        corner = torch.rand(count, 2, generator=generator) * torch.tensor([300.0, 200.0])
        return torch.cat([corner, corner + 4 + torch.rand(count, 2, generator=generator) * 200], dim=1)

    pool = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    ours = ParallelRoIPool(pool, min_boxes=8)
    per_image = [boxes(45), boxes(30)]  # uneven, so chunk boundaries differ per image
    expected = pool(features, per_image, [(256, 384), (256, 384)])
    assert torch.equal(ours(channels_last, per_image, [(256, 384), (256, 384)]), expected)
    assert torch.equal(ours(features, [per_image[0][:3], per_image[1]], [(256, 384)] * 2)[:3], expected[:3])


def test_cpu_segmenters_pool_regions_in_parallel(tiny_segmenter_dir):
    model = load_segmenter(tiny_segmenter_dir, device="cpu").model
    assert isinstance(model.roi_heads.box_roi_pool, ParallelRoIPool)
    assert isinstance(model.roi_heads.mask_roi_pool, ParallelRoIPool)
    assert not isinstance(model.roi_heads.box_roi_pool.inner, ParallelRoIPool)
    view = segmenter_view(load_segmenter(tiny_segmenter_dir, device="cpu"), "live").model
    assert not isinstance(view.roi_heads.box_roi_pool.inner, ParallelRoIPool)  # never wrapped twice


@pytest.mark.parametrize(("choice", "expected"), [("0", "live-small"), ("1", "live")])
def test_the_live_view_runs_smaller_key_frames_where_bfloat16_is_off(monkeypatch, choice, expected):
    monkeypatch.setenv("PIPELINE_BFLOAT16", choice)
    assert live_profile("cpu") == expected
    assert live_profile("cuda") == "live"
    small, live = get_profile("live-small").segmenter, get_profile("live").segmenter
    assert small["min_size"] < live["min_size"] and small["rpn_post_nms_top_n_test"] < live["rpn_post_nms_top_n_test"]
