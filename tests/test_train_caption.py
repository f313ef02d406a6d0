"""train/caption.py: the three Flickr caption layouts, a short training run, resuming, and the saved model served."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import check_model_card, save_tiny_blip, save_tiny_git, save_tiny_vit_gpt2

from pipeline import load_captioner
from pipeline.caption_files import read_captions
from pipeline.evaluation import evaluate_captioner
from train import caption, shapes

# Each in-process training run builds its own Accelerator (see conftest.fresh_accelerate_state).
pytestmark = pytest.mark.usefixtures("fresh_accelerate_state", "meteor")


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory):
    return Path(save_tiny_blip(tmp_path_factory.mktemp("tiny-blip-init"), shapes.vocabulary(), intermediate_size=64))


def _train(shapes_data, tiny_blip, output_dir, *extra):
    return caption.main(
        [
            "--model_name_or_path", str(tiny_blip), "--train_dir", str(shapes_data / "train"),
            "--val_dir", str(shapes_data / "val"), "--output_dir", str(output_dir), "--per_device_batch_size", "8",
            "--learning_rate", "3e-3", "--warmup_steps", "2", "--logging_steps", "1", "--torch_threads", "1",
            "--max_new_tokens", "12", *extra,
        ]
    )  # fmt: skip


# -- the caption file layouts ------------------------------------------------------------------------------------


def test_flickr8k_captions_txt_with_malformed_rows(tmp_path):
    path = tmp_path / "captions.txt"
    path.write_text(
        "image,caption\n"
        "1000268201_693b08cb0e.jpg,A child in a pink dress is climbing up a set of stairs .\n"
        '1000268201_693b08cb0e.jpg,"A girl, going into a wooden building ."\n'
        "1001773457_577c3a7d70.jpg,A black dog and a spotted dog are fighting\n"
        "1001773457_577c3a7d70.jpg,\n"  # no caption
        "just-a-name-without-caption\n"  # one field
        "notes.txt,not an image\n"  # not an image file
    )
    parsed = read_captions(path)
    assert parsed.layout == "captions.txt"
    assert parsed.skipped == 3
    assert parsed.captions["1000268201_693b08cb0e.jpg"][1] == "A girl, going into a wooden building ."
    assert sum(len(v) for v in parsed.captions.values()) == 3


def test_flickr8k_token_txt_with_malformed_rows(tmp_path):
    path = tmp_path / "Flickr8k.token.txt"
    path.write_text(
        "1000268201_693b08cb0e.jpg#0\tA child in a pink dress is climbing up a set of stairs .\n"
        "1000268201_693b08cb0e.jpg#1\tA girl going into a wooden building .\n"
        "1001773457_577c3a7d70.jpg#0\tA black dog and a spotted dog are fighting\n"
        "1001773457_577c3a7d70.jpg#1\t\n"  # empty caption
        "1001773457_577c3a7d70.jpg A dog without a tab\n"  # no tab, no #N
        "1001773457_577c3a7d70.jpg#x\tbad number\n"
        "\n"
    )
    parsed = read_captions(path)
    assert parsed.layout == "Flickr8k.token.txt"
    assert parsed.skipped == 3
    assert parsed.captions == {
        "1000268201_693b08cb0e.jpg": [
            "A child in a pink dress is climbing up a set of stairs .",
            "A girl going into a wooden building .",
        ],
        "1001773457_577c3a7d70.jpg": ["A black dog and a spotted dog are fighting"],
    }


def test_flickr30k_results_csv_with_its_known_broken_row(tmp_path):
    path = tmp_path / "any-name.csv"
    path.write_text(
        "image_name| comment_number| comment\n"
        "1000092795.jpg| 0| Two young guys with shaggy hair look at their hands while hanging out in the yard .\n"
        "1000092795.jpg| 1| Two young , White males are outside near many bushes .\n"
        "2199200615.jpg| 4 A dog runs across the grass .\n"  # the real Flickr30k row that lost a separator
        "2199200615.jpg| x| bad comment number\n"
        "2199200615.jpg| 0| A dog | runs\n"
    )
    parsed = read_captions(path)
    assert parsed.layout == "results.csv"
    assert parsed.skipped == 2
    assert parsed.captions["2199200615.jpg"] == ["A dog | runs"]
    assert len(parsed.captions["1000092795.jpg"]) == 2


def test_unknown_layout_and_missing_file_are_named(tmp_path):
    path = tmp_path / "captions.json"
    path.write_text('{"images": []}\n')
    with pytest.raises(ValueError, match="captions.json.* none of the layouts"):
        read_captions(path)
    with pytest.raises(ValueError, match="nowhere.txt.* does not exist"):
        read_captions(tmp_path / "nowhere.txt")


# -- training --------------------------------------------------------------------------------------------------


def test_short_run_lowers_the_loss_and_the_model_serves(shapes_data, tiny_blip, tmp_path, shapes_image):
    output = tmp_path / "run"
    metrics = _train(shapes_data, tiny_blip, output, "--max_train_steps", "30")
    history = json.loads((output / "history.json").read_text())
    losses = [row["loss"] for row in history["steps"]]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    assert set(metrics) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "gender_images"}
    assert metrics["gender_images"] == 0  # shapes have no people
    assert history["epochs"] and history["epochs"][-1]["step"] == 30
    assert (output / "history.png").stat().st_size > 0
    captioner = load_captioner(str(output), device="cpu")
    result = captioner(shapes_image)
    assert set(result) == {"caption"} and isinstance(result["caption"], str)
    assert set(result["caption"].lower().rstrip(".").split()) <= set(shapes.vocabulary())
    scored = evaluate_captioner(captioner, shapes_data / "val")
    assert scored["images"] == 4 and 0.0 <= scored["BLEU-1"] <= 1.0
    check_model_card(output, "captioner", metrics, steps=30, dataset=shapes_data.name)


@pytest.mark.parametrize("family, save", [("git", save_tiny_git), ("vision-encoder-decoder", save_tiny_vit_gpt2)])
def test_other_families_train_and_serve(family, save, shapes_data, tmp_path, shapes_image):
    start = Path(save(tmp_path / "init", shapes.vocabulary()))
    output = tmp_path / "run"
    metrics = _train(shapes_data, start, output, "--max_train_steps", "5", "--max_val_images", "2")
    losses = [row["loss"] for row in json.loads((output / "history.json").read_text())["steps"]]
    assert len(losses) == 5 and losses[-1] < losses[0]
    assert {"BLEU-4", "METEOR", "ROUGE-L", "CIDEr"} <= set(metrics)
    captioner = load_captioner(str(output), device="cpu")
    assert captioner.family == family
    caption = captioner(shapes_image, max_new_tokens=8)["caption"]
    assert isinstance(caption, str) and caption
    if family == "git":  # a word-level vocabulary: every word is a shapes word
        assert set(caption.lower().rstrip(".").split()) <= set(shapes.vocabulary())


def test_collators_build_each_familys_labels(tmp_path, shapes_image):
    from pipeline.captioning import load_caption_model

    image = shapes_image
    batch = [(image, "A red circle"), (image, "a blue square to the left of a green triangle")]
    for save in (save_tiny_blip, save_tiny_git, save_tiny_vit_gpt2):
        model, processor = load_caption_model(save(tmp_path / save.__name__, shapes.vocabulary()))
        tokenizer = processor.tokenizer
        collated = caption.build_train_collator(model, processor, max_length=40)(batch)
        labels = collated["labels"]
        assert labels.shape[0] == 2 and (labels[0] == -100).any() and not (labels[1] == -100).any()
        real = labels[0][labels[0] != -100].tolist()
        if save is save_tiny_vit_gpt2:  # "caption <eos>", no special token in front; the model shifts it itself
            assert set(collated) == {"pixel_values", "labels"}
            assert real == [*tokenizer("a red circle", add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
        else:
            expected = tokenizer("a red circle")["input_ids"]  # [CLS] a red circle [SEP]
            if save is save_tiny_blip:
                expected[0] = model.config.text_config.bos_token_id  # where BLIP's generate starts
            assert real == expected and collated["input_ids"][0, : len(real)].tolist() == expected
        assert model(**collated).loss.item() > 0


def test_encoder_decoder_without_special_ids_gets_the_tokenizers(tmp_path):
    # VisionEncoderDecoderModel.from_encoder_decoder_pretrained(...) leaves them unset; training needs them.
    from pipeline.captioning import load_caption_model

    model, processor = load_caption_model(save_tiny_vit_gpt2(tmp_path / "bare", shapes.vocabulary()))
    model.config.decoder_start_token_id = model.config.pad_token_id = None
    end = processor.tokenizer.eos_token_id
    changes = caption.complete_special_tokens(model, processor.tokenizer)
    assert changes == [f"decoder_start_token_id={end}", f"pad_token_id={end}"]
    assert caption.complete_special_tokens(model, processor.tokenizer) == []  # nothing left to set


@pytest.mark.parametrize("family", ["blip", "git", "vision-encoder-decoder"])
def test_resume_continues_from_the_saved_step(family, shapes_data, tiny_blip, tmp_path):
    saves = {"git": save_tiny_git, "vision-encoder-decoder": save_tiny_vit_gpt2}
    start = Path(saves[family](tmp_path / "init", shapes.vocabulary())) if family in saves else tiny_blip
    straight = tmp_path / "straight"
    augment = ["--random_resized_crop_scale", "0.7", "--color_jitter", "0.2"]  # random draws must repeat too
    _train(shapes_data, start, straight, "--max_train_steps", "8", "--checkpointing_steps", "4", *augment)
    assert sorted(p.name for p in (straight / "checkpoints").iterdir()) == ["step_4", "step_8"]
    resumed = tmp_path / "resumed"
    shutil.copytree(straight / "checkpoints" / "step_4", resumed / "checkpoints" / "step_4")
    _train(shapes_data, start, resumed, "--max_train_steps", "8", "--resume_from_checkpoint", "latest", *augment)
    assert load_captioner(str(resumed), device="cpu").family == family
    before = json.loads((straight / "history.json").read_text())["steps"]
    after = json.loads((resumed / "history.json").read_text())["steps"]
    assert [row["step"] for row in after] == list(range(1, 9))
    # Steps 5-8 after resuming see the same batches with the same weights and optimizer state as without a break.
    for one, other in zip(before[4:], after[4:]):
        assert one["loss"] == pytest.approx(other["loss"], rel=1e-4)
        assert one["lr"] == pytest.approx(other["lr"], rel=1e-6)


def test_resume_latest_on_a_first_run_starts_from_step_0(shapes_data, tiny_blip, tmp_path, capsys):
    # One command line serves the first run and every restart, as in accelerate's examples.
    output = tmp_path / "fresh"
    _train(shapes_data, tiny_blip, output, "--max_train_steps", "2", "--resume_from_checkpoint", "latest")
    assert "no saved state in" in capsys.readouterr().out
    assert [row["step"] for row in json.loads((output / "history.json").read_text())["steps"]] == [1, 2]


def test_missing_images_are_skipped_and_counted_before_training(shapes_data, tiny_blip, tmp_path, capsys):
    data = tmp_path / "partly-extracted"
    shutil.copytree(shapes_data, data)
    for name in ("000001.png", "000003.png"):
        (data / "train" / "images" / name).unlink()
    output = tmp_path / "run"
    caption.main(
        ["--model_name_or_path", str(tiny_blip), "--train_dir", str(data / "train"), "--output_dir", str(output),
         "--max_train_steps", "2", "--per_device_batch_size", "4", "--torch_threads", "1"]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "2 of 16 images are not in" in printed and "000001.png, 000003.png" in printed
    # Written like every other output file, not owner-only as safetensors writes it.
    assert (output / "model.safetensors").stat().st_mode & 0o777 == (output / "config.json").stat().st_mode & 0o777
    for image in (data / "train" / "images").iterdir():
        image.unlink()
    with pytest.raises(SystemExit, match="none of the 16 images is in"):
        caption.main(["--model_name_or_path", str(tiny_blip), "--train_dir", str(data / "train"),
                      "--output_dir", str(tmp_path / "none")])  # fmt: skip


def test_bad_flags_are_refused(shapes_data, tiny_blip, tmp_path, capsys):
    with pytest.raises(SystemExit):
        _train(shapes_data, tiny_blip, tmp_path, "--hflip", "1.5")
    assert "--hflip must be between 0 and 1, got 1.5" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _train(shapes_data, tiny_blip, tmp_path, "--val_fraction", "0.1")
    assert "choose one of" in capsys.readouterr().err
