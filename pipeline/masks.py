"""Instance masks: the box-local crops a segmenter pastes, and the two forms the pipelines hand out.

Mask R-CNN predicts each instance's mask as a 28x28 probability map inside its box; torchvision pastes every one of
them into a full-size float image (``paste_masks_in_image``), for every detection before any score filter. For a
40-megapixel photo and 100 detections that is 16 GB. Here a mask is pasted into its box only
(:func:`paste_crop`, the same arithmetic as torchvision's, so the pixels are the same), kept as a :class:`MaskCrop`
while the views are built, and handed out as one of :data:`MASK_FORMATS`:

- ``"pil"``: a mode-"L" 0/255 ``PIL.Image.Image`` of the input's size (the output contract's form);
- ``"rle"``: COCO run-length encoding, ``{"size": [H, W], "counts": str}`` as ``pycocotools.mask.encode`` gives it
  (the JSON form), computed from the crop without ever making the full-size mask.

>>> crop = MaskCrop(np.ones((2, 3), bool), left=1, top=1, height=4, width=5)
>>> crop.to_rle() == encode_full(crop.full())
True
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils

MASK_FORMATS = ("pil", "rle")


class MaskCrop(NamedTuple):
    """One instance's binary mask as the part of the picture it covers.

    Attributes:
        array (np.ndarray[h, w] bool): the mask inside its window.
        left, top (int): where the window starts in the picture.
        height, width (int): the picture's size.
    """

    array: np.ndarray
    left: int
    top: int
    height: int
    width: int

    @property
    def window(self) -> tuple[slice, slice]:
        """Row and column slices of the picture that the crop covers."""
        rows, cols = self.array.shape
        return slice(self.top, self.top + rows), slice(self.left, self.left + cols)

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.array))

    def full(self) -> np.ndarray:
        """The picture-sized boolean mask."""
        mask = np.zeros((self.height, self.width), dtype=bool)
        mask[self.window] = self.array
        return mask

    def to_pil(self) -> Image.Image:
        return Image.fromarray(self.full().astype(np.uint8) * 255, mode="L")

    def to_rle(self) -> dict[str, Any]:
        """COCO RLE (str counts) of the picture-sized mask, from runs computed on the crop's columns only."""
        rows, cols = self.array.shape
        if cols == 0 or rows == 0 or not self.array.any():
            runs = [self.height * self.width]
        else:
            # Column-major, as COCO's RLE: each crop column is padded to the picture's height, the columns before
            # and after the crop are one run of zeros each.
            strip = np.zeros((self.height, cols), dtype=np.uint8)
            strip[self.top : self.top + rows] = self.array
            flat = strip.ravel(order="F")
            changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
            bounds = np.concatenate(([0], changes, [flat.size]))
            runs = np.diff(bounds).tolist()
            if flat[0]:  # RLE counts start with a run of zeros, possibly empty
                runs.insert(0, 0)
            runs[0] += self.left * self.height
            after = (self.width - self.left - cols) * self.height
            if after and flat[-1]:
                runs.append(after)
            elif after:
                runs[-1] += after
        rle = mask_utils.frPyObjects({"size": [self.height, self.width], "counts": runs}, self.height, self.width)
        return {"size": [self.height, self.width], "counts": rle["counts"].decode("ascii")}

    def to(self, mask_format: str) -> Image.Image | dict[str, Any]:
        """The mask in one of :data:`MASK_FORMATS`."""
        if mask_format == "pil":
            return self.to_pil()
        if mask_format == "rle":
            return self.to_rle()
        raise ValueError(f"mask_format must be one of {MASK_FORMATS}, got {mask_format!r}")


def encode_full(mask: np.ndarray) -> dict[str, Any]:
    """COCO RLE (str counts) of a picture-sized boolean mask, by pycocotools."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def paste_crop(probabilities: torch.Tensor, box: torch.Tensor, height: int, width: int, threshold: float) -> MaskCrop:
    """One instance's 28x28 mask probabilities pasted into its box, thresholded: torchvision's
    ``paste_masks_in_image`` for one instance (the box grown by one mask cell each side, the mask resized to it
    bilinearly), without the picture-sized canvas around it.

    Args:
        probabilities (FloatTensor[M, M]): the instance's mask probabilities (Mask R-CNN's ``masks[i, 0]`` before
            pasting).
        box (FloatTensor[4]): ``x0, y0, x1, y1`` in the picture's pixels.
        height, width (int): the picture's size.
        threshold (float): a pixel is in the mask where its probability is above this.

    Returns:
        MaskCrop
    """
    from torchvision.models.detection.roi_heads import expand_boxes, expand_masks

    padded, scale = expand_masks(probabilities[None, None], padding=1)
    x0, y0, x1, y1 = (int(v) for v in expand_boxes(box[None].float(), scale).to(torch.int64)[0])
    box_w, box_h = max(x1 - x0 + 1, 1), max(y1 - y0 + 1, 1)
    resized = torch.nn.functional.interpolate(padded, size=(box_h, box_w), mode="bilinear", align_corners=False)[0, 0]
    left, right = max(x0, 0), min(x1 + 1, width)
    top, bottom = max(y0, 0), min(y1 + 1, height)
    if right <= left or bottom <= top:
        return MaskCrop(np.zeros((0, 0), dtype=bool), 0, 0, height, width)
    window = resized[top - y0 : bottom - y0, left - x0 : right - x0]
    return MaskCrop((window > threshold).numpy(), left, top, height, width)


def crop_of(mask: Any, size: tuple[int, int] | None = None) -> MaskCrop:
    """The :class:`MaskCrop` of a mask in any form the pipelines hand out: a PIL image, COCO RLE, a crop, or a
    picture-sized array; ``size`` is ``(width, height)``, needed only for an array that holds nothing.
    """
    if isinstance(mask, MaskCrop):
        return mask
    if isinstance(mask, dict):
        counts = mask["counts"].encode("ascii") if isinstance(mask["counts"], str) else mask["counts"]
        array = mask_utils.decode({"size": list(mask["size"]), "counts": counts}).astype(bool)
    else:
        array = np.asarray(mask) > 0
    height, width = array.shape if array.size or size is None else (size[1], size[0])
    rows, cols = np.flatnonzero(array.any(axis=1)), np.flatnonzero(array.any(axis=0))
    if rows.size == 0:
        return MaskCrop(np.zeros((0, 0), dtype=bool), 0, 0, height, width)
    top, left = int(rows[0]), int(cols[0])
    return MaskCrop(array[top : rows[-1] + 1, left : cols[-1] + 1].copy(), left, top, height, width)
