"""pipeline.masks: crops pasted the way torchvision pastes, and COCO RLE made from a crop without the full mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image

from pipeline.masks import MaskCrop, crop_of, encode_full, paste_crop


def test_paste_crop_is_torchvisions_paste_without_the_canvas():
    torch.manual_seed(0)
    probabilities = torch.rand(5, 28, 28)
    # Boxes as Mask R-CNN gives them (clipped to the picture): inside, on the edges, the whole picture, a sliver.
    boxes = torch.tensor(
        [[3.2, 4.7, 40.1, 30.3], [0.0, 0.0, 20.0, 12.0], [50.0, 40.0, 63.9, 47.9], [10.0, 10.0, 10.4, 10.2],
         [0.0, 0.0, 64.0, 48.0]]
    )  # fmt: skip
    pasted = paste_masks_in_image(probabilities[:, None], boxes, (48, 64))[:, 0]
    for index in range(len(boxes)):
        crop = paste_crop(probabilities[index], boxes[index], 48, 64, threshold=0.5)
        assert np.array_equal(crop.full(), (pasted[index] > 0.5).numpy()), index


@pytest.mark.parametrize("seed", range(6))
def test_rle_from_a_crop_is_pycocotools_rle_of_the_full_mask(seed):
    rng = np.random.default_rng(seed)
    height, width = rng.integers(1, 40, size=2)
    mask = np.zeros((height, width), dtype=bool)
    top, left = rng.integers(0, height), rng.integers(0, width)
    bottom, right = rng.integers(top, height + 1), rng.integers(left, width + 1)
    mask[top:bottom, left:right] = rng.random((bottom - top, right - left)) > 0.4
    crop = crop_of(mask)
    assert np.array_equal(crop.full(), mask)
    assert crop.to_rle() == encode_full(mask)
    assert crop.area == int(mask.sum())


def test_edges_and_empty_masks():
    full = np.ones((3, 4), dtype=bool)
    assert crop_of(full).to_rle() == encode_full(full)  # starts and ends with ones: empty first run
    empty = crop_of(np.zeros((3, 4), dtype=bool))
    assert empty.to_rle() == encode_full(np.zeros((3, 4), dtype=bool)) and empty.area == 0
    assert crop_of(empty.to_rle()).full().shape == (3, 4)
    pil = MaskCrop(np.ones((1, 2), bool), 1, 1, 3, 4).to_pil()
    assert pil.mode == "L" and np.asarray(pil).tolist() == [[0, 0, 0, 0], [0, 255, 255, 0], [0, 0, 0, 0]]
    with pytest.raises(ValueError, match="mask_format must be one of"):
        empty.to("png")
