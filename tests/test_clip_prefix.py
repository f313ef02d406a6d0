"""The clip-prefix captioner (ClipCap): its directory, greedy and beam search through GPT-2's generate, the catalog's
shapes-clip-prefix, training and resuming with train/caption.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import EXAMPLES

from pipeline import load_captioner
from pipeline.captioning import ImageTextProcessor, load_caption_model
from pipeline.catalog import get_spec
from pipeline.clip_prefix import build_clip_prefix
from train import caption, shapes

TINY = {
    "image_size": 32,
    "vision": {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
               "patch_size": 8},
    "decoder": {"n_embd": 16, "n_layer": 1, "n_head": 2, "n_positions": 32},
}  # fmt: skip


def _tiny(directory, seed=0):
    torch.manual_seed(seed)
    model, image_processor, tokenizer = build_clip_prefix(shapes.vocabulary(), prefix_length=3, **TINY)
    with (
        torch.no_grad()
    ):  # a random GPT-2 says a few words before it stops, not nothing (see helpers.save_tiny_vit_gpt2)
        model.decoder.get_input_embeddings().weight[tokenizer.eos_token_id] = 0.0
    model.save_pretrained(directory)
    ImageTextProcessor(image_processor, tokenizer).save_pretrained(directory)
    return model.eval()


def test_save_and_load_give_the_same_captions(tmp_path, shapes_image):
    model = _tiny(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "clip-prefix"
    loaded, processor = load_caption_model(tmp_path)
    assert torch.equal(loaded.decoder.lm_head.weight, loaded.decoder.get_input_embeddings().weight)  # still tied
    pixels = processor(images=[shapes_image], return_tensors="pt")["pixel_values"]
    for beams in (1, 3):
        expected = model.generate(pixels, max_new_tokens=6, num_beams=beams)
        assert torch.equal(loaded.generate(pixels, max_new_tokens=6, num_beams=beams), expected)
    captioner = load_captioner(str(tmp_path), device="cpu")
    assert captioner.family == "clip-prefix" and not captioner.accepts_prompt
    text = captioner(shapes_image, max_new_tokens=6, sentence=False)["caption"]
    assert text == processor.decode(model.generate(pixels, max_new_tokens=6)[0], skip_special_tokens=True).strip()
    with pytest.raises(ValueError, match="takes no prompt"):
        captioner(shapes_image, prompt="a picture of")


def test_a_beam_as_wide_as_the_vocabulary_finds_the_best_two_tokens(tmp_path):
    model = _tiny(tmp_path, seed=1)
    pixels = torch.randn(1, 3, 32, 32)
    end = model.config.eos_token_id
    with torch.no_grad():
        prefix = model.prefix(pixels)
        vocab = model.decoder.config.vocab_size
        first = model.decoder(inputs_embeds=prefix).logits[0, -1].log_softmax(-1)
        words = model.decoder.get_input_embeddings()(torch.arange(vocab))[:, None]
        second = model.decoder(inputs_embeds=torch.cat([prefix.expand(vocab, -1, -1), words], 1)).logits[:, -1]
        totals = first[:, None] + second.log_softmax(-1)
        totals[end, :] = totals[:, end] = float("-inf")  # min_new_tokens=2: no end token among the two
        best = divmod(int(totals.argmax()), vocab)
        options = {"max_new_tokens": 2, "min_new_tokens": 2, "length_penalty": 0.0}
        beam = model.generate(pixels, num_beams=vocab, **options)
        greedy = model.generate(pixels, num_beams=1, **options)
    assert tuple(beam[0].tolist()) == best
    assert totals[tuple(greedy[0].tolist())] <= totals[best]
    assert int(greedy[0, 0]) == int(first.masked_fill(torch.arange(vocab) == end, float("-inf")).argmax())


def test_the_catalogs_shapes_clip_prefix_captions_the_example_with_beam_search():
    captioner = load_captioner("shapes-clip-prefix", device="cpu")
    assert captioner.family == "clip-prefix"
    for beams in (1, 3):
        text = captioner(str(EXAMPLES / "shapes.png"), num_beams=beams)["caption"]
        words = set(text.lower().rstrip(".").split())
        assert words and words <= set(shapes.vocabulary())
    fast = load_captioner("shapes-clip-prefix", device="cpu", profile="fast")  # int8; bfloat16 CLIP where native
    assert set(fast(str(EXAMPLES / "shapes.png"))["caption"].lower().rstrip(".").split()) <= set(shapes.vocabulary())
    folder = Path(get_spec("shapes-clip-prefix", "captioner").source)
    metrics = json.loads((folder / "heldout_metrics.json").read_text())
    assert metrics["images"] == 300 and metrics["CIDEr"] > 0.5


def _train(shapes_data, output_dir, *extra):
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)  # each run builds its own Accelerator
    GradientState._reset_state()
    return caption.main(
        [
            "--architecture", "clip-prefix", "--min_word_count", "1", "--prefix_length", "3",
            "--clip_prefix_config", json.dumps(TINY), "--train_dir", str(shapes_data / "train"),
            "--output_dir", str(output_dir), "--per_device_batch_size", "8", "--learning_rate", "3e-3",
            "--warmup_steps", "2", "--logging_steps", "1", "--torch_threads", "1", "--max_new_tokens", "8", *extra,
        ]
    )  # fmt: skip


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_training_evaluates_and_resumes(shapes_data, tmp_path, shapes_image):
    straight = tmp_path / "straight"
    scored = ["--val_dir", str(shapes_data / "val"), "--max_val_images", "2", "--no_meteor"]
    metrics = _train(shapes_data, straight, "--max_train_steps", "6", "--checkpointing_steps", "3", *scored)
    assert {"BLEU-4", "ROUGE-L", "CIDEr"} <= set(metrics)
    resumed = tmp_path / "resumed"
    shutil.copytree(straight / "checkpoints" / "step_3", resumed / "checkpoints" / "step_3")
    _train(shapes_data, resumed, "--max_train_steps", "6", "--resume_from_checkpoint", "latest")
    before = json.loads((straight / "history.json").read_text())["steps"]
    after = json.loads((resumed / "history.json").read_text())["steps"]
    assert [row["step"] for row in after] == list(range(1, 7))
    for one, other in zip(before[3:], after[3:]):  # the same batches, weights (GPT-2's tied ones too), optimizer
        assert one["loss"] == pytest.approx(other["loss"], rel=1e-4)
    assert before[-1]["loss"] < before[0]["loss"]
    first, second = (load_captioner(str(path), device="cpu") for path in (straight, resumed))
    assert first(shapes_image, num_beams=2)["caption"] == second(shapes_image, num_beams=2)["caption"]


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_pretrained_halves_offline_stop_with_a_message(shapes_data, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SystemExit, match="openai/clip-vit-base-patch32"):
        caption.main(["--architecture", "clip-prefix", "--train_dir", str(shapes_data / "train"),
                      "--output_dir", str(tmp_path / "run")])  # fmt: skip
