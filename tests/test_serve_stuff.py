"""The stuff model in the served app: its menu ("none" included), every endpoint's JSON, the photo page, the batch
job's COCO panoptic files, and one real server called with gradio_client."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gradio_client import Client, handle_file
from helpers import batch_outputs, serve
from PIL import Image

from pipeline import from_json, load_pipeline
from pipeline.serve.cache import ModelCache
from pipeline.serve.intake import RequestError
from pipeline.serve.menus import ModelMenus
from pipeline.serve.service import Service
from pipeline.stuff import STUFF_ID_OFFSET
from train.shapes import STUFF_CLASSES, draw_sample

SKY = STUFF_ID_OFFSET + STUFF_CLASSES.index("sky")


def outdoor(seed: int = 31) -> Image.Image:
    """A picture of the shapes world with stuff backgrounds (seed 31 of the renderer: sky above water, one shape)."""
    return draw_sample(np.random.default_rng(seed), stuff=True).image


@pytest.fixture(scope="module")
def service():
    service = Service(ModelCache(device="cpu"), ModelMenus(["shapes"], ["shapes"], stuff=["shapes"]))
    yield service
    service.close()


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "outdoor.png"
    outdoor().save(path)
    return {"path": str(path)}


def _stuff_of(data):
    return sorted(s["label"] for s in data["panoptic"]["segments"] if not s["isthing"])


def test_the_menu_offers_none_first_and_refuses_anything_else(service):
    assert service.models.menus.names("stuff") == ["none", "shapes"]
    assert ModelMenus(["shapes"], ["shapes"]).names("stuff") == ["none"]
    for bad in ("segformer-b0-ade", "/etc", "../pipeline/weights/shapes-stuff", 3):
        with pytest.raises(RequestError, match=r"unknown stuff .*choose one of \['none', 'shapes'\]"):
            service.models.menus.check("stuff", bad)
    assert [name for _, name in service.photos.menu("stuff")] == ["none", "shapes"]
    assert service.photos.model_note("stuff", "none").startswith("**none**: no stuff model")


def test_every_endpoint_carries_the_stuff(service, photo):
    library = load_pipeline("shapes", "shapes", stuff="shapes", device="cpu")(Image.open(photo["path"]))
    expected = _stuff_of(library)
    assert expected == ["sky", "water"]
    segments = service.endpoints.segment(photo, "shapes", 0.5, "all", "shapes")
    assert _stuff_of(segments) == expected and segments["models"] == {"segmenter": "shapes", "stuff": "shapes"}
    assert SKY in from_json(segments)["semantic"]["labels"]
    plain = service.endpoints.segment(photo, "shapes", 0.5, "all", "none")
    assert _stuff_of(plain) == [] and plain["models"]["stuff"] == "none"
    assert service.endpoints.segment(photo, "shapes", 0.5, "all")["models"]["stuff"] == "none"  # not sent: none
    result, picture = service.endpoints.analyze(photo, "shapes", "shapes", {}, "shapes")
    assert _stuff_of(result) == expected and result["models"]["stuff"] == "shapes"
    assert result["description"] == library["description"] and "Sky at the top" in result["description"]
    assert result["timings_ms"]["stuff"] > 0 and Image.open(picture).size == Image.open(photo["path"]).size
    described = service.endpoints.describe(photo, "shapes", "shapes", {}, "shapes")
    assert described["description"] == library["description"] and described["models"]["stuff"] == "shapes"
    with pytest.raises(RequestError, match="unknown stuff"):
        service.endpoints.analyze(photo, "shapes", "shapes", {}, "sky-net")


def test_the_photo_page_shows_stuff_in_both_views_with_a_legend(service, photo):
    analysis = service.photos.photo(photo, "shapes", "shapes", caption_options={}, threshold=0.5, stuff="shapes")
    shown = service.photos.page(analysis, threshold=0.5, opacity=0.6, views=["semantic", "panoptic"])
    assert "Sky at the top" in shown["description"] and "+ shapes" in shown["timings"]
    semantic = Image.open(shown["pictures"]["semantic"])
    assert semantic.height > analysis.picture.height  # the legend strip below the picture
    again = service.photos.photo(
        photo, "shapes", "shapes", caption_options={}, threshold=0.5, stuff="none", last=analysis
    )
    assert again.reused == ("caption",)  # another stuff model: the segmentation runs again
    assert "Sky" not in service.photos.page(again, threshold=0.5, opacity=0.6, views=[])["description"]
    # The download holds the stuff segments, and a display re-threshold keeps them.
    higher = service.photos.page(analysis, threshold=0.9, opacity=0.6, views=[])
    data = json.loads(open(higher["download"]).read())
    assert _stuff_of(data) == ["sky", "water"]


def test_the_batch_job_writes_stuff_categories(tmp_path):
    from pipeline.batch.__main__ import main

    folder = tmp_path / "photos"
    folder.mkdir()
    for seed in (31, 7):
        outdoor(seed).save(folder / f"{seed}.png")
    code = main([str(folder), "--output", str(tmp_path / "out"), "--captioner", "shapes", "--segmenter", "shapes",
                 "--stuff", "shapes", "--device", "cpu", "--num-workers", "0"])  # fmt: skip
    assert code == 0
    outputs = batch_outputs(tmp_path / "out")
    categories = outputs["panoptic"]["categories"]
    stuff = {c["name"]: c for c in categories if c["isthing"] == 0}
    assert {"sky", "water"} <= set(stuff) and all(c["id"] >= STUFF_ID_OFFSET for c in stuff.values())
    assert {c["name"] for c in categories if c["isthing"] == 1} <= {"circle", "square", "triangle"}
    infos = [s for annotation in outputs["panoptic"]["annotations"] for s in annotation["segments_info"]]
    assert {s["category_id"] for s in infos if not s["isthing"]} <= {c["id"] for c in stuff.values()}
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["models"]["stuff"] == "shapes"


def test_a_real_server_answers_with_stuff(tmp_path):
    demo, url = serve(captioners=("shapes",), segmenters=("shapes",), stuff=("shapes",))
    try:
        path = tmp_path / "outdoor.png"
        outdoor().save(path)
        client = Client(url, verbose=False)
        segments = client.predict(handle_file(str(path)), "shapes", 0.5, "all", "shapes", api_name="/segment")
        assert _stuff_of(segments) == ["sky", "water"]
        default = client.predict(handle_file(str(path)), "shapes", 0.5, "all", api_name="/segment")
        assert _stuff_of(default) == ["sky", "water"]  # the server's default stuff model is the menu's
        result, _ = client.predict(handle_file(str(path)), "shapes", "shapes", {}, "none", api_name="/analyze")
        assert _stuff_of(result) == [] and result["models"]["stuff"] == "none"
        with pytest.raises(Exception, match="unknown stuff"):
            client.predict(handle_file(str(path)), "shapes", 0.5, "all", "../weights", api_name="/segment")
    finally:
        demo.close()
