"""Shared fixtures: tiny random-weight models built and saved in the test session, never fetched from a hub."""

from __future__ import annotations

import os

# Never wait on a hub from a test: a missing model must fail at once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from pipeline.builders import build_blip, build_maskrcnn
from pipeline.catalog import save_segmenter

TINY_WORDS = "a an the of in on picture photo red blue green circle square triangle and to left right".split()
TINY_CATEGORIES = ["__background__", "circle", "square", "triangle"]


@pytest.fixture(scope="session")
def tiny_blip_dir(tmp_path_factory) -> str:
    """A random-weight BLIP (32x32 input, one layer each side) with its processor, saved with save_pretrained."""
    torch.manual_seed(0)
    small = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 37}
    model, processor = build_blip(TINY_WORDS, image_size=32, patch_size=8, vision=small, text=small)
    directory = tmp_path_factory.mktemp("tiny-blip")
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return str(directory)


@pytest.fixture(scope="session")
def tiny_segmenter_dir(tmp_path_factory) -> str:
    """A random-weight Mask R-CNN (resnet18 FPN, 128 px) saved as a segmenter checkpoint."""
    torch.manual_seed(0)
    settings = {"min_size": 128, "max_size": 160, "box_detections_per_img": 20}
    model = build_maskrcnn("maskrcnn_fpn", num_classes=len(TINY_CATEGORIES), backbone="resnet18", **settings)
    directory = tmp_path_factory.mktemp("tiny-segmenter")
    save_segmenter(
        model,
        directory,
        categories=TINY_CATEGORIES,
        architecture="maskrcnn_fpn",
        backbone="resnet18",
        model_kwargs=settings,
    )
    return str(directory)


def draw_shapes(width: int = 96, height: int = 72, seed: int = 0) -> Image.Image:
    """A small deterministic picture with a few coloured shapes on a noisy background."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 80, size=(height, width, 3), dtype=np.uint8)
    image = Image.fromarray(background)
    draw = ImageDraw.Draw(image)
    draw.ellipse([8, 8, 40, 40], fill=(220, 30, 30))
    draw.rectangle([50, 20, 85, 60], fill=(30, 60, 220))
    draw.polygon([(20, 65), (35, 45), (50, 65)], fill=(40, 200, 60))
    return image


@pytest.fixture(scope="session")
def shapes_data(tmp_path_factory):
    """A small shapes data set (16 training and 4 validation pictures, 64 px) with captions and COCO instances, for
    the training tests; read-only."""
    from train import shapes

    root = tmp_path_factory.mktemp("shapes-data")
    shapes.write_split(root, "train", 16, seed=0, image_size=64, max_objects=2)
    shapes.write_split(root, "val", 4, seed=0, image_size=64, max_objects=2)
    return root


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
