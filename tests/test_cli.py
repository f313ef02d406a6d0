"""`python -m pipeline`: a summary on stdout, the JSON form on disk, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import TINY_CATEGORIES, draw_shapes

from pipeline import describe_scene, from_json, ground_caption
from pipeline.__main__ import parse_args
from pipeline.jsonform import decode_mask

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_cli_writes_json(tmp_path, tiny_blip_dir, tiny_segmenter_dir):
    good = tmp_path / "shapes.png"
    draw_shapes(seed=3).save(good)
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a picture")
    out = tmp_path / "out" / "results.json"
    done = _run(
        str(good),
        str(bad),
        "--captioner",
        tiny_blip_dir,
        "--segmenter",
        tiny_segmenter_dir,
        "--threshold",
        "0.1",
        "--json",
        str(out),
        "--device",
        "cpu",
        "--profile",
        "fast",
        "--detail",
        "short",
        "--max-objects",
        "3",
    )
    assert done.returncode == 1, done.stderr  # one of the two images failed
    assert f"{good}: " in done.stdout and "caption" in done.stdout
    assert "notes.jpg" in done.stderr and "not an image" in done.stderr
    records = json.loads(out.read_text())
    assert [record["image"] for record in records] == [str(good), str(bad)]
    assert "not an image" in records[1]["error"]
    first = records[0]
    assert first["models"]["segmenter"] == tiny_segmenter_dir and isinstance(first["caption"], str)
    # The description printed is the record's, in the short form asked for.
    assert f"{good}: {first['description']}\n" in done.stdout
    instances = from_json(first)["instances"]
    assert first["description"] == describe_scene(
        first["caption"], instances, (96, 72), detail="short", max_objects=3, labels=TINY_CATEGORIES
    )
    assert first["grounding"] == ground_caption(first["caption"], instances, TINY_CATEGORIES)
    for instance in first["instances"]:
        assert decode_mask(instance["mask"]).size == (96, 72)
        assert instance["score"] >= 0.1


def test_cli_unavailable_model(tmp_path):
    image = tmp_path / "a.png"
    draw_shapes().save(image)
    done = _run(str(image), "--captioner", "blip-base", "--segmenter", "maskrcnn-v2")
    assert done.returncode == 2
    assert "error: captioner 'blip-base'" in done.stderr and "Traceback" not in done.stderr


def test_cli_too_large_names_its_own_flag(tmp_path):
    image = tmp_path / "wide.png"
    draw_shapes(width=200, height=100).save(image)
    done = _run(str(image), "--captioner", "shapes", "--segmenter", "shapes", "--max-pixels", "10000")
    assert done.returncode == 1
    assert "200x100 = 20,000 pixels, the limit is 10,000 (the --max-pixels limit)" in done.stderr
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PIPELINE_MAX_PIXELS": "10000"}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", str(image), "--captioner", "shapes", "--segmenter", "shapes"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1 and "(raise it with --max-pixels)" in done.stderr


def test_cli_options_have_the_apps_bounds(capsys):
    # The same table as the app's endpoints (pipeline.options): a value outside it is refused with the range.
    for flags, message in (
        (["--max-objects", "-1"], "--max-objects: must be an integer from 0 to 50, got '-1'"),
        (["--detail", "medium"], "--detail: must be one of 'short', 'long', got 'medium'"),
        (["--num-beams", "1000"], "--num-beams: must be an integer from 1 to 8, got '1000'"),
        (["--threshold", "abc"], "--threshold: must be a number from 0 to 1, got 'abc'"),
        (["--max-new-tokens", "100000"], "--max-new-tokens: must be an integer from 1 to 60, got '100000'"),
    ):
        with pytest.raises(SystemExit) as stopped:
            parse_args(["a.png", *flags])
        assert stopped.value.code == 2 and message in capsys.readouterr().err
    args = parse_args(["a.png", "--detail", "short", "--max-objects", "0"])
    assert (args.detail, args.max_objects) == ("short", 0)
    assert (parse_args(["a.png"]).detail, parse_args(["a.png"]).max_objects) == ("long", 10)


def test_cli_compares_captioners_side_by_side(
    tmp_path, tiny_blip_dir, tiny_vit_gpt2_dir, tiny_git_dir, tiny_segmenter_dir
):
    image = tmp_path / "shapes.png"
    draw_shapes(seed=5).save(image)
    out = tmp_path / "compare.json"
    captioners = ",".join([tiny_blip_dir, tiny_vit_gpt2_dir, tiny_git_dir, "blip-base"])
    done = _run(
        str(image), "--captioner", captioners, "--segmenter", tiny_segmenter_dir, "--threshold", "0.1",
        "--max-new-tokens", "6", "--device", "cpu", "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # blip-base is not on this machine: its row says so, the others ran
    lines = done.stdout.splitlines()
    assert lines[0] == f"{image}:"
    width = len(max(captioners.split(","), key=len))
    for line, name in zip(lines[1:5], captioners.split(","), strict=True):
        assert line.startswith(f"  {name:<{width}}  ")
    assert lines[4].startswith(f"  {'blip-base':<{width}}  error: captioner 'blip-base'")
    assert all(line.endswith(" ms)") for line in lines[1:4]) and "segment" in lines[5]
    [record] = json.loads(out.read_text())
    rows = record["captions"]
    assert [row["name"] for row in rows] == captioners.split(",")
    assert all(row["caption"] and row["milliseconds"] > 0 and row["error"] is None for row in rows[:3])
    assert rows[3]["caption"] is None and "blip-base" in rows[3]["error"]
    assert record["models"] == {"captioners": captioners.split(","), "segmenter": tiny_segmenter_dir}
    assert {"instances", "semantic", "panoptic"} <= set(record) and set(record["timings_ms"]) == {"segment", "total"}


def test_cli_asks_each_question_of_each_image(tmp_path, tiny_blip_dir, tiny_blip_vqa_dir):
    image = tmp_path / "shapes.png"
    draw_shapes(seed=3).save(image)
    out = tmp_path / "answers.json"
    questions = ["How many triangles are there?", "What colour is the circle?"]
    done = _run(
        str(image), "--captioner", tiny_blip_dir, "--segmenter", "shapes", "--answerer", tiny_blip_vqa_dir,
        "--ask", questions[0], "--ask", questions[1], "--device", "cpu", "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [record] = json.loads(out.read_text())
    counted, coloured = record["answers"]
    triangles = [index for index, found in enumerate(record["instances"]) if found["label"] == "triangle"]
    assert [answer["question"] for answer in record["answers"]] == questions
    assert (counted["answer"], counted["source"], counted["instances"]) == (str(len(triangles)), "objects", triangles)
    assert coloured["source"] == tiny_blip_vqa_dir and coloured["answer"]
    for answer in record["answers"]:
        assert f"  Q: {answer['question']}\n  A: {answer['sentence']} ({answer['source']})\n" in done.stdout


def test_cli_refuses_an_empty_or_long_question(capsys):
    for question, message in (("  ", "question must not be empty"), ("x" * 201, "at most 200 characters")):
        with pytest.raises(SystemExit) as stopped:
            parse_args(["a.png", "--ask", question])
        assert stopped.value.code == 2 and message in capsys.readouterr().err
    assert parse_args(["a.png", "--ask", " Why? ", "--ask", "Where?"]).ask == ["Why?", "Where?"]
