"""train.shape_words (kinds, counts and colours a shapes caption names) and train.shapes_shifted (a shapes test set
in another rendering), and train.evaluate --shapes reporting them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from train import evaluate
from train.shape_words import colours, mentions, shape_accuracy
from train.shapes import describe
from train.shapes_shifted import draw_shifted, write_shifted


@pytest.mark.parametrize(
    "caption, kinds, named",
    [
        ("two red squares and a blue circle", {"square": 2, "circle": 1}, {"red", "blue"}),
        ("A red circle to the left of a blue square.", {"circle": 1, "square": 1}, {"red", "blue"}),
        ("three shapes a red circle a blue square and a green triangle", {"circle": 1, "square": 1, "triangle": 1},
         {"red", "blue", "green"}),
        ("one shape a yellow triangle", {"triangle": 1}, {"yellow"}),
        ("triangles", {"triangle": 1}, set()),
        ("a picture of nothing", {}, set()),
    ],
)  # fmt: skip
def test_a_caption_is_read_as_kinds_with_counts_and_colours(caption, kinds, named):
    assert dict(mentions(caption)) == kinds and colours(caption) == named


def test_shape_accuracy_scores_each_picture_against_its_first_reference():
    references = {"a.png": ["a red circle to the left of a blue square"], "b.png": ["a green triangle"]}
    candidates = {"a.png": "a blue square and a red circle", "b.png": "a green square"}
    assert shape_accuracy(references, candidates) == {"kinds_counts_right": 0.5, "colours_right": 1.0, "pictures": 2}
    with pytest.raises(ValueError, match="no picture"):
        shape_accuracy(references, {"c.png": "a red circle"})


def test_the_shifted_set_is_another_rendering_with_the_same_captions(tmp_path):
    sample = draw_shifted(np.random.default_rng(3))
    pixels = np.asarray(sample.image, dtype=np.float32)
    background = pixels[~np.any([shape.mask for shape in sample.objects], axis=0)]
    assert background.mean() > 140  # light, unlike most training backgrounds (50-200)
    assert all(36 * 36 * 0.5 <= shape.mask.sum() <= 60 * 60 for shape in sample.objects)
    root = write_shifted(tmp_path / "shifted", 4, seed=1)
    coco = json.loads((root / "instances.json").read_text())
    assert len(coco["images"]) == 4 and all(image["file_name"].endswith(".jpg") for image in coco["images"])
    first = Image.open(root / "images" / coco["images"][0]["file_name"])
    assert first.format == "JPEG" and first.size == (coco["images"][0]["width"], coco["images"][0]["height"])
    lines = (root / "captions.txt").read_text().splitlines()
    assert lines[0] == "image,caption" and len(lines) == 1 + 4 * len(describe(sample.objects))


def test_evaluate_reports_kinds_counts_and_colours_on_a_shapes_set(tmp_path, capsys):
    root = write_shifted(tmp_path / "shifted", 6, seed=2)
    metrics = evaluate.main(["captioner", "shapes", str(root), "--device", "cpu", "--no_meteor", "--shapes"])
    assert 0.0 <= metrics["kinds_counts_right"] <= 1.0 and 0.0 <= metrics["colours_right"] <= 1.0
    assert metrics["pictures"] == 6 and "kinds_counts_right" in capsys.readouterr().out
