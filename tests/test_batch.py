"""pipeline.batch on the committed shapes models: input kinds, output formats, errors, resume, a killed run, and
scores equal to train.evaluate's."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, batch_outputs, draw_shapes
from PIL import Image
from pycocotools.coco import COCO

from pipeline import load_captioner, load_segmenter
from pipeline.batch import list_items
from pipeline.batch.__main__ import main
from pipeline.batch.records import result_record
from pipeline.batch.store import OutputStore
from pipeline.evaluation import evaluate_captioner, evaluate_segmenter, id_to_rgb, rgb_to_id
from train import shapes

# Each in-process run creates accelerate's PartialState (see conftest.fresh_accelerate_state).
pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")
SHAPES = ["--captioner", "shapes", "--segmenter", "shapes", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    """The split of `python -m train.shapes --output_dir D --seed 1 --train 0 --val 0 --test 12`."""
    return shapes.write_split(tmp_path_factory.mktemp("batch-shapes"), "test", 12, seed=1)


def _run(*argv: str) -> int:
    return main([str(arg) for arg in argv])


def test_folder_run_writes_every_output(split, tmp_path):
    out = tmp_path / "out"
    assert _run(split / "images", "--output", out, *SHAPES, "--batch-size", "4", "--num-workers", "1") == 0
    outputs = batch_outputs(out)
    captions = outputs["captions"]
    assert [line["file"] for line in captions] == [f"{index:06d}.png" for index in range(12)]
    assert [line["image_id"] for line in captions] == list(range(1, 13))
    first = captions[0]
    assert set(first) == {"file", "image_id", "caption", "description", "objects", "instances", "width", "height"}
    assert first["caption"].startswith("A ") and sum(first["objects"].values()) == first["instances"] > 0
    assert outputs["errors"] == []
    # instances.json is COCO results that pycocotools loads against the split's ground truth
    detections = outputs["instances"]
    assert len(detections) == sum(line["instances"] for line in captions)
    assert set(detections[0]) == {"image_id", "category_id", "segmentation", "bbox", "score"}
    with contextlib.redirect_stdout(io.StringIO()):
        loaded = COCO(str(split / "instances.json")).loadRes(detections)
    assert len(loaded.getAnnIds()) == len(detections)
    # panoptic.json: every PNG's ids are exactly its segments, and its areas match
    panoptic = outputs["panoptic"]
    assert {c["name"] for c in panoptic["categories"]} <= {"circle", "square", "triangle"}
    assert [image["file_name"] for image in panoptic["images"]] == [line["file"] for line in captions]
    for annotation in panoptic["annotations"]:
        ids = rgb_to_id(np.asarray(Image.open(out / "panoptic" / annotation["file_name"])))
        segments = {segment["id"]: segment for segment in annotation["segments_info"]}
        assert set(np.unique(ids)) - {0} == set(segments)
        assert all(int((ids == i).sum()) == segment["area"] for i, segment in segments.items())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {
        "images": 12,
        "errors": 0,
        "instances": len(detections),
        "segments": summary["counts"]["segments"],
    }
    assert summary["images_per_second"] > 0
    assert summary["models"] == {"captioner": "shapes", "segmenter": "shapes", "stuff": "none"}
    assert summary["categories"] == [
        {"id": 1, "name": "circle"},
        {"id": 2, "name": "square"},
        {"id": 3, "name": "triangle"},
    ]
    assert {"cpu", "cores", "native_bfloat16"} <= set(summary["machine"])


def test_input_kinds_list_the_same_images(split, tmp_path):
    folder = [item.file for item in list_items(str(split / "images"))[1]]
    assert folder == [f"{index:06d}.png" for index in range(12)]
    pattern = [Path(item.file).name for item in list_items(str(split / "images" / "*.png"))[1]]
    assert pattern == folder
    listing = tmp_path / "list.txt"
    listing.write_text("# my photos\n" + "\n".join(f"images/{name}" for name in folder[:3]) + "\n\n")
    listed = list_items(str(listing), images_root=split)[1]
    assert [item.file for item in listed] == [f"images/{name}" for name in folder[:3]]
    assert all(Path(item.location).is_file() for item in listed)
    coco = list_items(str(split / "instances.json"), limit=5)[1]
    assert [(item.file, item.image_id) for item in coco] == [
        (name, index + 1) for index, name in enumerate(folder[:5])
    ]
    with pytest.raises(ValueError, match="none of: a folder, a glob"):
        list_items(str(tmp_path / "missing"))
    # a run's output inside its input folder is not read back as input
    (split / "images" / "out" / "panoptic").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(split / "images" / "out" / "panoptic" / "000000000001.png")
    try:
        assert len(list_items(str(split / "images"), exclude=split / "images" / "out")[1]) == 12
        assert len(list_items(str(split / "images"))[1]) == 13
    finally:
        shutil.rmtree(split / "images" / "out")


def test_datasets_inputs(split, tmp_path):
    import datasets

    files = sorted(str(path) for path in (split / "images").glob("*.png"))[:3]
    saved = tmp_path / "saved"
    datasets.Dataset.from_dict({"picture": files, "n": [1, 2, 3]}).cast_column(
        "picture", datasets.Image()
    ).save_to_disk(saved)
    source, items = list_items(str(saved))
    assert source.kind == "dataset" and source.column == "picture" and [item.image_id for item in items] == [1, 2, 3]
    out = tmp_path / "out"
    assert _run(saved, "--output", out, *SHAPES, "--num-workers", "0") == 0
    from_dataset = batch_outputs(out)["captions"]
    folder_out = tmp_path / "folder"
    assert _run(split / "images", "--output", folder_out, *SHAPES, "--limit", "3", "--num-workers", "0") == 0
    assert [line["caption"] for line in from_dataset] == [
        line["caption"] for line in batch_outputs(folder_out)["captions"]
    ]
    imagefolder = list_items(f"hf:imagefolder:{split / 'images'}", limit=2)[1]
    assert [Path(item.file).name for item in imagefolder] == ["000000.png", "000001.png"]
    with pytest.raises(ValueError, match="no image column 'nope'"):
        list_items(str(saved), image_column="nope")


def test_errors_are_recorded_and_retried(split, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    draw_shapes(seed=1).save(photos / "good.png")
    (photos / "notes.jpg").write_text("not a picture")
    draw_shapes(width=200, height=200).save(photos / "large.png")
    out = tmp_path / "out"
    assert _run(photos, "--output", out, *SHAPES, "--max-pixels", "20000", "--num-workers", "1") == 1
    errors = {line["file"]: line["error"] for line in batch_outputs(out)["errors"]}
    assert set(errors) == {"notes.jpg", "large.png"}
    assert "not an image" in errors["notes.jpg"] and "image too large" in errors["large.png"]
    assert [line["file"] for line in batch_outputs(out)["captions"]] == ["good.png"]
    # A rerun with a larger limit tries the refused image again; the finished one is skipped.
    assert _run(photos, "--output", out, *SHAPES, "--max-pixels", "100000", "--num-workers", "0") == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images_skipped"] == 1 and summary["images_this_run"] == 2
    assert [line["file"] for line in batch_outputs(out)["captions"]] == ["good.png", "large.png"]
    assert [line["file"] for line in batch_outputs(out)["errors"]] == ["notes.jpg"]


def test_resume_skips_finished_images_and_duplicates_nothing(split, tmp_path):
    out = tmp_path / "out"
    assert _run(split / "images", "--output", out, *SHAPES, "--limit", "5", "--num-workers", "0") == 0
    parts = sorted((out / "parts").glob("*.jsonl"))
    assert _run(split / "images", "--output", out, *SHAPES, "--batch-size", "3", "--num-workers", "0") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images_skipped"] == 5 and summary["images_this_run"] == 7
    assert all(path.exists() for path in parts)  # earlier parts are kept as they were
    whole = tmp_path / "whole"
    assert _run(split / "images", "--output", whole, *SHAPES, "--num-workers", "0") == 0
    assert batch_outputs(out)["captions"] == batch_outputs(whole)["captions"]
    assert len(batch_outputs(out)["instances"]) == len(batch_outputs(whole)["instances"])
    # Nothing left to do: the outputs are merged again, the same.
    assert _run(split / "images", "--output", out, *SHAPES, "--num-workers", "0") == 0
    assert json.loads((out / "summary.json").read_text())["images_this_run"] == 0
    assert batch_outputs(out)["captions"] == batch_outputs(whole)["captions"]


def test_a_rerun_with_other_settings_is_refused(split, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(split / "images", "--output", out, *SHAPES, "--limit", "1", "--num-workers", "0") == 0
    assert _run(split / "images", "--output", out, *SHAPES, "--limit", "1", "--num-beams", "2") == 2
    assert "holds a run with other settings (options was" in capsys.readouterr().err


def test_caption_references_without_java_are_refused_before_the_run(split, tmp_path):
    """Caption scores run on Java (the PTB tokenizer, METEOR): without one the job says so and analyses nothing."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "pipeline.batch", str(split / "images"), "--output", str(out), *SHAPES]
    command += ["--references", str(split / "captions.txt")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PATH": str(tmp_path)}  # no java on PATH; python by its full path
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "error: caption scores need a Java runtime" in done.stderr and "Traceback" not in done.stderr
    assert "default-jre-headless" in done.stderr and not (out / "captions.jsonl").exists()


def test_killed_run_leaves_whole_records_and_resumes(tmp_path):
    data = shapes.write_split(tmp_path / "data", "test", 60, seed=2, image_size=64, max_objects=2)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "pipeline.batch", str(data / "images"), "--output", str(out), *SHAPES]
    command += ["--batch-size", "2", "--num-workers", "1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while len(list((out / "parts").glob("*.jsonl"))) < 3 and process.poll() is None:
            assert time.monotonic() < deadline, "the run wrote no parts in time"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)  # a real kill: no handler, no clean-up
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    store = OutputStore(out)
    done = store.finished()
    assert 0 < len(done) < 60, "the kill came after the end of the run"
    for part in (out / "parts").glob("*.jsonl"):  # every part is whole: its header names exactly its records
        header, *records = [json.loads(line) for line in part.read_text().splitlines()]
        assert [r["key"] for r in records] == [key for key, _, _ in header["images"]]
        assert all((out / "panoptic" / r["panoptic_png"]).is_file() for r in records)
    assert _run(data / "images", "--output", out, *SHAPES, "--num-workers", "0") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images_skipped"] == len(done) and summary["counts"]["images"] == 60
    files = [line["file"] for line in batch_outputs(out)["captions"]]
    assert files == sorted(set(files)) and len(files) == 60
    assert not list(out.rglob(".*.tmp"))


