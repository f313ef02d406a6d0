"""Image intake: every way a caller can hand us an image becomes one RGB ``PIL.Image.Image``.

Accepted inputs are a path (``str`` or ``os.PathLike``), raw encoded ``bytes``, a ``PIL.Image.Image`` or an
``HxWx3`` / ``HxW`` / ``HxWx4`` ``uint8`` numpy array. EXIF orientation is applied, every PIL mode (``L``, ``LA``,
``P`` with transparency, ``RGBA``, ``CMYK``, ``I;16``, ``F`` ...) is converted to ``RGB``, and anything that is not
a readable image, or is larger than a pixel limit, is refused with a ``ValueError`` that says which and why.
Transparent pixels are composited onto white, the way a browser shows them.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from .env import env_int

ImageInput = Union[str, os.PathLike, bytes, bytearray, Image.Image, np.ndarray]

#: Default largest accepted image, in pixels (about 40 megapixels: a 7,700 x 5,200 photo). Override per call
#: or with the ``PIPELINE_MAX_PIXELS`` environment variable.
DEFAULT_MAX_PIXELS = 40_000_000


class ImageTooLargeError(ValueError):
    """An image has more pixels than the limit; the message says how many, the limit, and what sets the limit.

    Attributes:
        what (str): the image as named in messages (a file name, "the given bytes", ...).
        width, height (int): its size in pixels.
        limit (int): the limit it exceeds.
    """

    def __init__(self, what: str, width: int, height: int, limit: int, setting: str):
        self.what, self.width, self.height, self.limit = what, width, height, limit
        super().__init__(self.describe(setting))

    def describe(self, setting: str) -> str:
        """The message with ``setting`` named as what sets the limit (a front end names its own flag)."""
        return (
            f"image too large: {self.what} is {self.width}x{self.height} = {self.width * self.height:,} pixels, "
            f"the limit is {self.limit:,} ({setting})"
        )


def max_pixels_from_env() -> int:
    """The pixel limit set by ``PIPELINE_MAX_PIXELS``, else :data:`DEFAULT_MAX_PIXELS`."""
    return env_int("PIPELINE_MAX_PIXELS", DEFAULT_MAX_PIXELS)


def load_image(image: ImageInput, *, max_pixels: int | None = None) -> Image.Image:
    """Turn any accepted image input into an RGB PIL image, upright.

    Args:
        image (str | os.PathLike | bytes | PIL.Image.Image | np.ndarray): a file path, the encoded bytes of an image
            file, a PIL image, or a ``uint8`` array shaped ``[H, W]``, ``[H, W, 3]`` or ``[H, W, 4]``.
        max_pixels (int | None, default None): refuse images with more pixels than this; ``None`` reads
            ``PIPELINE_MAX_PIXELS`` or uses :data:`DEFAULT_MAX_PIXELS`.

    Returns:
        PIL.Image.Image: a fully loaded image in mode ``"RGB"``, EXIF orientation applied.

    Raises:
        ValueError: the input is empty, not an image, truncated, of an unsupported array shape or dtype, or larger
            than ``max_pixels``; the message says which.
        TypeError: the input is of a type that cannot hold an image.

    >>> load_image(np.zeros((4, 6, 3), dtype=np.uint8)).size
    (6, 4)
    """
    if max_pixels is None:
        limit = _Limit(max_pixels_from_env(), "set PIPELINE_MAX_PIXELS to change it")
    else:
        limit = _Limit(max_pixels, "the max_pixels argument")
    if isinstance(image, np.ndarray):
        return _check_size(_from_array(image), limit, "array")
    if isinstance(image, Image.Image):
        _check_size(image, limit, "image")
        return _to_rgb(_upright(image))
    if isinstance(image, (bytes, bytearray)):
        if not image:
            raise ValueError("not an image: the data is empty (0 bytes)")
        return _open(io.BytesIO(bytes(image)), "the given bytes", limit)
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise ValueError(f"no image file at {str(path)!r}: the path does not exist or is not a file")
        if path.stat().st_size == 0:
            raise ValueError(f"not an image: {path.name!r} is empty (0 bytes)")
        with open(path, "rb") as handle:
            return _open(handle, repr(path.name), limit)
    raise TypeError(
        f"image must be a path, bytes, a PIL.Image.Image or a numpy uint8 array, got {type(image).__name__}"
    )


class _Limit(int):
    """A pixel limit that knows what set it (for the message)."""

    def __new__(cls, value: int, setting: str) -> _Limit:
        limit = super().__new__(cls, value)
        limit.setting = setting
        return limit


def _open(stream: io.IOBase, what: str, limit: _Limit) -> Image.Image:
    # PIL's own bomb check warns or raises at sizes unrelated to ours; we enforce `limit` ourselves before decoding.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            opened = Image.open(stream)
        except UnidentifiedImageError:
            raise ValueError(f"not an image: {what} is not in an image format this app can read") from None
        except Image.DecompressionBombError as error:
            raise ValueError(f"image too large: {what} ({error})") from None
        _check_size(opened, limit, what)
        try:
            opened.load()
        except (OSError, SyntaxError, ValueError) as error:
            # Truncated or corrupt files raise OSError ("image file is truncated"), some plugins SyntaxError.
            raise ValueError(f"broken image: {what} could not be decoded ({error})") from None
    return _to_rgb(_upright(opened))


def _check_size(image: Image.Image, limit: _Limit, what: str) -> Image.Image:
    width, height = image.size
    if width == 0 or height == 0:
        raise ValueError(f"empty image: {what} is {width}x{height} pixels")
    if width * height > limit:
        raise ImageTooLargeError(what, width, height, int(limit), limit.setting)
    return image


def _upright(image: Image.Image) -> Image.Image:
    try:
        # exif_transpose copies the whole image even when there is nothing to turn; an already upright image (every
        # image this module returned, which the combined pipeline hands to both halves) passes through as it is.
        if image.getexif().get(ExifTags.Base.Orientation, 1) in (0, 1):
            return image
        return ImageOps.exif_transpose(image)
    except Exception:  # a malformed EXIF block must not cost the user the picture itself
        return image


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        image = _scale_to_8bit(image)
    if image.mode in ("LA", "La", "PA", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    return image.convert("RGB")


def _scale_to_8bit(image: Image.Image) -> Image.Image:
    # PIL's own I;16 -> L conversion clips at 255, which turns most 16-bit photos white; scale by the range instead.
    values = np.asarray(image, dtype=np.float64)
    if values.ndim == 3:
        values = values[..., 0]
    top = 65535.0 if image.mode.startswith("I;16") else max(float(values.max()), 1.0)
    low = 0.0 if image.mode.startswith("I;16") else min(float(values.min()), 0.0)
    scaled = (values - low) / (top - low) * 255.0
    return Image.fromarray(np.clip(np.round(scaled), 0, 255).astype(np.uint8), mode="L")


def _from_array(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8:
        raise ValueError(f"image arrays must have dtype uint8, got {array.dtype}")
    if array.ndim == 2:
        return Image.fromarray(array, mode="L").convert("RGB")
    if array.ndim == 3 and array.shape[2] in (3, 4):
        image = Image.fromarray(np.ascontiguousarray(array), mode="RGB" if array.shape[2] == 3 else "RGBA")
        return _to_rgb(image)
    raise ValueError(f"image arrays must be shaped [H, W], [H, W, 3] or [H, W, 4], got {list(array.shape)}")
