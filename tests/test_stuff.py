"""Stuff: the semantic model behind the catalog, its fusion into the views, the words, and the offline shapes model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import ROOT, TINY_STUFF_LABELS, install_hub_stand_in, save_tiny_segformer
from PIL import Image

from pipeline import (
    ModelUnavailableError,
    add_stuff,
    availability,
    from_json,
    get_spec,
    list_models,
    load_pipeline,
    load_stuff,
    to_json,
    with_threshold,
)
from pipeline.describe import describe, ground_caption, locate_stuff, stuff_sentence
from pipeline.masks import MaskCrop
from pipeline.panoptic import views_from_instances
from pipeline.stuff import STUFF_ID_OFFSET, stuff_labels
from train.shapes import STUFF_CLASSES, _stuff_texture, draw_sample

SKY = STUFF_ID_OFFSET + STUFF_CLASSES.index("sky")
GRASS = STUFF_ID_OFFSET + STUFF_CLASSES.index("grass")


@pytest.fixture(scope="module")
def tiny_sky(tmp_path_factory):
    """A tiny random SegFormer of ADE20K-like labels that calls every pixel "sky" (index 2)."""
    return save_tiny_segformer(tmp_path_factory.mktemp("segformer"), favourite=TINY_STUFF_LABELS.index("sky"))


def test_catalog_offers_the_released_model_and_the_offline_one():
    names = [spec.name for spec in list_models("stuff")]
    assert names[:2] == ["segformer-b0-ade", "shapes"]
    assert get_spec("segformer-b0-ade", "stuff").source == "nvidia/segformer-b0-finetuned-ade-512-512"
    assert get_spec("owner/some-segformer", "stuff").source == "owner/some-segformer"  # hub ids, as captioners
    assert availability("shapes", "stuff") == (True, "")
    assert availability("none", "stuff") == (True, "")
    with pytest.raises(ValueError, match="unknown stuff 'sky-net'"):
        get_spec("sky-net", "stuff")
    with pytest.raises(ValueError, match="pass None instead"):
        load_stuff("none")


def test_only_stuff_labels_are_kept():
    ade = {0: "wall", 1: "building", 2: "sky", 12: "person", 20: "car", 21: "water", 26: "sea", 46: "sand"}
    assert stuff_labels(ade) == {0: "wall", 1: "building", 2: "sky", 21: "water", 26: "sea", 46: "sand"}
    assert stuff_labels({0: "lava", 1: "snow"}) == {0: "lava", 1: "snow"}  # no ADE20K name: all of them
    assert stuff_labels({0: "sky", 1: "shape"}, listed=["sky"]) == {0: "sky"}


def test_a_directory_loads_through_the_real_loader_and_matches_the_model(tiny_sky):
    stuff = load_stuff(tiny_sky, device="cpu")
    assert stuff.categories == ["grass", "sky", "wall"]  # person and car are things: Mask R-CNN's
    image = Image.new("RGB", (96, 72), (120, 170, 230))
    result = stuff(image)
    assert result["map"].shape == (72, 96) and result["map"].dtype == np.int32
    assert result["labels"] == {STUFF_ID_OFFSET + 2: "sky"}
    # Parity with the model called directly: its argmax, scaled to the picture.
    inputs = stuff.processor(images=image, return_tensors="pt")
    with torch.inference_mode():
        logits = stuff.model(**inputs).logits
        scaled = torch.nn.functional.interpolate(logits, size=(72, 96), mode="bilinear", align_corners=False)
    probabilities = scaled.softmax(dim=1)[0]
    assert (result["map"] == STUFF_ID_OFFSET + probabilities.argmax(0).numpy()).all()
    assert result["scores"][STUFF_ID_OFFSET + 2] == pytest.approx(float(probabilities[2].mean()), abs=1e-4)


def test_a_model_of_thing_labels_only_keeps_no_pixel(tmp_path):
    directory = save_tiny_segformer(tmp_path / "people", favourite=TINY_STUFF_LABELS.index("person"))
    result = load_stuff(directory, device="cpu")(Image.new("RGB", (40, 30)))
    assert result["labels"] == {} and not result["map"].any()


def test_the_released_default_loads_through_the_hub_path(tmp_path, tiny_sky):
    """segformer-b0-ade, a SegformerForSemanticSegmentation like the released one, found in the Hugging Face cache
    (a random tiny stand-in of the same class), offline, through the catalog's own loader."""
    install_hub_stand_in(tmp_path / "hf", "nvidia/segformer-b0-finetuned-ade-512-512", tiny_sky)
    code = (
        "from pipeline import availability, load_stuff; from PIL import Image\n"
        "print(availability('segformer-b0-ade', 'stuff'))\n"
        "stuff = load_stuff('segformer-b0-ade', device='cpu')\n"
        "print(type(stuff.model).__name__, stuff.name, stuff(Image.new('RGB', (32, 24)))['labels'])\n"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-2:] == [
        "(True, '')",
        f"SegformerForSemanticSegmentation segformer-b0-ade {{{STUFF_ID_OFFSET + 2}: 'sky'}}",
    ]


