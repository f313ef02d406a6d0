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
ANSWERER_DIR = WEIGHTS_DIR / "shapes-answerer"
#: The issue's quality bars, measured on a held-out split of a seed never used in training.
BARS = {"BLEU-4": 0.50, "CIDEr": 1.5, "segm_AP": 0.50, "segm_AP50": 0.85}


def test_the_catalog_points_at_the_committed_models():
    assert get_spec("shapes", "captioner").source == str(CAPTIONER_DIR)
    assert get_spec("shapes", "segmenter").source == str(SEGMENTER_DIR)
    assert get_spec("shapes", "stuff").source == str(STUFF_DIR)
    assert get_spec("shapes", "answerer").source == str(ANSWERER_DIR)
    directories = (CAPTIONER_DIR, SEGMENTER_DIR, STUFF_DIR, ANSWERER_DIR)
    files = [path for directory in directories for path in directory.rglob("*") if path.is_file()]
    assert sum(path.stat().st_size for path in files) <= 20 * 1024 * 1024
    assert set(make_shapes_models.MODEL_FILES["stuff"]) <= {path.name for path in STUFF_DIR.iterdir()}
    assert sum(path.stat().st_size for path in STUFF_DIR.iterdir()) <= 2 * 1024 * 1024
    for kind, directory in (("captioner", CAPTIONER_DIR), ("answerer", ANSWERER_DIR)):
        assert set(make_shapes_models.MODEL_FILES[kind]) <= {path.name for path in directory.iterdir()}
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
def test_the_captioner_names_kinds_counts_and_colours_on_both_test_sets(tmp_path):
    """Issue 25's bars: the right kinds with the right counts, and the right colours, in 95% of the held-out split's
    pictures and of the set another renderer draws (train/shapes_shifted.py), as make_shapes_models scores them."""
    from train.shapes_shifted import write_shifted

    count, seed = make_shapes_models.TEST_IMAGES, make_shapes_models.HELDOUT_SEED
    root = shapes.write_split(tmp_path / "heldout", "test", count, seed=seed)
    shifted = write_shifted(tmp_path / "shifted", make_shapes_models.SHIFTED_IMAGES)
    captioner = load_captioner("shapes", device="cpu", batch_size=16)
    figures = make_shapes_models.score_captioner(captioner, root, shifted)
    assert figures["pictures"] == count and figures["shifted_pictures"] == make_shapes_models.SHIFTED_IMAGES, figures
    for prefix in ("", "shifted_"):
        assert figures[f"{prefix}kinds_counts_right"] >= 0.95, figures
        assert figures[f"{prefix}colours_right"] >= 0.95, figures


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


def _ask_split(root, kinds: tuple[str, ...] = ("count", "presence"), answerer: str = "none") -> dict[str, float]:
    """The questions of these kinds (count and presence: the objects'; colour: the answerer's) of a shapes split
    asked through the served /ask's work (a Service, the committed shapes segmenter, the answerer): their VQA
    accuracy, and the share of answers whose instances are exactly the objects of the label asked about."""
    from pipeline.evaluation import read_vqa, vqa_scores
    from pipeline.serve.cache import ModelCache
    from pipeline.serve.menus import ModelMenus
    from pipeline.serve.service import Service

    asked = [entry for entry in read_vqa(root) if entry["question_type"] in kinds]
    answerers = [] if answerer == "none" else [answerer]
    service = Service(ModelCache(device="cpu"), ModelMenus(["shapes"], ["shapes"], answerers=answerers))
    answers, matching = [], 0
    try:
        for entry in asked:
            got = service.endpoints.ask({"path": entry["image"]}, entry["question"], "shapes", answerer, {})
            label = next(name for name in shapes.CATEGORIES if name in entry["question"])
            named = [got["objects"][index]["label"] for index in got["instances"]]
            matching += named == [obj["label"] for obj in got["objects"] if obj["label"] == label]
            answers.append(got["answer"])
    finally:
        service.close()
    return {**vqa_scores(answers, asked), "instances_match": matching / len(asked)}


def test_ask_counts_and_finds_the_shapes_of_a_few_held_out_pictures():
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        root = shapes.write_split(directory, "test", 12, seed=make_shapes_models.HELDOUT_SEED)
        figures = _ask_split(root)
    assert figures["questions"] == 12 * 6 and figures["instances_match"] == 1.0, figures
    # 12 pictures are a smoke check (0.86 and 0.92 here); the bars of 0.95 hold on the 300 of the slow test below.
    assert figures["accuracy_count"] >= 0.8 and figures["accuracy_presence"] >= 0.8, figures


