"""The app served for real on 127.0.0.1 and called with gradio_client; answers checked against the pipelines.

Tiny random models are built here: one captioner, and two segmenters whose classifier bias makes them sure of one
class each ("circle" or "square"), so that results are deterministic, non-empty and tell the two apart.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from gradio_client import handle_file
from helpers import EXAMPLES, ROOT, TEST_ANSWERER, TEST_CAPTIONER, draw_shapes, serve
from PIL import Image

from pipeline import (
    availability,
    best_available,
    from_json,
    load_answerer,
    load_captioner,
    load_segmenter,
    to_json,
)


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    return EXAMPLES / "cat.jpg"


def test_view_api_documents_every_endpoint(client):
    info = client.view_api(return_format="dict", print_info=False)
    endpoints = info["named_endpoints"]
    assert {"/caption", "/segment", "/analyze", "/describe", "/ask", "/compare", "/live_frame"} <= set(endpoints)
    segment_parameters = [p["parameter_name"] for p in endpoints["/segment"]["parameters"]]
    assert segment_parameters == ["image", "segmenter", "threshold", "subtask", "stuff"]
    defaults = {p["parameter_name"]: p.get("parameter_default") for p in endpoints["/segment"]["parameters"]}
    assert defaults["threshold"] == 0.5 and defaults["subtask"] == "all"
    # UI-only events are private: nothing but the documented endpoints is offered to scripts.
    assert set(endpoints) == {"/caption", "/segment", "/analyze", "/describe", "/ask", "/compare", "/live_frame"}
    ask = {p["parameter_name"]: p.get("parameter_default") for p in endpoints["/ask"]["parameters"]}
    assert list(ask) == ["image", "question", "segmenter", "answerer", "options"]
    assert ask["answerer"] == TEST_ANSWERER and ask["options"] == {"threshold": 0.5}
    assert (
        "source" in endpoints["/ask"]["description"]
        and "threshold: a number from 0 to 1" in (endpoints["/ask"]["description"])
    )
    # Each endpoint's description gives the bounds of its options.
    assert "num_beams: an integer from 1 to 8" in endpoints["/analyze"]["description"]


def test_caption_matches_the_pipeline(client, photo, app_models):
    expected = load_captioner(app_models["captioner"], device="cpu")(Image.open(photo))["caption"]
    assert client.predict(handle_file(str(photo)), TEST_CAPTIONER, api_name="/caption") == expected


@pytest.mark.parametrize("subtask", ["all", "panoptic"])
def test_segment_matches_the_pipeline(client, photo, app_models, subtask):
    answer = client.predict(handle_file(str(photo)), "test-squares", 0.3, subtask, api_name="/segment")
    direct = load_segmenter(app_models["test-squares"], device="cpu")(
        Image.open(photo).convert("RGB"), threshold=0.3, subtask=None if subtask == "all" else subtask
    )
    expected = to_json(direct)
    assert [i["label"] for i in answer["instances"]] == [i["label"] for i in expected["instances"]] == ["square"] * 4
    assert [i["mask"] for i in answer["instances"]] == [i["mask"] for i in expected["instances"]]
    assert np.allclose([i["score"] for i in answer["instances"]], [i["score"] for i in expected["instances"]])
    assert np.allclose([i["box"] for i in answer["instances"]], [i["box"] for i in expected["instances"]])
    decoded = from_json(answer)
    assert np.array_equal(decoded["panoptic"]["map"], direct["panoptic"]["map"])
    assert ("semantic" in answer) == (subtask == "all")


def test_analyze_returns_the_output_contract_and_an_annotated_image(client, photo, app_models):
    result, annotated = client.predict(
        handle_file(str(photo)),
        TEST_CAPTIONER,
        "test-circles",
        {"threshold": 0.3, "max_new_tokens": 8},
        api_name="/analyze",
    )
    image = Image.open(photo).convert("RGB")
    caption = load_captioner(app_models["captioner"], device="cpu")(image, max_new_tokens=8)["caption"]
    segments = load_segmenter(app_models["test-circles"], device="cpu")(image, threshold=0.3)
    assert result["caption"] == caption
    assert result["models"] == {"captioner": TEST_CAPTIONER, "segmenter": "test-circles", "stuff": "none"}
    assert set(result["timings_ms"]) >= {"caption", "segment", "total"}
    assert [i["mask"] for i in result["instances"]] == [i["mask"] for i in to_json(segments)["instances"]]
    assert np.array_equal(from_json(result)["semantic"]["map"], segments["semantic"]["map"])
    drawn = Image.open(annotated)
    assert drawn.size == image.size
    assert not np.array_equal(np.asarray(drawn.convert("RGB")), np.asarray(image))  # the overlay is there


def test_live_frame_endpoint_keeps_a_running_caption_and_counts_frames(client, photo, app_models):
    answers = [
        client.predict(handle_file(str(photo)), TEST_CAPTIONER, "test-circles", 0.3, api_name="/live_frame")
        for _ in range(3)
    ]
    frame, caption, stats = answers[-1]
    assert stats["frames_processed"] == 3
    assert stats["objects"] == "4 circles"
    assert stats["fps"] > 0
    assert max(Image.open(frame).size) <= 480
    expected = load_captioner(app_models["captioner"], device="cpu")(Image.open(photo))["caption"]
    # The caption runs beside the frames, so it may arrive a frame late; by the third it is there.
    assert expected[:20].lower() in caption.lower()


def test_live_frames_come_from_their_own_ring_not_gradios_cache(app_models, photo):
    """/live_frame's annotated frames are written once, into the live view's bounded ring (in memory where the
    machine has room), and served from there: none is copied into Gradio's cache, where a script's loop would add
    a file every call for an hour. Closing the service removes the ring."""
    from gradio.utils import get_upload_folder
    from gradio_client import Client

    from pipeline.serve.files import SHARED_MEMORY
    from pipeline.stream import LIVE_MAX_SIDE, scale_to_fit

    demo, url = serve(captioners=(TEST_CAPTIONER,), segmenters=("test-circles",))
    service = demo.service
    ring = service.live.files.folder
    cache = Path(get_upload_folder())
    before = set(cache.rglob("frame.jpg"))
    try:
        client = Client(url, verbose=False)
        frames = [
            client.predict(handle_file(str(photo)), TEST_CAPTIONER, "test-circles", 0.3, api_name="/live_frame")[0]
            for _ in range(3)
        ]
    finally:
        demo.close()
    shown = scale_to_fit(Image.open(photo), LIVE_MAX_SIDE).size
    assert [Image.open(frame).size for frame in frames] == [shown] * 3  # downloaded whole by the client
    assert len(list(ring.rglob("frame.jpg"))) == 3
    assert set(cache.rglob("frame.jpg")) == before
    assert ring.parent in (SHARED_MEMORY, Path(tempfile.gettempdir()))
    service.close()
    assert not ring.exists()


def test_ask_answers_from_the_objects_and_the_answerer(client, app_models, tmp_path):
    picture = tmp_path / "shapes.png"
    draw_shapes(160, 120, seed=3).save(picture)
    image = Image.open(picture).convert("RGB")
    squares = load_segmenter(app_models["test-squares"], device="cpu")(image, threshold=0.2)["instances"]
    assert squares, "the test segmenter must find its squares"
    counted = client.predict(
        handle_file(str(picture)), "How many squares?", "test-squares", "none", {"threshold": 0.2}, api_name="/ask"
    )
    assert (counted["answer"], counted["source"]) == (str(len(squares)), "objects")
    assert counted["instances"] == list(range(len(squares))) and len(counted["objects"]) == len(squares)
    assert counted["sentence"].startswith(f"There {'is' if len(squares) == 1 else 'are'} {len(squares)} square")
    colour = client.predict(
        handle_file(str(picture)),
        "What colour is the square?",
        "test-squares",
        TEST_ANSWERER,
        {"threshold": 0.2},
        api_name="/ask",
    )
    direct = load_answerer(app_models["answerer"], device="cpu")(image, question="What colour is the square?")
    assert colour["source"] == TEST_ANSWERER and colour["answer"] == direct["answer"]
    assert set(colour) == {"question", "answer", "sentence", "source", "instances", "objects"}
    missing = client.predict(handle_file(str(picture)), "What colour is the circle?", "test-squares", api_name="/ask")
    assert (missing["answer"], missing["sentence"], missing["source"]) == ("not found", "I see no circle.", "objects")
    with pytest.raises(Exception, match="question must not be empty"):
        client.predict(handle_file(str(picture)), "  ", api_name="/ask")
    with pytest.raises(Exception, match="at most 200 characters"):
        client.predict(handle_file(str(picture)), "why " * 60, api_name="/ask")
    with pytest.raises(Exception, match="unknown answerer '../vqa'"):
        client.predict(handle_file(str(picture)), "Why?", "test-squares", "../vqa", api_name="/ask")
    with pytest.raises(Exception, match="blip-vqa-base"):  # in the menu, not on this machine: says so, no path
        client.predict(handle_file(str(picture)), "Why?", "test-squares", "blip-vqa-base", api_name="/ask")


def test_errors_are_messages_and_the_server_keeps_serving(client, photo, tmp_path):
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("this is text, not a picture")
    with pytest.raises(Exception, match="(?i)not an image"):
        client.predict(handle_file(str(not_an_image)), TEST_CAPTIONER, api_name="/caption")
    with pytest.raises(Exception, match="unknown segmenter 'nope'"):
        client.predict(handle_file(str(photo)), "nope", 0.5, "all", api_name="/segment")
    with pytest.raises(Exception, match="blip-base"):
        client.predict(handle_file(str(photo)), "blip-base", api_name="/caption")
    with pytest.raises(Exception, match="(?i)unknown options"):
        client.predict(handle_file(str(photo)), TEST_CAPTIONER, "test-circles", {"colour": 1}, api_name="/analyze")
    assert client.predict(handle_file(str(photo)), TEST_CAPTIONER, api_name="/caption")


def test_no_monitoring_page_tells_anyone_the_endpoints_traffic(client):
    """Gradio's /monitoring summary (each endpoint's request counts and timings, open to any caller) is off."""
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{client.src.rstrip('/')}/monitoring/summary", timeout=30)
    assert refused.value.code == 403


def test_too_large_images_are_refused_with_the_limit(client, tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_MAX_PIXELS", "1000")  # the server runs in this process, so it reads this too
    picture = tmp_path / "big.png"
    Image.new("RGB", (100, 100), "white").save(picture)
    with pytest.raises(Exception, match="(?i)too large"):
        client.predict(handle_file(str(picture)), TEST_CAPTIONER, api_name="/caption")


def test_model_menus_mark_what_cannot_load_and_defaults_fall_back(app_models, server):
    from pipeline.serve.cache import ModelCache
    from pipeline.serve.menus import ModelMenus
    from pipeline.serve.service import Service

    service = Service(ModelCache(device="cpu"), ModelMenus([TEST_CAPTIONER, "blip-base"], ["test-circles"]))
    choices = {value: text for text, value in service.photos.menu("captioner")}
    assert "not available here" in choices["blip-base"]
    assert "not available here" not in choices[TEST_CAPTIONER]
    # Why, in the entry itself (seen, and read on focus), without a path of this machine.
    assert availability("blip-base", "captioner")[1] in choices["blip-base"] and "/root" not in choices["blip-base"]
    assert service.photos.available("captioner") == [TEST_CAPTIONER]
    # blip-base (and shapes, if not trained yet) cannot load here: the first model that can is chosen.
    names = ["blip-base", TEST_CAPTIONER]
    expected = "shapes" if availability("shapes", "captioner")[0] else TEST_CAPTIONER
    assert best_available("captioner", [*names, "shapes"], None) == expected
    assert best_available("captioner", names, TEST_CAPTIONER) == TEST_CAPTIONER  # an explicit choice that loads
    # An explicit choice that cannot load here falls back (the Space asks for blip-base and runs on shapes).
    assert best_available("captioner", [*names, "shapes"], "blip-base") == expected
    assert best_available("captioner", ["blip-base"], "blip-base") == "blip-base"  # nothing loads: say why
    assert "cannot be used here" in service.photos.model_note("captioner", "blip-base")
    assert "unknown captioner" in service.photos.model_note("captioner", "/etc")


def test_command_line_help_lists_the_flags():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "app.py", "--help"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    for flag in ("--host", "--port", "--captioner", "--segmenter", "--device", "--offline", "GRADIO_SERVER_PORT"):
        assert flag in done.stdout


def test_command_line_checks_its_values(monkeypatch, capsys):
    import app

    with pytest.raises(SystemExit):
        app.parse_args(["--port", "0"])
    assert "--port must be between 1 and 65535" in capsys.readouterr().err
    monkeypatch.setenv("GRADIO_SERVER_PORT", "9001")
    monkeypatch.setenv("APP_OFFLINE", "1")
    monkeypatch.setenv("APP_SEGMENTER", "shapes")
    args = app.parse_args([])
    assert (args.port, args.offline, args.segmenter, args.host) == (9001, True, "shapes", "127.0.0.1")
    assert app.parse_args(["--no-offline", "--port", "7000"]).offline is False


def test_git_and_vit_gpt2_captioners_serve_and_compare_through_the_app(tiny_git_dir, tiny_vit_gpt2_dir):
    from gradio_client import Client
    from helpers import serve

    from pipeline import ModelSpec, registered_models

    specs = [
        ModelSpec("test-git", "captioner", tiny_git_dir, "tiny random GIT: for tests"),
        ModelSpec("test-vit-gpt2", "captioner", tiny_vit_gpt2_dir, "tiny random ViT-GPT2: for tests"),
    ]
    photo = EXAMPLES / "cat.jpg"
    with registered_models(specs):
        expected = {spec.name: load_captioner(spec.name, device="cpu")(str(photo))["caption"] for spec in specs}
        demo, url = serve(captioners=("test-git", "test-vit-gpt2"), segmenters=("shapes",))
        try:
            client = Client(url, verbose=False)
            for name, caption in expected.items():
                assert client.predict(handle_file(str(photo)), name, api_name="/caption") == caption
            rows = client.predict(handle_file(str(photo)), ["test-git", "test-vit-gpt2"], {}, api_name="/compare")
        finally:
            demo.close()
    assert [(row["name"], row["caption"], row["error"]) for row in rows] == [
        (name, caption, None) for name, caption in expected.items()
    ]