def test_a_hub_id_not_here_fails_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="stuff model 'owner/not-downloaded'"):
        load_stuff("owner/not-downloaded", device="cpu")


def _things(size=(8, 6)):
    """One cat of score 0.9 over the 3x3 square at the top left of a width x height picture."""
    cat = {"label": "cat", "label_id": 17, "score": 0.9, "mask": MaskCrop(np.ones((3, 3), bool), 0, 0, *size)}
    return {"instances": [cat], **views_from_instances([cat], size)}


def test_things_come_first_and_stuff_fills_what_is_free():
    things = _things()
    stuff_map = np.zeros((6, 8), dtype=np.int32)
    stuff_map[:3] = SKY  # the top half is sky (under the cat too)
    stuff_map[3:] = GRASS
    stuff_map[5, 7] = STUFF_ID_OFFSET + 4  # one stray pixel of wall: too small to keep
    regions = {"map": stuff_map, "labels": {SKY: "sky", GRASS: "grass", STUFF_ID_OFFSET + 4: "wall"},
               "scores": {SKY: 0.9, GRASS: 0.8, STUFF_ID_OFFSET + 4: 0.3}}  # fmt: skip
    fused = add_stuff(things, regions, area_min=2)
    segments = fused["panoptic"]["segments"]
    assert [(s["label"], s["isthing"], s["score"], s["area"]) for s in segments] == [
        ("cat", True, 0.9, 9),
        ("sky", False, 0.9, 15),  # 24 sky pixels less the cat's 9
        ("grass", False, 0.8, 23),
    ]
    panoptic_map, semantic_map = fused["panoptic"]["map"], fused["semantic"]["map"]
    assert (panoptic_map[:3, :3] == 1).all() and (semantic_map[:3, :3] == 17).all()
    assert (semantic_map[:3, 3:] == SKY).all() and semantic_map[5, 7] == 0  # the stray wall pixel is unlabeled
    assert fused["semantic"]["labels"] == {17: "cat", SKY: "sky", GRASS: "grass"}
    assert things["panoptic"]["segments"][-1]["label"] == "cat"  # the input is not changed
    # The JSON form carries the stuff segments and the map.
    back = from_json(json.loads(json.dumps(to_json(fused))))
    assert back["panoptic"]["segments"] == segments and (back["panoptic"]["map"] == panoptic_map).all()


def test_a_display_rethreshold_keeps_the_stuff():
    things = _things()
    stuff_map = np.full((6, 8), GRASS, dtype=np.int32)
    fused = add_stuff(things, {"map": stuff_map, "labels": {GRASS: "grass"}, "scores": {GRASS: 0.7}}, area_min=2)
    higher = with_threshold(fused, 0.95)  # the cat goes; the grass stays where it was
    assert [s["label"] for s in higher["panoptic"]["segments"]] == ["grass"]
    assert higher["panoptic"]["segments"][0]["score"] == 0.7 and higher["panoptic"]["segments"][0]["area"] == 39
    assert (higher["semantic"]["map"][:3, :3] == 0).all() and (higher["semantic"]["map"][3:] == GRASS).all()
    same = with_threshold(fused, 0.5)
    assert same["panoptic"]["segments"] == fused["panoptic"]["segments"]
    assert (same["semantic"]["map"] == fused["semantic"]["map"]).all()


def test_the_description_says_where_the_stuff_is_and_the_caption_links_it():
    panoptic_map = np.zeros((90, 120), dtype=np.int32)
    panoptic_map[:40] = 2
    panoptic_map[60:] = 3
    panoptic_map[45:55, 50:70] = 1
    segments = [
        {"id": 1, "label": "circle", "label_id": 1, "isthing": True, "score": 0.9, "area": 200},
        {"id": 2, "label": "sky", "label_id": SKY, "isthing": False, "score": 0.9, "area": 4800},
        {"id": 3, "label": "grass", "label_id": GRASS, "isthing": False, "score": 0.8, "area": 3600},
    ]
    panoptic = {"map": panoptic_map, "segments": segments}
    circle = {"label": "circle", "score": 0.9, "box": [50, 45, 70, 55], "area": 200}
    assert [(p["label"], p["position"]) for p in locate_stuff(panoptic)] == [("sky", "at the top"),
                                                                             ("grass", "at the bottom")]  # fmt: skip
    caption = "A circle on the lawn by the sea under the sky."
    words = describe(caption, [circle], (120, 90), labels=["circle"], panoptic=panoptic,
                     stuff_labels=["grass", "sand", "sky", "wall", "water"])  # fmt: skip
    assert words["description"] == (
        "A circle on the lawn by the sea under the sky. 1 small circle in the centre. "
        "Sky at the top, grass at the bottom."
    )
    assert [(w["word"], w["label"], w["instances"], w.get("segments")) for w in words["grounding"]] == [
        ("circle", "circle", [0], None),
        ("lawn", "grass", [], [3]),
        ("sea", "water", [], []),  # named, not found: the same hint as an object word
        ("sky", "sky", [], [2]),
    ]
    # The JSON form of the map reads the same; without a stuff model nothing changes.
    assert locate_stuff(to_json({"panoptic": panoptic})["panoptic"]) == locate_stuff(panoptic)
    assert "sea" not in [w["word"] for w in ground_caption(caption, [circle], ["circle"])]
    # max_objects bounds the regions named too; small regions are never named.
    assert stuff_sentence(locate_stuff(panoptic), 1) == "Sky at the top."
    assert stuff_sentence([{"label": "wall", "position": "on the left", "share": 0.01}]) == ""