@pytest.mark.slow
def test_ask_meets_the_count_and_presence_bars_on_the_held_out_split(tmp_path):
    root = shapes.write_split(tmp_path, "test", make_shapes_models.TEST_IMAGES, seed=make_shapes_models.HELDOUT_SEED)
    figures = _ask_split(root)
    assert figures["accuracy_count"] >= 0.95 and figures["accuracy_presence"] >= 0.95, figures
    assert figures["instances_match"] == 1.0, figures


@pytest.mark.slow
def test_ask_meets_the_colour_bar_on_the_held_out_split(tmp_path):
    """Colour questions through /ask: the segmenter finds the shape named (or the answer is "not found"), the shapes
    answerer names its colour from the square around it (pipeline.answering.focus); each answer's instances are the
    objects of the shape named."""
    root = shapes.write_split(tmp_path, "test", make_shapes_models.TEST_IMAGES, seed=make_shapes_models.HELDOUT_SEED)
    figures = _ask_split(root, ("colour",), "shapes")
    # Measured 0.928 on these 360 questions (the segmenter found every shape asked about); 0.811 when the answerer
    # saw the whole picture. The bar is 0.85.
    assert figures["accuracy_colour"] >= 0.85 and figures["instances_match"] == 1.0, figures


def test_the_committed_answerer_names_the_example_pictures_colours_through_ask():
    """Colour and shape questions go to the shapes answerer, each answer tied to the objects its question names."""
    from helpers import EXAMPLES

    from pipeline import load_answerer
    from pipeline.serve.cache import ModelCache
    from pipeline.serve.menus import ModelMenus
    from pipeline.serve.service import Service

    assert {p.dtype for p in load_answerer("shapes", device="cpu").model.parameters()} == {torch.float32}
    service = Service(ModelCache(device="cpu"), ModelMenus(["shapes"], ["shapes"], answerers=["shapes"]))
    photo = {"path": str(EXAMPLES / "shapes.png")}  # a yellow triangle, a blue circle and a red triangle
    try:
        colour = service.endpoints.ask(photo, "What colour is the circle?", "shapes", "shapes", {})
        shape = service.endpoints.ask(photo, "What shape is the yellow one?", "shapes", "shapes", {})
    finally:
        service.close()
    assert (colour["answer"], colour["source"], colour["sentence"]) == ("blue", "shapes", "Blue.")
    assert [colour["objects"][index]["label"] for index in colour["instances"]] == ["circle"]
    assert (shape["answer"], shape["source"]) == ("triangle", "shapes")


@pytest.mark.slow
def test_the_committed_answerer_meets_its_bars_on_the_held_out_split(tmp_path):
    from pipeline import load_answerer
    from pipeline.evaluation import evaluate_answerer

    root = shapes.write_split(tmp_path, "test", make_shapes_models.TEST_IMAGES, seed=make_shapes_models.HELDOUT_SEED)
    figures = evaluate_answerer(
        load_answerer("shapes", device="cpu"), root, question_types=make_shapes_models.ANSWER_TYPES
    )
    # Measured 0.811 (colours) and 0.850 (shapes) on these 952 questions, each asked about the whole picture; through
    # /ask a colour question is asked about the square around the shape it names (0.928, the test above).
    assert figures["accuracy_colour"] >= 0.80 and figures["accuracy_shape"] >= 0.75, figures


def test_an_upscaled_captioner_sees_the_larger_grid_as_the_original_interpolates_it(tiny_blip_dir, tmp_path):
    """upscale_captioner's model on 64 px input (an 8 x 8 grid of its 8 px patches) is the 32 px original run with
    transformers' own bicubic position interpolation: the same encoder outputs, every other weight unchanged."""
    from transformers import BlipForConditionalGeneration, BlipProcessor

    upscaled_dir = make_shapes_models.upscale_captioner(tiny_blip_dir, tmp_path / "upscaled", 64)
    original = BlipForConditionalGeneration.from_pretrained(tiny_blip_dir).eval()
    upscaled = BlipForConditionalGeneration.from_pretrained(upscaled_dir).eval()
    assert upscaled.config.vision_config.image_size == 64
    assert BlipProcessor.from_pretrained(upscaled_dir).image_processor.size == {"height": 64, "width": 64}
    old, new = original.state_dict(), upscaled.state_dict()
    key = "vision_model.embeddings.position_embedding"
    assert old[key].shape[1] == 1 + 4 * 4 and new[key].shape[1] == 1 + 8 * 8
    assert torch.equal(new[key][:, 0], old[key][:, 0])  # the class token's
    assert all(torch.equal(new[name], value) for name, value in old.items() if name != key)
    pixels = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = original.vision_model(pixels, interpolate_pos_encoding=True).last_hidden_state
        got = upscaled.vision_model(pixels).last_hidden_state
    assert got.shape == (2, 65, expected.shape[-1])
    torch.testing.assert_close(got, expected)
