"""train/answer.py: a BLIP question answerer fine-tuned on the shapes data set's questions (VQAv2 layout), scored by
VQA accuracy, resumable, and loaded by the catalog afterwards."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from helpers import TINY_BLIP_LAYERS, check_model_card

from pipeline import load_answerer
from pipeline.builders import build_blip_vqa
from train import answer, shapes

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")
WORDS = [*shapes.vocabulary(), *"how many are there is what colour shape yes no 0 1 2 3".split()]


@pytest.fixture(scope="module")
def tiny_vqa(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny-vqa-shapes")
    torch.manual_seed(0)
    model, processor = build_blip_vqa(
        WORDS, image_size=32, patch_size=8, vision=TINY_BLIP_LAYERS, text=TINY_BLIP_LAYERS
    )
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def _train(data, model, output, *flags: str) -> dict[str, float]:
    return answer.main(
        ["--model_name_or_path", str(model), "--train_dir", str(data / "train"), "--val_dir", str(data / "val"),
         "--output_dir", str(output), "--per_device_batch_size", "8", "--learning_rate", "2e-3", "--torch_threads",
         "1", "--logging_steps", "1", *flags]
    )  # fmt: skip


def test_short_run_lowers_the_loss_and_the_answerer_serves(shapes_data, tiny_vqa, tmp_path, shapes_image):
    output = tmp_path / "run"
    metrics = _train(shapes_data, tiny_vqa, output, "--max_train_steps", "30")
    losses = [row["loss"] for row in json.loads((output / "history.json").read_text())["steps"]]
    assert len(losses) == 30 and sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    assert {"accuracy", "accuracy_number", "accuracy_yes/no", "accuracy_colour", "questions"} <= set(metrics)
    assert metrics["questions"] == sum(
        1 for _ in json.loads((shapes_data / "val" / "questions.json").read_text())["questions"]
    )
    answerer = load_answerer(str(output), device="cpu")
    said = answerer(shapes_image, question="What colour is the circle?")["answer"]
    assert set(said.split()) <= set(WORDS)
    check_model_card(output, "answerer", metrics, steps=30, dataset=shapes_data.name)


def test_resume_continues_from_the_saved_step(shapes_data, tiny_vqa, tmp_path):
    straight = tmp_path / "straight"
    _train(shapes_data, tiny_vqa, straight, "--max_train_steps", "4", "--checkpointing_steps", "2",
           "--question_types", "colour,shape")  # fmt: skip
    resumed = tmp_path / "resumed"
    shutil.copytree(straight / "checkpoints" / "step_2", resumed / "checkpoints" / "step_2")
    _train(shapes_data, tiny_vqa, resumed, "--max_train_steps", "4", "--question_types", "colour,shape",
           "--resume_from_checkpoint", "latest")  # fmt: skip
    before = json.loads((straight / "history.json").read_text())["steps"]
    after = json.loads((resumed / "history.json").read_text())["steps"]
    assert [row["step"] for row in after] == [1, 2, 3, 4]
    for one, other in zip(before[2:], after[2:]):
        assert one["loss"] == pytest.approx(other["loss"], rel=1e-4)


def test_a_question_type_the_data_lacks_is_one_line(shapes_data, tiny_vqa, tmp_path):
    with pytest.raises(SystemExit, match="no training question of the types 'weather'"):
        _train(shapes_data, tiny_vqa, tmp_path / "none", "--question_types", "weather", "--max_train_steps", "1")


def test_the_vision_encoder_trains_at_its_own_rate_or_not_at_all(shapes_data, tiny_vqa, tmp_path):
    from transformers import BlipForQuestionAnswering

    def moved(run: str, *flags: str) -> tuple[float, float]:
        _train(shapes_data, tiny_vqa, tmp_path / run, "--max_train_steps", "2", "--weight_decay", "0", *flags)
        before = BlipForQuestionAnswering.from_pretrained(tiny_vqa).state_dict()
        after = BlipForQuestionAnswering.from_pretrained(tmp_path / run).state_dict()
        change = {name: (after[name] - value).abs().max().item() for name, value in before.items()}
        vision = max(value for name, value in change.items() if name.startswith("vision_model."))
        return vision, max(value for name, value in change.items() if name.startswith("text_encoder."))

    vision, text = moved("slow-vision", "--vision_learning_rate", "1e-9")
    assert vision < 1e-7 < 1e-4 < text, (vision, text)  # AdamW moves each weight by about its rate a step
    vision, text = moved("own-rate", "--vision_learning_rate", "1e-3")
    assert 1e-4 < vision and 1e-4 < text, (vision, text)
    assert moved("frozen", "--freeze_vision")[0] == 0.0
    with pytest.raises(SystemExit):
        _train(shapes_data, tiny_vqa, tmp_path / "bad", "--vision_learning_rate", "0", "--max_train_steps", "1")
