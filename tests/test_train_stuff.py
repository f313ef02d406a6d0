"""train/stuff.py: the shapes world's stuff annotations, a short run, resuming, ADE20K's layout, the model served."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from helpers import TINY_SEGFORMER, check_model_card
from PIL import Image

from pipeline import load_stuff
from pipeline.evaluation import evaluate_panoptic
from train import shapes, stuff

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


@pytest.fixture(scope="module")
def stuff_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes-stuff")
    shapes.write_split(root, "train", 16, seed=0, stuff=True)
    shapes.write_split(root, "val", 4, seed=0, stuff=True)
    return root


def _train(data, output_dir, *extra):
    return stuff.main(
        [
            "--train_dir", str(data / "train"), "--val_dir", str(data / "val"), "--output_dir", str(output_dir),
            "--init", "scratch", "--segformer_config", json.dumps(TINY_SEGFORMER), "--image_size", "64",
            "--per_device_batch_size", "4", "--learning_rate", "3e-3", "--logging_steps", "1", "--torch_threads", "1",
            "--seed", "0", *extra,
        ]
    )  # fmt: skip


def test_stuff_splits_are_annotated_and_plain_ones_unchanged(stuff_data, tmp_path):
    table = json.loads((stuff_data / "train" / "labels.json").read_text())
    assert table == {"labels": [*shapes.STUFF, "shape", "plain"], "stuff": list(shapes.STUFF)}
    values = set()
    for path in sorted((stuff_data / "train" / "annotations").iterdir()):
        values |= set(np.unique(np.asarray(Image.open(path))).tolist())
    assert values <= set(range(1, 8)) and shapes.SHAPE_LABEL in values and len(values & {1, 2, 3, 4, 5}) >= 4
    # Without --stuff a picture is drawn exactly as before: the committed models' data is the same.
    plain = shapes.draw_sample(np.random.default_rng([0, 0, 3]))
    assert plain.stuff is None and not (tmp_path / "annotations").exists()
    boundaries = []
    for index in range(40):  # one to three regions; boundaries not always straight
        sample = shapes.draw_sample(np.random.default_rng(index), stuff=True)
        regions = set(np.unique(sample.stuff).tolist()) - {0}
        assert len(regions) <= 3
        rows = [set(np.unique(row).tolist()) for row in sample.stuff]
        boundaries.append(any(len(row) > 1 for row in rows))  # a boundary crossing a row: not a straight horizon
    assert any(boundaries) and not all(boundaries)


def test_short_run_learns_and_the_model_serves(stuff_data, tmp_path):
    output = tmp_path / "run"
    metrics = _train(stuff_data, output, "--max_train_steps", "12", "--save_float16")
    losses = [row["loss"] for row in json.loads((output / "history.json").read_text())["steps"]]
    assert len(losses) == 12 and sum(losses[-3:]) < sum(losses[:3])
    assert set(metrics) == {"mIoU", "pixel_accuracy"} and 0.0 <= metrics["mIoU"] <= metrics["pixel_accuracy"] <= 1
    model = load_stuff(str(output), device="cpu")
    assert all(p.dtype == torch.float32 for p in model.model.parameters())  # float16 on disk, float32 loaded
    assert model.categories == sorted(shapes.STUFF)  # "shape" and "plain" are no stuff
    result = model(Image.open(next((stuff_data / "val" / "images").iterdir())))
    assert result["map"].shape == (128, 128) and set(result["labels"].values()) <= set(shapes.STUFF)
    check_model_card(output, "stuff", metrics, steps=12, dataset=stuff_data.name)


def test_resume_continues_from_the_saved_step(stuff_data, tmp_path):
    straight = tmp_path / "straight"
    _train(stuff_data, straight, "--max_train_steps", "6", "--checkpointing_steps", "3")
    resumed = tmp_path / "resumed"
    shutil.copytree(straight / "checkpoints" / "step_3", resumed / "checkpoints" / "step_3")
    _train(stuff_data, resumed, "--max_train_steps", "6", "--resume_from_checkpoint", "latest")
    before = json.loads((straight / "history.json").read_text())["steps"]
    after = json.loads((resumed / "history.json").read_text())["steps"]
    assert [row["step"] for row in after] == list(range(1, 7))
    for one, other in zip(before[3:], after[3:]):
        assert one["loss"] == pytest.approx(other["loss"], rel=1e-3)


def test_ade20k_layout_and_names(tmp_path):
    """ADE20K's folders and objectInfo150 table (three classes here): value 0 is "other", not scored."""
    root = tmp_path / "ADEChallengeData2016"
    rng = np.random.default_rng(0)
    for part in ("training", "validation"):
        (root / "images" / part).mkdir(parents=True)
        (root / "annotations" / part).mkdir(parents=True)
        for index in range(4):
            Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(
                root / "images" / part / f"ADE_{index}.jpg"
            )
            Image.fromarray(rng.integers(0, 4, (48, 64), dtype=np.uint8)).save(
                root / "annotations" / part / f"ADE_{index}.png"
            )
    (root / "objectInfo150.csv").write_text("Idx,Ratio,Train,Val,Name\n1,0.1,1,1,wall\n2,0.1,1,1,person;individual\n"
                                            "3,0.1,1,1,sky\n")  # fmt: skip
    metrics = stuff.main(["--ade20k_dir", str(root), "--output_dir", str(tmp_path / "ade"), "--init", "scratch",
                          "--segformer_config", json.dumps(TINY_SEGFORMER), "--image_size", "32",
                          "--per_device_batch_size", "2", "--max_train_steps", "2",
                          "--torch_threads", "1"])  # fmt: skip
    assert set(metrics) == {"mIoU", "pixel_accuracy"}
    config = json.loads((tmp_path / "ade" / "config.json").read_text())
    assert list(config["id2label"].values()) == ["wall", "person", "sky"]
    assert load_stuff(str(tmp_path / "ade"), device="cpu").categories == ["sky", "wall"]  # person is a thing


