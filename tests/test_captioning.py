"""The captioner against transformers called directly (parity), its options and its errors."""

from __future__ import annotations

import pytest
import torch
from helpers import draw_shapes
from transformers import AutoProcessor, BlipForConditionalGeneration

from pipeline import CaptionPipeline, load_captioner
from pipeline.captioning import caption_sentence


@pytest.fixture(scope="module")
def reference(tiny_blip_dir):
    model = BlipForConditionalGeneration.from_pretrained(tiny_blip_dir).eval()
    return model, AutoProcessor.from_pretrained(tiny_blip_dir)


@pytest.fixture(scope="module")
def captioner(tiny_blip_dir) -> CaptionPipeline:
    return load_captioner(tiny_blip_dir, device="cpu")


def _direct(reference, image, prompt=None, **generate_kwargs) -> str:
    model, processor = reference
    with torch.inference_mode():
        inputs = processor(images=image, text=prompt, return_tensors="pt")
        return processor.decode(model.generate(**inputs, **generate_kwargs)[0], skip_special_tokens=True)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_parity_with_generate(reference, captioner, num_beams):
    for seed in range(3):
        image = draw_shapes(seed=seed)
        expected = _direct(reference, image, max_new_tokens=12, num_beams=num_beams)
        assert expected  # the tiny model must say something for this check to mean anything
        assert captioner(image, max_new_tokens=12, num_beams=num_beams, sentence=False)["caption"] == expected
        assert captioner(image, max_new_tokens=12, num_beams=num_beams)["caption"] == caption_sentence(expected)


def test_conditional_prompt_parity(reference, captioner):
    image = draw_shapes(seed=4)
    expected = _direct(reference, image, prompt="a picture of", max_new_tokens=8)
    result = captioner(image, prompt="a picture of", max_new_tokens=8, sentence=False)["caption"]
    assert result == expected and result.startswith("a picture of")


def test_batch_equals_one_by_one(captioner):
    images = [draw_shapes(seed=seed) for seed in range(4)]
    one_by_one = [captioner(image, max_new_tokens=10)["caption"] for image in images]
    batched = CaptionPipeline(captioner.model, captioner.processor, device="cpu", batch_size=3)
    assert [result["caption"] for result in batched(images, max_new_tokens=10)] == one_by_one
    assert set(batched.last_timings_ms) == {"preprocess", "forward", "postprocess"}


def test_max_new_tokens_bounds_the_length(captioner, tiny_blip_dir):
    tokenizer = AutoProcessor.from_pretrained(tiny_blip_dir).tokenizer
    caption = captioner(draw_shapes(), max_new_tokens=3, sentence=False)["caption"]
    assert 1 <= len(tokenizer.tokenize(caption)) <= 3


def test_bad_options(captioner):
    with pytest.raises(ValueError, match="max_new_tokens must be a positive integer, got 0"):
        captioner(draw_shapes(), max_new_tokens=0)
    with pytest.raises(ValueError, match="num_beams must be a positive integer"):
        captioner(draw_shapes(), num_beams="3")
    with pytest.raises(TypeError, match=r"unknown call options \['temperature'\]"):
        captioner(draw_shapes(), temperature=0.7)
    with pytest.raises(ValueError, match="not an image"):
        captioner(b"GIF89a but not really")