def test_scores_equal_train_evaluate(split, tmp_path):
    out = tmp_path / "out"
    references = ["--references", split / "instances.json", "--references", split / "captions.txt"]
    assert (
        _run(split / "instances.json", "--output", out, *SHAPES, "--threshold", "0", "--batch-size", "4", *references)
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    segmenter = evaluate_segmenter(load_segmenter("shapes", device="cpu", batch_size=4), split)
    captioner = evaluate_captioner(load_captioner("shapes", device="cpu", batch_size=4), split)
    for name in ("bbox_AP", "bbox_AP50", "bbox_AP75", "segm_AP", "segm_AP50", "segm_AP75"):
        assert metrics["coco_instances"][name] == segmenter[name]
    for name in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "CIDEr"):
        assert metrics["flickr_captions"][name] == captioner[name]
    assert metrics["coco_instances"]["images"] == metrics["flickr_captions"]["images"] == 12
    assert segmenter["segm_AP"] > 0.5 and captioner["BLEU-4"] > 0.5  # a real model, not two zeros
    # The input COCO JSON's image ids and categories are the outputs'.
    assert {d["image_id"] for d in batch_outputs(out)["instances"]} <= set(range(1, 13))


def write_panoptic_references(split: Path, path: Path) -> Path:
    """COCO panoptic references made from a shapes split's instances (their visible masks do not overlap)."""
    coco = json.loads((split / "instances.json").read_text())
    folder = path.with_suffix("")
    folder.mkdir(parents=True)
    from pycocotools import mask as mask_utils

    annotations = []
    for image in coco["images"]:
        ids = np.zeros((image["height"], image["width"]), dtype=np.int64)
        segments = []
        for annotation in (a for a in coco["annotations"] if a["image_id"] == image["id"]):
            rle = {**annotation["segmentation"], "counts": annotation["segmentation"]["counts"].encode()}
            ids[mask_utils.decode(rle) > 0] = annotation["id"]
            segments.append({"id": annotation["id"], "category_id": annotation["category_id"], "iscrowd": 0})
        name = image["file_name"].replace(".png", "_pan.png")
        Image.fromarray(id_to_rgb(ids)).save(folder / name)
        annotations.append({"image_id": image["id"], "file_name": name, "segments_info": segments})
    categories = [{**category, "isthing": 1} for category in coco["categories"]]
    path.write_text(json.dumps({"images": coco["images"], "annotations": annotations, "categories": categories}))
    return path


