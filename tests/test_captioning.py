"""The captioner of each family against transformers called directly (parity), its options and its errors.

The direct calls are the ones each model card documents: BLIP's processor and ``generate``; ViT-GPT2's
``ViTImageProcessor`` + ``AutoTokenizer`` and ``tokenizer.batch_decode(...)`` stripped (nlpconnect's card); GIT's
``generate(pixel_values=...)`` and, for a prompt, ``input_ids = [cls] + prompt ids`` (transformers' GIT example).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import draw_shapes
from transformers import (
    AutoImageProcessor,
    AutoProcessor,
    AutoTokenizer,
    BlipForConditionalGeneration,
    GitForCausalLM,
    VisionEncoderDecoderModel,
)

from pipeline import CaptionPipeline, load_captioner
from pipeline.captioning import ImageTextProcessor, caption_sentence

FAMILY_DIRS = {"blip": "tiny_blip_dir", "vision-encoder-decoder": "tiny_vit_gpt2_dir", "git": "tiny_git_dir"}


class Direct:
    """One family's model and processing called the way its model card does, never through our pipeline."""

    def __init__(self, family: str, directory: str):
        self.family = family
        if family == "blip":
            self.model = BlipForConditionalGeneration.from_pretrained(directory).eval()
            self.processor = AutoProcessor.from_pretrained(directory)
        elif family == "git":
            self.model = GitForCausalLM.from_pretrained(directory).eval()
            self.processor = AutoProcessor.from_pretrained(directory)
        else:
            self.model = VisionEncoderDecoderModel.from_pretrained(directory).eval()
            self.image_processor = AutoImageProcessor.from_pretrained(directory)
            self.tokenizer = AutoTokenizer.from_pretrained(directory)

    @torch.inference_mode()
    def caption(self, image, prompt: str | None = None, **generate_kwargs) -> str:
        if self.family == "blip":
            inputs = self.processor(images=image, text=prompt, return_tensors="pt")
            return self.processor.decode(self.model.generate(**inputs, **generate_kwargs)[0], skip_special_tokens=True)
        if self.family == "git":
            pixel_values = self.processor(images=image, return_tensors="pt").pixel_values
            if prompt:
                input_ids = self.processor(text=prompt, add_special_tokens=False).input_ids
                generate_kwargs["input_ids"] = torch.tensor([[self.processor.tokenizer.cls_token_id, *input_ids]])
            ids = self.model.generate(pixel_values=pixel_values, **generate_kwargs)
            return self.processor.batch_decode(ids, skip_special_tokens=True)[0]
        pixel_values = self.image_processor(images=image, return_tensors="pt").pixel_values
        ids = self.model.generate(pixel_values=pixel_values, **generate_kwargs)
        return self.tokenizer.batch_decode(ids, skip_special_tokens=True)[0].strip()


@pytest.fixture(scope="module", params=list(FAMILY_DIRS))
def family(request) -> tuple[str, str]:
    return request.param, request.getfixturevalue(FAMILY_DIRS[request.param])


@pytest.fixture(scope="module")
def captioner(family) -> CaptionPipeline:
    return load_captioner(family[1], device="cpu")


@pytest.fixture(scope="module")
def direct(family) -> Direct:
    return Direct(*family)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_parity_with_generate(family, captioner, direct, num_beams):
    assert captioner.family == family[0]
    for seed in range(3):
        image = draw_shapes(seed=seed)
        expected = direct.caption(image, max_new_tokens=12, num_beams=num_beams)
        assert expected  # the tiny model must say something for this check to mean anything
        assert captioner(image, max_new_tokens=12, num_beams=num_beams, sentence=False)["caption"] == expected
        assert captioner(image, max_new_tokens=12, num_beams=num_beams)["caption"] == caption_sentence(expected)


