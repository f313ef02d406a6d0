"""Shared fixtures: tiny random-weight models built and saved in the test session, never fetched from a hub."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# Never wait on a hub from a test: a missing model must fail at once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from gradio_client import Client
from helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    SCREENSHOTS,
    TEST_ANSWERER,
    draw_shapes,
    registered_test_models,
    save_tiny_blip,
    save_tiny_blip_vqa,
    save_tiny_git,
    save_tiny_segmenter,
    save_tiny_vit_gpt2,
    serve,
)
from PIL import Image


@pytest.fixture(scope="session")
def tiny_blip_dir(tmp_path_factory) -> str:
    """A random-weight BLIP (32x32 input, one layer each side) with its processor, saved with save_pretrained."""
    return save_tiny_blip(tmp_path_factory.mktemp("tiny-blip"))


@pytest.fixture(scope="session")
def tiny_blip_vqa_dir(tmp_path_factory) -> str:
    """A random-weight BLIP question answerer with its processor, saved with save_pretrained."""
    return save_tiny_blip_vqa(tmp_path_factory.mktemp("tiny-blip-vqa"))


@pytest.fixture(scope="session")
def tiny_vit_gpt2_dir(tmp_path_factory) -> str:
    """A random-weight ViT-GPT2 VisionEncoderDecoderModel with its image processor and GPT-2 tokenizer."""
    return save_tiny_vit_gpt2(tmp_path_factory.mktemp("tiny-vit-gpt2"))


@pytest.fixture(scope="session")
def tiny_git_dir(tmp_path_factory) -> str:
    """A random-weight GIT with its GitProcessor (CLIP image processor, BERT-style tokenizer)."""
    return save_tiny_git(tmp_path_factory.mktemp("tiny-git"))


@pytest.fixture(scope="session")
def tiny_segmenter_dir(tmp_path_factory) -> str:
    """A random-weight Mask R-CNN (resnet18 FPN, 128 px) saved as a segmenter checkpoint."""
    return save_tiny_segmenter(tmp_path_factory.mktemp("tiny-segmenter"))


@pytest.fixture(scope="session")
def shapes_data(tmp_path_factory):
    """A small shapes data set (16 training and 4 validation pictures, 64 px) with captions and COCO instances, for
    the training tests; read-only."""
    from train import shapes

    root = tmp_path_factory.mktemp("shapes-data")
    shapes.write_split(root, "train", 16, seed=0, image_size=64, max_objects=2)
    shapes.write_split(root, "val", 4, seed=0, image_size=64, max_objects=2)
    return root


def pytest_collection_finish(session):
    """Start METEOR's Java scorer as soon as a collected test will score METEOR (asks for ``meteor``): its JVM takes
    15-25 s to load its paraphrase table, which it then does while the tests before run."""
    if any("meteor" in getattr(item, "fixturenames", ()) for item in session.items):
        from pipeline.evaluation import MeteorUnavailableError, start_meteor

        try:
            start_meteor()
        except MeteorUnavailableError:
            pass  # the `meteor` fixture says so, in the tests that need it


@pytest.fixture(scope="session")
def meteor() -> None:
    """METEOR's Java scorer, started (one per test process); the tests that score METEOR ask for it."""
    from pipeline.evaluation import start_meteor

    start_meteor()


@pytest.fixture
def fresh_accelerate_state():
    """For in-process training runs, each of which builds its own Accelerator: put accelerate's singletons and
    torch's thread count back afterwards."""
    from accelerate.state import AcceleratorState, GradientState

    threads = torch.get_num_threads()
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    torch.set_num_threads(threads)


@pytest.fixture
def shapes_image() -> Image.Image:
    return draw_shapes()


# -- the app on 127.0.0.1, one per test module that asks (test_app.py, test_reliability.py) -------------------------


@pytest.fixture(scope="module")
def app_models(tiny_blip_dir, tmp_path_factory):
    """The test models registered in the catalog for the module: the tiny BLIP and the test segmenters."""
    with registered_test_models(tiny_blip_dir, tmp_path_factory.mktemp("app-models")) as directories:
        yield directories


@pytest.fixture(scope="module")
def server(app_models):
    """A real app (``app.build_demo``) served on a free port of 127.0.0.1; its URL. Its answerers: the test one,
    and blip-vqa-base (not on this machine: the menus mark it)."""
    demo, url = serve(answerers=(TEST_ANSWERER, "blip-vqa-base"))
    try:
        yield url
    finally:
        demo.close()


@pytest.fixture(scope="module")
def client(server):
    return Client(server, verbose=False)


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium under Playwright, one per test module that asks (test_browser.py, test_accessibility.py)."""
    # The browser tests are part of the suite: a missing browser is a failed setup, never a silent skip.
    from playwright import sync_api

    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail("Debian's chromium is not installed: apt-get install chromium (see README)")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
