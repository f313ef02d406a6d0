"""What a client sends, checked before any model runs: its image (bytes and pixels limited before decoding) and its
options (the bounded form of the pipelines' declarations, :mod:`pipeline.serve.options`).

:class:`RequestError` is a client's mistake, with a message for that client and a title; the app turns it into the
page's message (and ``gradio_client``'s error), never a traceback.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Sequence
from typing import Any

from PIL import Image

from ..answering import check_question
from ..images import ImageTooLargeError, load_image, max_pixels_from_env
from ..options import OptionError
from .options import MAX_IMAGE_BYTES, check_options


class RequestError(ValueError):
    """A client's request cannot be served as asked; ``str(error)`` is for that client, ``title`` heads it."""

    def __init__(self, message: str, *, title: str = "Bad request"):
        super().__init__(message)
        self.title = title


def image_from_payload(
    payload: Any, *, max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int | None = None
) -> Image.Image:
    """The RGB image of what a client sent: a Gradio ``FileData`` dict (``path`` or ``data:`` ``url``), a path
    string, a ``data:`` URL string, or a PIL image; the byte limit applies to every one of them, and the pixel limit
    before any pixel is decoded.

    Raises:
        RequestError: nothing was sent, it is not an image, or it is too large; the message says which.
    """
    if payload is None:
        raise RequestError("No image yet: upload, paste, drop or take a photo first.", title="No image")
    if isinstance(payload, Image.Image):
        source: Any = payload
    elif isinstance(payload, dict):
        source = _source_of(payload.get("path") or payload.get("url") or "", max_bytes)
    elif isinstance(payload, str):
        source = _source_of(payload, max_bytes)
    else:
        raise RequestError(f"Expected an image, got {type(payload).__name__}.", title="Not an image")
    limit = max_pixels_from_env() if max_pixels is None else max_pixels
    try:
        return load_image(source, max_pixels=limit)
    except ImageTooLargeError as error:
        raise RequestError(
            error.describe("the limit of this server") + ". Please send a smaller photo.", title="Image too large"
        ) from None
    except (ValueError, TypeError) as error:
        message = str(error).replace(str(source), "the file") if isinstance(source, str) else str(error)
        raise RequestError(
            f"{message[:1].upper()}{message[1:]}. Please choose a JPEG, PNG or WebP photo.",
            title="This file cannot be used",
        ) from None


def _source_of(text: str, max_bytes: int) -> str | bytes:
    """A path to read, or the bytes of a ``data:`` URL, after the byte limit."""
    if text.startswith("data:"):
        header, _, encoded = text.partition(",")
        if len(encoded) * 3 // 4 > max_bytes:  # before decoding a byte of it
            raise _too_many_bytes(len(encoded) * 3 // 4, max_bytes)
        try:
            data = base64.b64decode(encoded, validate=True) if header.endswith(";base64") else encoded.encode()
        except (binascii.Error, ValueError):
            raise RequestError("The image data is not valid base64.", title="Not an image") from None
        return data
    if not text or re.match(r"^[a-z][a-z0-9+.-]*://", text):
        raise RequestError("The image could not be received; please upload it again.", title="No image")
    try:
        size = os.stat(text).st_size
    except OSError:
        raise RequestError("The image could not be received; please upload it again.", title="No image") from None
    if size > max_bytes:
        raise _too_many_bytes(size, max_bytes)
    return text


def _too_many_bytes(size: int, limit: int) -> RequestError:
    return RequestError(
        f"The image is {size / 2**20:.1f} MB; this server takes images of up to {limit / 2**20:.0f} MB.",
        title="Image too large",
    )


def checked_options(given: Any, names: Sequence[str]) -> dict[str, Any]:
    """A request's options (:func:`pipeline.serve.options.check_options`), a :class:`RequestError` when wrong."""
    try:
        return check_options(given, names)
    except OptionError as error:
        raise RequestError(str(error), title="Bad option") from None


def checked_question(question: Any) -> str:
    """A client's question, stripped (:func:`pipeline.answering.check_question`), a :class:`RequestError` when it is
    not a text, empty or over 200 characters."""
    try:
        return check_question(question)
    except ValueError as error:
        raise RequestError(str(error), title="Ask a question") from None