def test_prompt_parity_or_refusal(family, captioner, direct):
    image = draw_shapes(seed=4)
    if family[0] == "vision-encoder-decoder":
        assert not captioner.accepts_prompt
        refused = r"prompt 'a picture of': the vision-encoder-decoder captioner .* takes no prompt"
        with pytest.raises(ValueError, match=refused):
            captioner(image, prompt="a picture of")
        assert captioner(image, prompt="", max_new_tokens=4)["caption"]  # an empty prompt is no prompt
        return
    expected = direct.caption(image, prompt="a picture of", max_new_tokens=8)
    result = captioner(image, prompt="a picture of", max_new_tokens=8, sentence=False)["caption"]
    assert result == expected and result.startswith("a picture of")


def test_batch_equals_one_by_one(captioner):
    images = [draw_shapes(seed=seed) for seed in range(4)]
    one_by_one = [captioner(image, max_new_tokens=10)["caption"] for image in images]
    batched = CaptionPipeline(captioner.model, captioner.processor, device="cpu", batch_size=3)
    assert [result["caption"] for result in batched(images, max_new_tokens=10)] == one_by_one
    assert set(batched.last_timings_ms) == {"preprocess", "forward", "postprocess"}


def test_max_new_tokens_bounds_the_length(captioner):
    caption = captioner(draw_shapes(), max_new_tokens=3, sentence=False)["caption"]
    assert 1 <= len(captioner.tokenizer.tokenize(caption)) <= 3


def test_bad_options(captioner):
    with pytest.raises(ValueError, match="max_new_tokens must be an integer of at least 1, got 0"):
        captioner(draw_shapes(), max_new_tokens=0)
    with pytest.raises(ValueError, match="num_beams must be an integer of at least 1, got '3'"):
        captioner(draw_shapes(), num_beams="3")
    with pytest.raises(TypeError, match=r"unknown call options \['temperature'\]"):
        captioner(draw_shapes(), temperature=0.7)
    with pytest.raises(ValueError, match="prompt must be a text, got 3"):
        captioner(draw_shapes(), prompt=3)
    with pytest.raises(ValueError, match="not an image"):
        captioner(b"GIF89a but not really")


# -- the ViT-GPT2 layout ---------------------------------------------------------------------------------------


def test_auto_processor_alone_cannot_caption_a_vit_gpt2_directory(tiny_vit_gpt2_dir):
    # Why ImageTextProcessor exists: transformers' AutoProcessor returns the tokenizer of such a directory, which is
    # what made load_captioner fail with "You need to specify either text or text_target".
    processor = AutoProcessor.from_pretrained(tiny_vit_gpt2_dir)
    assert not hasattr(processor, "image_processor")
    with pytest.raises(ValueError, match="either `text` or `text_target`"):
        processor(images=draw_shapes(), return_tensors="pt")
    with pytest.raises(TypeError, match="needs a processor with an image_processor and a tokenizer"):
        CaptionPipeline(VisionEncoderDecoderModel.from_pretrained(tiny_vit_gpt2_dir), processor, device="cpu")


def test_nlpconnect_preprocessor_config_loads(tiny_vit_gpt2_dir, tmp_path):
    # nlpconnect/vit-gpt2-image-captioning ships a ViTFeatureExtractor-era preprocessor_config.json, not the one
    # save_pretrained writes today: the same directory with that file captions the same.
    legacy = tmp_path / "vit-gpt2-legacy"
    legacy.mkdir()
    for path in Path(tiny_vit_gpt2_dir).iterdir():
        (legacy / path.name).write_bytes(path.read_bytes())
    (legacy / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "do_normalize": True,
                "do_resize": True,
                "feature_extractor_type": "ViTFeatureExtractor",
                "image_mean": [0.5, 0.5, 0.5],
                "image_std": [0.5, 0.5, 0.5],
                "resample": 2,
                "size": 32,
            }
        )
    )
    image = draw_shapes(seed=1)
    ours = load_captioner(str(legacy), device="cpu")
    assert isinstance(ours.processor, ImageTextProcessor)
    assert (
        ours(image, max_new_tokens=8)["caption"]
        == load_captioner(tiny_vit_gpt2_dir, device="cpu")(image, max_new_tokens=8)["caption"]
    )
