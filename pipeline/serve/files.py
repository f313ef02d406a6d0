"""Pictures and downloads for clients, each written completely under a name of its own before it is handed out."""

from __future__ import annotations

import io
import json
import os
import tempfile
import threading
import uuid
from collections import deque
from pathlib import Path
from typing import Any

from PIL import Image


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