def test_bad_flags_are_refused(stuff_data, tmp_path, capsys):
    for argv, message in (
        (["--output_dir", str(tmp_path)], "give --ade20k_dir, or --train_dir"),
        (["--train_dir", str(stuff_data / "train"), "--output_dir", str(tmp_path), "--image_size", "8"],
         "--image_size must be at least 32"),
        (["--train_dir", str(stuff_data / "train"), "--output_dir", str(tmp_path), "--segformer_config", "[1]"],
         "--segformer_config must be a JSON object"),
    ):  # fmt: skip
        with pytest.raises(SystemExit):
            stuff.parse_args(argv)
        assert message in capsys.readouterr().err


def test_panoptic_quality_of_the_truth_itself_is_perfect(stuff_data):
    """evaluate_panoptic's ground truth scored against itself, through stand-in models that return it."""
    from pipeline.evaluation import shapes_panoptic_truth

    truth, categories = shapes_panoptic_truth(stuff_data / "val")
    names = {category_id: name for name, (category_id, _) in categories.items()}
    by_file = {image["file"]: image for image in truth}

    def segmenter(paths, **_):
        results = []
        for path in paths:
            image = by_file[path]
            segments = [{"id": s["id"], "label": names[s["category_id"]], "label_id": s["category_id"],
                         "isthing": s["category_id"] < 1000, "score": 1.0, "area": s["area"]}
                        for s in image["segments"]]  # fmt: skip
            results.append({"instances": [], "panoptic": {"map": image["map"], "segments": segments}})
        return results

    scores = evaluate_panoptic(segmenter, None, stuff_data / "val")
    assert scores["PQ"] == pytest.approx(1.0) and scores["PQ_stuff"] == pytest.approx(1.0)
    assert scores["categories_stuff"] >= 2 and scores["images"] == 4