def test_panoptic_and_coco_caption_references(split, tmp_path):
    panoptic = write_panoptic_references(split, tmp_path / "refs" / "panoptic_test.json")
    coco = json.loads((split / "instances.json").read_text())
    captions = tmp_path / "refs" / "captions_test.json"
    text = dict(line.split(",", 1) for line in (split / "captions.txt").read_text().splitlines()[1:])
    captions.write_text(
        json.dumps(
            {
                "images": coco["images"],
                "annotations": [
                    {"id": i, "image_id": image["id"], "caption": text[image["file_name"]]}
                    for i, image in enumerate(coco["images"])
                ],
            }
        )
    )
    out = tmp_path / "out"
    assert _run(split / "images", "--output", out, *SHAPES, "--references", panoptic, "--references", captions) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    pq = metrics["coco_panoptic"]
    assert pq["images"] == 12 and pq["categories"] >= 2
    assert 0.5 < pq["PQ"] <= pq["SQ"] <= 1.0 and pq["PQ"] == pytest.approx(pq["PQ_things"])
    assert metrics["coco_captions"]["images"] == 12 and metrics["coco_captions"]["BLEU-1"] > 0.5


def test_description_is_kept_when_a_result_has_one(split, shapes_image):
    from pipeline import load_pipeline
    from pipeline.batch.inputs import Item

    pipe = load_pipeline("shapes", "shapes", device="cpu")
    result = pipe(shapes_image, subtask="panoptic")
    record, png = result_record(Item("a", "a.png", 7, "a.png"), result, None)
    assert record["description"] == result["description"] and record["panoptic_png"] == "000000000007.png"
    assert record["description"].startswith(result["caption"])  # the caption, then what is where
    without = {key: value for key, value in result.items() if key != "description"}
    assert "description" not in result_record(Item("a", "a.png", 7, "a.png"), without, None)[0]
    assert Image.open(io.BytesIO(png)).size == shapes_image.size
