"""Pictures and downloads for clients, each written completely under a name of its own before it is handed out;
the live view's annotated frames in memory (:func:`memory_folder`) where the machine has a memory-backed folder."""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import threading
import uuid
import weakref
from collections import deque
from pathlib import Path
from typing import Any

from PIL import Image

#: A memory-backed folder on Linux (tmpfs); the live view's annotated frames go there when it has room.
SHARED_MEMORY = Path("/dev/shm")
#: The room :func:`memory_folder` wants free in it (bytes): far more than a ring of annotated frames takes.
MEMORY_ROOM = 256 * 2**20


def memory_folder(prefix: str, room: int = MEMORY_ROOM) -> Path:
    """A new folder in memory (under :data:`SHARED_MEMORY`) when that exists, can be written and has ``room`` bytes
    free; otherwise a new folder in the temporary directory.

    The folder's name carries this process's id after ``prefix``. A memory-backed folder holds its memory until the
    machine restarts, and a server stopped by a signal does not remove its own (:class:`OutputFiles` does on a normal
    exit), so the folders of ``prefix`` whose process is gone are removed first.
    """
    try:
        if os.access(SHARED_MEMORY, os.W_OK) and shutil.disk_usage(SHARED_MEMORY).free >= room:
            for orphan in _orphans(SHARED_MEMORY, prefix):
                shutil.rmtree(orphan, ignore_errors=True)
            return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=SHARED_MEMORY))
    except OSError:  # not there, or not a folder: the temporary directory it is
        pass
    return Path(tempfile.mkdtemp(prefix=prefix))


def _orphans(parent: Path, prefix: str) -> list[Path]:
    """The folders ``<prefix><process id>-...`` in ``parent`` whose process no longer runs."""
    found = []
    for folder in parent.glob(f"{prefix}*"):
        pid = folder.name[len(prefix) :].split("-", 1)[0]
        if folder.is_dir() and pid.isdigit() and not _running(int(pid)):
            found.append(folder)
    return found


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except (ProcessLookupError, OverflowError):  # gone, or an id no process can have
        return False
    except PermissionError:  # another user's process: it runs
        pass
    return True


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
        folder (str | Path | None, default None): an empty folder to write in (e.g. :func:`memory_folder`'s); None
            makes one in the temporary directory. It is removed with what is in it when this object is closed or
            collected, or the process ends.
    """

    def __init__(self, keep: int = 256, *, folder: str | Path | None = None):
        self.folder = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="caption-app-out-"))
        self._remove = weakref.finalize(self, shutil.rmtree, str(self.folder), ignore_errors=True)
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

    def close(self) -> None:
        """Remove the folder and every file in it (a memory-backed folder would otherwise hold its memory)."""
        self._remove()
