"""train/evaluate.py: a captioner scored on a data set folder, every caption metric in the JSON; no Java, no scores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import draw_shapes, save_tiny_git

from pipeline.evaluation import CAPTION_METRICS
from train import evaluate

ROOT = Path(__file__).resolve().parents[1]
#: A tiny data set with people in it: the captioner's words and these references decide the gender rates.
REFERENCES = {
    "0.png": ["a man riding a bike", "a man on a bike"],
    "1.png": ["a woman with an umbrella", "a lady holding an umbrella"],
    "2.png": ["a dog on the grass", "a brown dog"],
}


@pytest.fixture(scope="module")
def people_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("people")
    (root / "images").mkdir()
    rows = ["image,caption"]
    for index, (name, captions) in enumerate(REFERENCES.items()):
        draw_shapes(seed=index).save(root / "images" / name)
        rows += [f"{name},{caption}" for caption in captions]
    (root / "captions.txt").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def people_captioner(tmp_path_factory) -> str:
    # A tiny GIT that knows the gendered words, so that its (random) captions may use them.
    words = "a the man woman lady dog bike umbrella on with riding holding grass brown".split()
    return save_tiny_git(tmp_path_factory.mktemp("people-git"), words)


def test_captioner_json_reports_meteor_rouge_and_gender(people_data, people_captioner, tmp_path, capsys, meteor):
    out = tmp_path / "metrics.json"
    metrics = evaluate.main(["captioner", people_captioner, str(people_data), "--device", "cpu", "--json", str(out)])
    written = json.loads(out.read_text())
    assert written == metrics
    assert set(CAPTION_METRICS) <= set(written) and written["images"] == 3
    assert written["gender_images"] == 2  # the man and the woman; the dog does not count
    assert 0.0 <= written["gender_error_rate"] + written["gender_none_rate"] <= 1.0
    assert 0.0 <= written["METEOR"] <= 1.0 and 0.0 <= written["ROUGE-L"] <= 1.0
    printed = capsys.readouterr().out
    assert "METEOR" in printed and "gender_images  2" in printed


def test_captioner_without_java_stops_before_the_work(people_data, people_captioner, tmp_path):
    env = {**os.environ, "PATH": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "train.evaluate", "captioner", people_captioner, str(people_data)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: caption scores need a Java runtime")
    assert "apt-get install default-jre-headless" in done.stderr and "PTB tokenizer" in done.stderr
    no_meteor = subprocess.run(
        [*command, "--no_meteor"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert no_meteor.returncode == 2 and "Traceback" not in no_meteor.stderr  # the tokenizer needs Java too
    scored = evaluate.main(["captioner", people_captioner, str(people_data), "--device", "cpu", "--no_meteor"])
    assert "ROUGE-L" in scored and "METEOR" not in scored


def test_several_captioners_give_one_table_in_json_and_markdown(people_data, people_captioner, tmp_path, capsys):
    table_path, json_path = tmp_path / "table.md", tmp_path / "table.json"
    argv = ["captioner", f"shapes,{people_captioner}", str(people_data), "--device", "cpu", "--no_meteor"]
    rows = evaluate.main([*argv, "--markdown", str(table_path), "--json", str(json_path)])
    assert list(rows) == ["shapes", people_captioner] and json.loads(json_path.read_text()) == rows
    for figures in rows.values():
        assert figures["images"] == 3 and figures["seconds_per_image"] > 0 and "METEOR" not in figures
        assert set(CAPTION_METRICS) - {"METEOR"} <= set(figures) and figures["gender_images"] == 2
    table = table_path.read_text().splitlines()
    assert table[0].startswith("| captioner | BLEU-1 |") and table[0].endswith("| s / image |")
    assert len(table) == 4 and table[2].startswith("| shapes | ") and "| n/a |" in table[2]  # METEOR left out
    assert "\n".join(table) in capsys.readouterr().out
    with pytest.raises(SystemExit):
        evaluate.parse_args(["segmenter", "shapes,maskrcnn-v2", str(people_data)])


def test_an_answerer_is_scored_by_vqa_accuracy_on_a_vqav2_layout_folder(tmp_path, capsys):
    from pipeline import load_answerer
    from pipeline.evaluation import evaluate_answerer
    from train import shapes

    root = shapes.write_split(tmp_path, "test", 4, seed=1)
    figures = evaluate.main(
        ["answerer", "shapes", str(root), "--question_types", "colour,shape", "--json", str(tmp_path / "vqa.json")]
    )
    direct = evaluate_answerer(load_answerer("shapes", device="cpu"), root, question_types=["colour", "shape"])
    assert {key: figures[key] for key in ("accuracy", "accuracy_colour", "accuracy_shape", "questions")} == {
        key: direct[key] for key in ("accuracy", "accuracy_colour", "accuracy_shape", "questions")
    }
    assert json.loads((tmp_path / "vqa.json").read_text())["accuracy"] == figures["accuracy"]
    assert "accuracy_count" not in figures and f"questions  {int(figures['questions'])}" in capsys.readouterr().out
