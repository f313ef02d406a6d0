"""What a served app allows its clients: the models in its menus, images within the limits, messages without paths.

The library trusts its caller; a public server does not. This module is the server's side of that line, with no
gradio in it so that it can be tested on its own:

- :class:`ModelMenus`: the models a client may name: the catalog's, and what the operator configured at start
  (:func:`operator_model`); anything else is refused with one message that lists the valid names and says nothing
  about the server's disk. Any hub id only when the operator opted in (``allow_hub``); directories never.
- :func:`image_from_payload`: an image however it arrives (an uploaded file, a path Gradio handed over, a ``data:``
  URL), its bytes and pixels limited before it is decoded.
- :class:`RequestError`: a client's mistake, with a message for that client and a title; never a traceback.
- :class:`OutputFiles`: pictures and downloads written under unique names, completely, before a client may fetch
  them (see the class for the race it avoids).
- :func:`lower_thread_priority`: so that photo work yields the cores to live frames.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import ctypes.util
import io
import json
import os
import re
import tempfile
import threading
import uuid
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from .catalog import KINDS, get_spec, list_models, looks_like_hub_id, register_model
from .images import ImageTooLargeError, load_image, max_pixels_from_env
from .options import MAX_IMAGE_BYTES


class RequestError(ValueError):
    """A client's request cannot be served as asked; ``str(error)`` is for that client, ``title`` heads it."""

    def __init__(self, message: str, *, title: str = "Bad request"):
        super().__init__(message)
        self.title = title


# -- models ------------------------------------------------------------------------------------------------------

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


def operator_model(kind: str, name_or_source: str) -> str:
    """The menu name of a model the operator configured at start (``--captioner``, ``APP_SEGMENTER``, ...).

    A catalog name stays as it is, and a hub id is its own name. A directory is registered in the catalog under its
    folder name (``runs/blip-flickr8k`` -> ``blip-flickr8k``, a number added on a clash), so that the menus, the
    page and the API never show where it lies on the server.

    Raises:
        ValueError: neither a catalog name, nor a directory, nor (captioners) a hub id.
    """
    spec = get_spec(name_or_source, kind)  # an unknown name is the operator's mistake: fail at start-up
    if spec.name in {entry.name for entry in list_models(kind)} or not Path(spec.source).is_dir():
        return spec.name
    taken = {entry.name: entry.source for entry in list_models(kind)}
    base = Path(spec.source).resolve().name or kind
    name, number = base, 1
    while name in taken and taken[name] != str(Path(spec.source).resolve()):
        number += 1
        name = f"{base}-{number}"
    register_model(name, kind, str(Path(spec.source).resolve()), f"{kind} configured by the operator")
    return name


class ModelMenus:
    """The model names a client may choose, per kind.

    Args:
        captioners, segmenters (Sequence[str]): the menu names (catalog names; see :func:`operator_model`).
        allow_hub (bool, default False): also accept any Hugging Face hub id as a captioner (the server then
            downloads what a client names: only for a server whose operator wants that, never on a public Space).
    """

    def __init__(self, captioners: Sequence[str], segmenters: Sequence[str], *, allow_hub: bool = False):
        self._names = {"captioner": list(dict.fromkeys(captioners)), "segmenter": list(dict.fromkeys(segmenters))}
        self.allow_hub = allow_hub

    def names(self, kind: str) -> list[str]:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        return list(self._names[kind])

    def check(self, kind: str, name: Any) -> str:
        """``name`` when a client may choose it, else a :class:`RequestError` listing the valid names.

        The message is the same whatever ``name`` is (a path that exists, one that does not, ``..``): it tells a
        client nothing about the server's disk.
        """
        names = self.names(kind)
        if isinstance(name, str) and name in names:
            return name
        if self.allow_hub and kind == "captioner" and self.is_hub_id(name):
            return name
        shown = name if isinstance(name, str) and len(name) <= 80 else f"a {type(name).__name__}"
        hub = " or a Hugging Face hub id (owner/name)" if self.allow_hub and kind == "captioner" else ""
        raise RequestError(f"unknown {kind} {shown!r}: choose one of {names}{hub}", title=f"Unknown {kind}")

    @staticmethod
    def is_hub_id(name: Any) -> bool:
        """``owner/name`` in the hub's own characters, and not a path of this machine (a relative one included)."""
        return (
            isinstance(name, str)
            and bool(_HUB_ID.match(name))
            and ".." not in name
            and looks_like_hub_id(name)
            and not os.path.lexists(name)
        )


# -- images ------------------------------------------------------------------------------------------------------


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


# -- files handed to clients -------------------------------------------------------------------------------------


class OutputFiles:
    """Pictures and downloads for clients, each written completely under a name of its own before it is handed out.

    Gradio saves a returned PIL image into its cache under a folder named by the image's content hash, writing the
    file in place (``processing_utils.save_pil_to_cache``: ``write_bytes``, no temporary name). Two requests with
    the same answer then write the same file at the same time, and a third request reading it gets a truncated file
    (seen as ``Too little data for declared Content-Length`` and 0-byte JPEGs under load). A returned *path* is
    copied into the cache under a temporary name and renamed (``save_file_to_cache``), which is safe; so the app
    returns paths written here. The oldest files beyond ``keep`` are deleted.

    Args:
        keep (int, default 256): files kept; more than the requests that can be in flight at once.
    """

    def __init__(self, keep: int = 256):
        self.folder = Path(tempfile.mkdtemp(prefix="caption-app-out-"))
        self.keep = keep
        self._written: deque[Path] = deque()
        self._lock = threading.Lock()

    def image(self, image: Image.Image, stem: str, image_format: str = "jpeg") -> str:
        """Write ``image`` (``jpeg`` or ``png``) and return its path."""
        buffer = io.BytesIO()
        options = {"quality": 90} if image_format == "jpeg" else {}
        image.convert("RGB").save(buffer, format=image_format.upper(), **options)
        return self._write(buffer.getvalue(), f"{stem}.{'jpg' if image_format == 'jpeg' else image_format}")

    def json(self, data: Any, stem: str) -> str:
        """Write ``data`` as JSON and return its path."""
        return self._write((json.dumps(data, indent=1) + "\n").encode(), f"{stem}.json")

    def _write(self, data: bytes, name: str) -> str:
        folder = self.folder / uuid.uuid4().hex[:12]
        folder.mkdir()
        path = folder / name
        staging = folder / f".{name}.partial"
        staging.write_bytes(data)
        os.replace(staging, path)
        with self._lock:
            self._written.append(path)
            while len(self._written) > self.keep:
                old = self._written.popleft()
                old.unlink(missing_ok=True)
                old.parent.rmdir()
        return str(path)


def lower_thread_priority(nice: int = 19) -> None:
    """Lower the calling thread's CPU priority (Linux ``nice`` is per thread, and the OpenMP workers PyTorch starts
    from this thread inherit it): photo requests run this way, so that a live frame, at the normal priority, gets
    the cores first and photos take what is left. Does nothing where the OS does not allow it."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError):
        pass


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas for the rest of the process (``mallopt(M_ARENA_MAX)``); returns whether it could.

    glibc gives threads that allocate at the same time arenas of their own (up to 8 per core) and seldom returns
    their freed pages, so a server whose requests land on many different threads (Gradio's worker pool) grows by a
    few arenas' worth of fragments as new threads take requests. Two arenas keep the resident size flat under load
    (``tests/test_reliability.py`` measures it); call it before the server starts its threads. Elsewhere than
    glibc it does nothing.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-8, arenas))  # M_ARENA_MAX is -8 in glibc's malloc.h
    except (OSError, AttributeError):
        return False
