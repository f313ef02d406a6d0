"""The synthetic shapes generator: deterministic, COCO JSON that pycocotools reads, captions that say what is there."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from pipeline.caption_files import read_captions
from train import shapes
from train.shape_words import colours, mentions


def _digest(root) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_generator_is_deterministic_and_seeds_differ(tmp_path):
    shapes.main(["--output_dir", str(tmp_path / "a"), "--train", "6", "--val", "2", "--test", "2"])
    shapes.main(["--output_dir", str(tmp_path / "b"), "--train", "6", "--val", "2", "--test", "2"])
    shapes.main(["--output_dir", str(tmp_path / "c"), "--seed", "1", "--train", "6", "--val", "2", "--test", "2"])
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    first = (tmp_path / "a" / "train" / "images" / "000000.png").read_bytes()
    assert first != (tmp_path / "c" / "train" / "images" / "000000.png").read_bytes()
    # Splits of one seed draw different images too.
    assert first != (tmp_path / "a" / "test" / "images" / "000000.png").read_bytes()


def test_coco_annotations_load_in_pycocotools_and_match_the_captions(tmp_path):
    root = shapes.write_split(tmp_path, "train", 12, seed=3)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(root / "instances.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(shapes.CATEGORIES)
    assert len(coco.getImgIds()) == 12
    captions = read_captions(root / "captions.txt")
    assert captions.layout == "captions.txt" and captions.skipped == 0
    for image_id in coco.getImgIds():
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        assert 1 <= len(annotations) <= 3
        for annotation in annotations:
            mask = coco.annToMask(annotation)
            assert mask.shape == (128, 128)
            assert mask.sum() == annotation["area"] > 0
            x, y, w, h = annotation["bbox"]
            ys, xs = np.nonzero(mask)
            assert (x, y, x + w, y + h) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            assert annotation["iscrowd"] == 0
        references = captions.captions[coco.imgs[image_id]["file_name"]]
        assert len(references) == 5
        named = sorted(coco.cats[a["category_id"]]["name"] for a in annotations)
        # The plainest phrasing lists every shape: "a red circle and a blue square".
        words = references[1].split()
        assert sorted(w for w in words if w in shapes.CATEGORIES) == named


def test_describe_orders_shapes_left_to_right():
    blank = np.zeros((1, 1), bool)
    objects = [
        shapes.ShapeObject("circle", "red", blank, 10.0),
        shapes.ShapeObject("square", "blue", blank, 50.0),
        shapes.ShapeObject("triangle", "green", blank, 90.0),
    ]
    phrasings = shapes.describe(objects)
    assert phrasings[0] == "a red circle to the left of a blue square and a green triangle"
    assert phrasings[3] == "three shapes a red circle a blue square and a green triangle"
    assert phrasings[4] == "a green triangle to the right of a red circle and a blue square"
    assert shapes.describe(objects[:1])[0] == "a red circle"
    vocabulary = set(shapes.vocabulary())
    assert all(set(text.split()) <= vocabulary for text in phrasings)


def test_grouped_captions_count_each_kind_in_words():
    blank = np.zeros((1, 1), bool)
    objects = [
        shapes.ShapeObject("triangle", "yellow", blank, 10.0),
        shapes.ShapeObject("circle", "blue", blank, 50.0),
        shapes.ShapeObject("triangle", "red", blank, 90.0),
    ]
    text = shapes.grouped(objects)
    assert text == "a blue circle and two triangles in red and yellow"
    assert mentions(text) == mentions(shapes.describe(objects)[0])  # the same truth as the five phrasings
    assert mentions(text) == {"circle": 1, "triangle": 2} and colours(text) == {"blue", "red", "yellow"}
    three = [shapes.ShapeObject("square", colour, blank, x) for colour, x in (("purple", 1), ("red", 5), ("blue", 9))]
    assert shapes.grouped(three) == "three squares in red blue and purple"
    assert set(shapes.grouped(three).split()) <= set(shapes.vocabulary(grouped=True))
    # The grouped captions' words come last: the plain vocabulary (the committed captioner's) is a prefix.
    plain = shapes.vocabulary()
    assert shapes.vocabulary(grouped=True) == [*plain, "in", "circles", "squares", "triangles"]


def test_varied_splits_vary_the_rendering_and_keep_masks_and_captions_true(tmp_path):
    root = shapes.write_split(tmp_path, "train", 24, seed=5, varied=True, grouped_captions=True)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(root / "instances.json"))
    captions = read_captions(root / "captions.txt").captions
    sizes = set()
    for image_id, entry in coco.imgs.items():
        image = Image.open(root / "images" / entry["file_name"])
        assert image.size == (entry["width"], entry["height"])
        sizes.add(image.size)
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        assert all(coco.annToMask(a).shape == (entry["height"], entry["width"]) for a in annotations)
        (text,) = captions[entry["file_name"]]  # one phrasing: the grouped one
        named = sorted(coco.cats[a["category_id"]]["name"] for a in annotations)
        assert sorted(mentions(text).elements()) == named
    assert len(sizes) > 10  # picture sizes and aspects vary
    with pytest.raises(ValueError, match="varied or stuff"):
        shapes.write_split(tmp_path, "val", 2, varied=True, stuff=True)


def test_every_layout_round_trips(tmp_path):
    captions = {"000000.png": ["a red circle", "a picture of a red circle"], "000001.png": ["a blue square"]}
    for layout, name in shapes.CAPTION_LAYOUTS.items():
        parsed = read_captions(shapes.write_captions(tmp_path / name, captions, layout))
        assert parsed.captions == captions and parsed.skipped == 0


def test_bad_arguments_name_the_value(tmp_path):
    with pytest.raises(ValueError, match="max_objects must be between 1 and 4, got 5"):
        shapes.draw_sample(np.random.default_rng(0), max_objects=5)
    with pytest.raises(ValueError, match="split must be one of .* got 'dev'"):
        shapes.write_split(tmp_path, "dev", 2)
    with pytest.raises(ValueError, match="layout must be one of .* got 'tsv'"):
        shapes.write_captions(tmp_path / "x.txt", {}, "tsv")
    assert json.loads(json.dumps(shapes.vocabulary()))  # plain strings only


def test_questions_and_answers_come_from_the_pictures_truth_in_the_vqa_layout(tmp_path):
    from pipeline.evaluation import read_vqa, vqa_scores

    root = shapes.write_split(tmp_path, "val", 6, seed=2)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(root / "instances.json"))
    asked = read_vqa(root)
    for entry in asked:
        image_id = next(i["id"] for i in coco.imgs.values() if entry["image"].endswith(i["file_name"]))
        labels = [coco.cats[a["category_id"]]["name"] for a in coco.imgToAnns[image_id]]
        assert len(entry["answers"]) == 10 and len(set(entry["answers"])) == 1
        if entry["question_type"] == "count":
            assert entry["answers"][0] == str(labels.count(entry["question"].split()[2][:-1]))
        if entry["question_type"] == "presence":
            assert entry["answers"][0] == ("yes" if entry["question"][11:-1] in labels else "no")
        if entry["question_type"] in ("colour", "shape"):
            assert entry["answers"][0] in (*shapes.COLORS, *shapes.CATEGORIES)
    kinds = {entry["question_type"] for entry in asked}
    assert kinds == {"count", "presence", "colour", "shape"} and len(asked) >= 6 * 7
    assert vqa_scores([entry["answers"][0] for entry in asked], asked)["accuracy"] == 1.0