def _outdoor_picture(seed: int = 0) -> tuple[Image.Image, np.ndarray]:
    """A held-out style check picture, drawn here (not by the data set's layout code): sky over the top 45%, grass
    below, and a few shapes of the shapes world in the grass and the sky."""
    rng = np.random.default_rng(seed)
    size = 128
    pixels = np.where(
        (np.arange(size) < 0.45 * size)[:, None, None],
        _stuff_texture(rng, "sky", size),
        _stuff_texture(rng, "grass", size),
    )
    labels = np.where((np.arange(size) < 0.45 * size)[:, None], SKY, GRASS) * np.ones((1, size), dtype=np.int64)
    shapes = draw_sample(np.random.default_rng(seed + 100)).objects
    colors = {"red": (215, 35, 35), "blue": (40, 70, 215), "yellow": (235, 210, 40), "purple": (140, 50, 175)}
    for shape, color in zip(shapes, colors.values()):
        pixels[shape.mask] = color
        labels[shape.mask] = 0
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), labels


def test_held_out_sky_over_grass_comes_back_as_stuff_and_words():
    """The committed shapes stuff model on a picture laid out by this test: sky above, grass below, shapes on both."""
    image, truth = _outdoor_picture()
    pipe = load_pipeline("shapes", "shapes", stuff="shapes", device="cpu")
    result = pipe(image)
    stuff = {s["label"]: s for s in result["panoptic"]["segments"] if not s["isthing"]}
    assert set(stuff) == {"sky", "grass"}
    for label, label_id in (("sky", SKY), ("grass", GRASS)):
        region = result["panoptic"]["map"] == stuff[label]["id"]
        wanted = truth == label_id
        covered = np.count_nonzero(region & wanted) / np.count_nonzero(wanted)
        assert covered > 0.9, (label, covered)
        assert 0.5 < stuff[label]["score"] <= 1.0 and stuff[label]["label_id"] == label_id
    assert result["description"].endswith("Sky at the top, grass at the bottom.")
    assert result["models"]["stuff"] == "shapes" and result["timings_ms"]["stuff"] > 0
    assert {SKY: "sky", GRASS: "grass"}.items() <= result["semantic"]["labels"].items()


def test_a_plain_background_has_no_stuff():
    """The shapes stuff model learnt the old plain backgrounds as no stuff: the old example reads as it did."""
    pipe = load_pipeline("shapes", "shapes", stuff="shapes", device="cpu")
    plain = load_pipeline("shapes", "shapes", device="cpu")
    example = ROOT / "space" / "examples" / "shapes.png"
    with_stuff, without = pipe(example), plain(example)
    assert [s for s in with_stuff["panoptic"]["segments"] if not s["isthing"]] == []
    assert with_stuff["description"] == without["description"]


def test_the_fast_profiles_cap_the_input_size(tmp_path):
    from pipeline.builders import build_segformer
    from pipeline.catalog import FAST_STUFF_SIDE

    model, processor = build_segformer(["sky", "grass"], image_size=512, hidden_sizes=[8, 16, 24, 32],
                                       decoder_hidden_size=16)  # fmt: skip
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    fast = load_stuff(str(tmp_path), device="cpu", profile="fast")
    inputs = fast.preprocess(Image.new("RGB", (640, 480)))
    assert tuple(inputs["pixel_values"].shape) == (3, FAST_STUFF_SIDE, FAST_STUFF_SIDE)
    full = load_stuff(str(tmp_path), device="cpu", profile="full")
    assert tuple(full.preprocess(Image.new("RGB", (640, 480)))["pixel_values"].shape) == (3, 512, 512)
    with pytest.raises(ValueError, match="profile must be one of"):
        load_stuff(str(tmp_path), device="cpu", profile="fastest")
