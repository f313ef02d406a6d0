"""The attention-lstm captioner: its vocabulary, greedy and beam search, its directory, the catalog's shapes-lstm,
training and resuming with train/caption.py, and /compare through a served app."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import EXAMPLES

from pipeline import load_captioner
from pipeline.attention_lstm import AttentionLSTMCaptioner, AttentionLSTMConfig, build_attention_lstm
from pipeline.captioning import ImageTextProcessor, load_caption_model
from pipeline.catalog import get_spec
from pipeline.decoding import beam_search
from pipeline.word_vocabulary import WordVocabulary
from train import caption, shapes

SMALL = {"encoder": "small", "hidden_size": 32, "embed_size": 16, "attention_size": 16, "dropout": 0.0}


def _tiny(directory, attention=True, seed=0):
    torch.manual_seed(seed)
    vocabulary = WordVocabulary(shapes.vocabulary())
    model, image_processor = build_attention_lstm(vocabulary, image_size=64, attention=attention, **SMALL)
    model.save_pretrained(directory)
    ImageTextProcessor(image_processor, vocabulary).save_pretrained(directory)
    return model.eval(), vocabulary


def test_the_vocabulary_keeps_words_seen_min_count_times(tmp_path):
    captions = ["A man's T-shirt.", "a man's hat", "a dog", "a dog", "A café"]
    vocabulary = WordVocabulary.build(captions, min_count=2)
    assert vocabulary.words == ["<pad>", "<start>", "<end>", "<unk>", "a", "dog", "man's"]
    assert vocabulary("a man's café")["input_ids"] == [1, 4, 6, 3, 2]
    assert vocabulary.decode([4, 6, 3, 5, 2, 5]) == "a man's dog"  # <unk> left out, stops at <end>
    vocabulary.save_pretrained(tmp_path)
    assert WordVocabulary.from_pretrained(tmp_path).words == vocabulary.words
    with pytest.raises(ValueError, match="no word occurs 9 times"):
        WordVocabulary.build(captions, min_count=9)
    with pytest.raises(ValueError, match="min_count must be at least 1"):
        WordVocabulary.build(captions, min_count=0)


@pytest.mark.parametrize("attention", [True, False])
def test_save_and_load_give_the_same_captions(tmp_path, attention, shapes_image):
    model, _ = _tiny(tmp_path, attention=attention)
    assert {p.name for p in tmp_path.iterdir()} == {
        "config.json", "model.safetensors", "preprocessor_config.json", "vocabulary.json"
    }  # fmt: skip
    assert json.loads((tmp_path / "config.json").read_text())["attention"] is attention
    loaded, processor = load_caption_model(tmp_path)
    pixels = processor(images=[shapes_image], return_tensors="pt")["pixel_values"]
    for beams in (1, 3):
        expected = model.generate(pixels, max_new_tokens=6, num_beams=beams)
        assert torch.equal(loaded.generate(pixels, max_new_tokens=6, num_beams=beams), expected)
    captioner = load_captioner(str(tmp_path), device="cpu")
    assert captioner.family == "attention-lstm" and not captioner.accepts_prompt
    text = captioner(shapes_image, max_new_tokens=6, sentence=False)["caption"]
    assert text == processor.decode(model.generate(pixels, max_new_tokens=6)[0]) and len(text.split()) <= 6
    with pytest.raises(ValueError, match="takes no prompt"):
        captioner(shapes_image, prompt="a picture of")
    with pytest.raises(TypeError, match=r"takes no \['top_k'\]"):
        model.generate(pixels, top_k=3)


def test_greedy_search_is_the_same_alone_and_in_a_batch(tmp_path):
    model, _ = _tiny(tmp_path)
    pixels = torch.randn(3, 3, 64, 64)
    together = model.generate(pixels, max_new_tokens=8)
    for row in range(3):
        alone = model.generate(pixels[row : row + 1], max_new_tokens=8)[0]
        assert together[row, : len(alone)].tolist() == alone.tolist()


def _log_probability(model, memory, state, ids):
    tokens = torch.tensor([model.config.bos_token_id])
    total = 0.0
    for word in ids:
        logits, state, _ = model.decoder.step(tokens, memory, state)
        logits[:, [model.config.bos_token_id, model.config.pad_token_id]] = float("-inf")
        total += float(logits.log_softmax(-1)[0, word])
        tokens = torch.tensor([word])
    return total


def test_a_wide_beam_finds_the_best_caption_of_exhaustive_search():
    torch.manual_seed(3)
    config = AttentionLSTMConfig(vocab_size=7, **SMALL)  # 5 words to choose: <end> and 4 others
    model = AttentionLSTMCaptioner(config).eval()
    with torch.no_grad():
        model.decoder.output.weight.mul_(20)  # sharper, more varied distributions than at initialisation
        memory, state = model.decoder.start(model.encoder(torch.randn(1, 3, 64, 64)))
        candidates = []  # every caption of at most 3 words: ended by <end>, or cut at 3
        for length in (1, 2, 3):
            for words in itertools.product([3, 4, 5, 6], repeat=length - 1):
                candidates.append([*words, config.eos_token_id])
        candidates += [list(words) for words in itertools.product([3, 4, 5, 6], repeat=3)]
        scored = [(_log_probability(model, memory, state, ids) / len(ids), ids) for ids in candidates]
        best = max(scored)[1]
        # 64 beams keep all 16 open 2-word prefixes, and their top 128 of 16 x 5 next words are all of them: exact.
        found = beam_search(memory, state, step=model.decoder.step, config=config, max_new_tokens=3, num_beams=64)
    assert found == best
    assert len({tuple(ids) for _, ids in scored}) == len(candidates) == 1 + 4 + 16 + 64


def test_the_catalogs_shapes_lstm_captions_the_example_with_beam_search():
    captioner = load_captioner("shapes-lstm", device="cpu")
    assert captioner.name == "shapes-lstm" and captioner.family == "attention-lstm"
    greedy = captioner(str(EXAMPLES / "shapes.png"))["caption"]
    beam = captioner(str(EXAMPLES / "shapes.png"), num_beams=3)["caption"]
    for text in (greedy, beam):
        words = set(text.lower().rstrip(".").split())
        # Its colours are right (a yellow triangle, a blue circle, a red triangle); two of its shape kinds are not.
        assert words <= set(shapes.vocabulary()) and {"yellow", "blue", "red", "circle"} <= words
    fast = load_captioner("shapes-lstm", device="cpu", profile="fast")  # int8 Linear layers of the decoder
    assert set(fast(str(EXAMPLES / "shapes.png"))["caption"].lower().rstrip(".").split()) <= set(shapes.vocabulary())
    metrics = json.loads((Path(get_spec("shapes-lstm", "captioner").source) / "heldout_metrics.json").read_text())
    assert metrics["images"] == 300 and metrics["CIDEr"] > 1.0


# -- training with train/caption.py ------------------------------------------------------------------------------


def _train(shapes_data, output_dir, *extra):
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)  # each run builds its own Accelerator
    GradientState._reset_state()
    widths = {key: value for key, value in SMALL.items() if key != "encoder"}
    return caption.main(
        [
            "--architecture", "attention-lstm", "--encoder", "small", "--min_word_count", "1",
            "--lstm_image_size", "64", "--lstm_config", json.dumps(widths), "--train_dir", str(shapes_data / "train"),
            "--output_dir", str(output_dir), "--per_device_batch_size", "8", "--learning_rate", "3e-3",
            "--warmup_steps", "2", "--logging_steps", "1", "--torch_threads", "1", "--max_new_tokens", "8", *extra,
        ]
    )  # fmt: skip


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_training_builds_the_vocabulary_evaluates_and_resumes(shapes_data, tmp_path, shapes_image):
    from pipeline.caption_files import find_caption_data, read_captions
    from pipeline.word_vocabulary import split_words

    straight = tmp_path / "straight"
    scored = ["--val_dir", str(shapes_data / "val"), "--max_val_images", "2", "--no_meteor"]
    metrics = _train(shapes_data, straight, "--max_train_steps", "6", "--checkpointing_steps", "3", *scored)
    assert {"BLEU-4", "ROUGE-L", "CIDEr"} <= set(metrics) and "METEOR" not in metrics
    captions = read_captions(find_caption_data(shapes_data / "train")[0]).captions
    words = {word for texts in captions.values() for text in texts for word in split_words(text)}
    assert set(WordVocabulary.from_pretrained(straight).words[4:]) == words  # every word: --min_word_count 1
    assert sorted(p.name for p in (straight / "checkpoints").iterdir()) == ["step_3", "step_6"]
    card = (straight / "README.md").read_text()  # not a transformers model, and where it started, in words
    assert "library_name: pytorch" in card and "a new attention-lstm (small encoder, random weights)" in card
    resumed = tmp_path / "resumed"
    shutil.copytree(straight / "checkpoints" / "step_3", resumed / "checkpoints" / "step_3")
    _train(shapes_data, resumed, "--max_train_steps", "6", "--resume_from_checkpoint", "latest")
    before = json.loads((straight / "history.json").read_text())["steps"]
    after = json.loads((resumed / "history.json").read_text())["steps"]
    assert [row["step"] for row in after] == list(range(1, 7))
    for one, other in zip(before[3:], after[3:]):  # the same batches, weights and optimizer state
        assert one["loss"] == pytest.approx(other["loss"], rel=1e-4)
    assert before[-1]["loss"] < before[0]["loss"]
    first, second = (load_captioner(str(path), device="cpu") for path in (straight, resumed))
    assert first(shapes_image, num_beams=2)["caption"] == second(shapes_image, num_beams=2)["caption"]


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_training_refuses_what_it_cannot_build(shapes_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no ResNet-50 weights here, downloads off
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SystemExit, match="the attention-lstm encoder: its weights are not on this machine"):
        caption.main(["--architecture", "attention-lstm", "--train_dir", str(shapes_data / "train"),
                      "--output_dir", str(tmp_path / "run")])  # fmt: skip
    with pytest.raises(SystemExit, match="--architecture git but .* is a attention-lstm captioner"):
        _tiny(tmp_path / "lstm")
        caption.main(["--architecture", "git", "--model_name_or_path", str(tmp_path / "lstm"), "--train_dir",
                      str(shapes_data / "train"), "--output_dir", str(tmp_path / "run2")])  # fmt: skip
    with pytest.raises(SystemExit):
        caption.main(["--architecture", "blip", "--train_dir", str(shapes_data / "train"), "--output_dir", "x"])
    assert "--architecture blip needs --model_name_or_path" in capsys.readouterr().err


def test_shapes_lstm_compares_with_the_shapes_blip_through_the_app():
    from gradio_client import Client, handle_file
    from helpers import serve

    photo = str(EXAMPLES / "shapes.png")
    expected = {name: load_captioner(name, device="cpu")(photo)["caption"] for name in ("shapes", "shapes-lstm")}
    demo, url = serve(captioners=("shapes", "shapes-lstm"), segmenters=("shapes",))
    try:
        client = Client(url, verbose=False)
        assert client.predict(handle_file(photo), "shapes-lstm", api_name="/caption") == expected["shapes-lstm"]
        rows = client.predict(handle_file(photo), ["shapes", "shapes-lstm"], {"num_beams": 3}, api_name="/compare")
    finally:
        demo.close()
    assert [row["name"] for row in rows] == ["shapes", "shapes-lstm"] and all(row["error"] is None for row in rows)
    beam = load_captioner("shapes-lstm", device="cpu")(photo, num_beams=3)["caption"]
    assert rows[1]["caption"] == beam
