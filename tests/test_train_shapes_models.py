"""The committed offline ``shapes`` models: small, loaded by the catalog as float32, and up to the quality bars."""

from __future__ import annotations

import json

import pytest
import torch

from pipeline import load_captioner, load_segmenter, load_stuff
from pipeline.catalog import WEIGHTS_DIR, get_spec
from pipeline.evaluation import evaluate_captioner, evaluate_panoptic, evaluate_segmenter
from train import make_shapes_models, shapes

CAPTIONER_DIR = WEIGHTS_DIR / "shapes-captioner"
SEGMENTER_DIR = WEIGHTS_DIR / "shapes-segmenter"
STUFF_DIR = WEIGHTS_DIR / "shapes-stuff"
#: The issue's quality bars, measured on a held-out split of a seed never used in training.
BARS = {"BLEU-4": 0.50, "CIDEr": 1.5, "segm_AP": 0.50, "segm_AP50": 0.85}


def test_the_catalog_points_at_the_committed_models():
    assert get_spec("shapes", "captioner").source == str(CAPTIONER_DIR)
    assert get_spec("shapes", "segmenter").source == str(SEGMENTER_DIR)
    assert get_spec("shapes", "stuff").source == str(STUFF_DIR)
    folders = (CAPTIONER_DIR, SEGMENTER_DIR, STUFF_DIR)
    files = [path for directory in folders for path in directory.rglob("*") if path.is_file()]
    assert sum(path.stat().st_size for path in files) <= 20 * 1024 * 1024
    assert set(make_shapes_models.MODEL_FILES["stuff"]) <= {path.name for path in STUFF_DIR.iterdir()}
    assert sum(path.stat().st_size for path in STUFF_DIR.iterdir()) <= 2 * 1024 * 1024
    names = {path.name for path in CAPTIONER_DIR.iterdir()}
    assert set(make_shapes_models.MODEL_FILES["captioner"]) <= names
    assert json.loads((SEGMENTER_DIR / "segmenter.json").read_text())["categories"][1:] == list(shapes.CATEGORIES)


@pytest.mark.parametrize("profile", ["full", "fast"])
def test_the_apps_first_example_is_described_right(profile):
    # space/examples/shapes.png is the first example a visitor clicks: a picture of the kind the shapes models were
    # trained on (three shapes at most), drawn by the data set's own generator, so its truth is known.
    import numpy as np
    from helpers import EXAMPLES
    from PIL import Image

    sample = shapes.draw_sample(np.random.default_rng(17), image_size=384)
    example = Image.open(EXAMPLES / "shapes.png").convert("RGB")
    assert np.array_equal(np.asarray(example), np.asarray(sample.image))
    caption = load_captioner("shapes", device="cpu", profile=profile)(example)["caption"]
    assert caption.lower().rstrip(".") in shapes.describe(sample.objects)
    found = load_segmenter("shapes", device="cpu", profile=profile)(example)["instances"]
    assert sorted(obj["label"] for obj in found) == sorted(shape.category for shape in sample.objects)


def test_committed_models_load_as_float32_and_answer_in_the_contract_form(shapes_image):
    captioner = load_captioner("shapes", device="cpu")
    segmenter = load_segmenter("shapes", device="cpu")
    assert {p.dtype for p in captioner.model.parameters()} == {torch.float32}  # stored as float16
    assert {p.dtype for p in segmenter.model.parameters()} == {torch.float32}
    caption = captioner(shapes_image)["caption"]
    assert caption and set(caption.lower().rstrip(".").split()) <= set(shapes.vocabulary())
    result = segmenter(shapes_image)
    assert all(obj["label"] in shapes.CATEGORIES for obj in result["instances"])


@pytest.mark.slow
def test_committed_models_meet_the_quality_bars_on_a_held_out_split(tmp_path):
    root = shapes.write_split(tmp_path, "test", make_shapes_models.TEST_IMAGES, seed=make_shapes_models.HELDOUT_SEED)
    assert make_shapes_models.HELDOUT_SEED != make_shapes_models.DATA_SEED
    captions = evaluate_captioner(load_captioner("shapes", device="cpu", batch_size=16), root)
    instances = evaluate_segmenter(load_segmenter("shapes", device="cpu", batch_size=8), root)
    figures = {**captions, **instances}
    assert figures["BLEU-4"] >= BARS["BLEU-4"], figures
    assert figures["CIDEr"] >= BARS["CIDEr"], figures
    assert figures["segm_AP"] >= BARS["segm_AP"], figures
    assert figures["segm_AP50"] >= BARS["segm_AP50"], figures


@pytest.mark.slow
def test_the_fused_view_meets_the_stuff_bars_on_a_held_out_split(tmp_path):
    """PQ for stuff at least 0.8 on the held-out stuff split, and the things' PQ as without a stuff model."""
    count, seed = make_shapes_models.STUFF_TEST_IMAGES, make_shapes_models.HELDOUT_SEED
    root = shapes.write_split(tmp_path, "test", count, seed=seed, stuff=True)
    segmenter = load_segmenter("shapes", device="cpu", batch_size=8)
    fused = evaluate_panoptic(segmenter, load_stuff("shapes", device="cpu", batch_size=8), root)
    things_only = evaluate_panoptic(segmenter, None, root)
    assert fused["PQ_stuff"] >= 0.8 and fused["categories_stuff"] == 5, fused
    assert fused["PQ_things"] >= things_only["PQ_things"] - 1e-9, (fused, things_only)
