"""Running on Hugging Face ZeroGPU, and on the plain CPU hardware of a Space, with the same code.

On ZeroGPU a Space has no GPU of its own: a GPU is attached only while a function decorated with ``spaces.GPU``
runs, in a worker process forked from the server. What that means here (from the ZeroGPU documentation,
https://huggingface.co/docs/hub/spaces-zerogpu, and the ``spaces`` package):

- ``import spaces`` must come before anything initialises CUDA; this module imports it at import time, so import
  it (or :func:`gpu`) before loading models;
- models are placed on ``"cuda"`` at start-up in the main thread, before ``demo.launch()``, outside any decorated
  function (an emulation layer accepts the placement; the weights move to the real GPU when a call starts);
- the decorated function's arguments and result are pickled between processes, and state it changes stays in the
  worker: pass images and settings, return plain data, keep caches and sessions in the server process;
- ``spaces.GPU(duration=...)`` is the most seconds one call may hold the GPU (60 by default); shorter durations get
  a better place in the queue.

Elsewhere (CPU Spaces, a laptop, the tests) :func:`gpu` returns the function unchanged when ``spaces`` is not
installed, and ``spaces.GPU`` itself is a no-op outside ZeroGPU. On CPU the ``"fast"`` speed profile is the default
(:func:`pipeline.speed.default_profile`); on a GPU, ZeroGPU's included, the ``"full"`` one.

>>> @gpu(duration=20)
... def double(x: int) -> int:
...     return 2 * x
>>> double(21)
42
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from ..env import env_flag
from ..speed import default_profile

try:  # before any CUDA initialisation: on ZeroGPU the import installs the CUDA emulation
    import spaces
except ImportError:
    spaces = None

F = TypeVar("F", bound=Callable[..., Any])

#: Seconds of GPU one analysis may hold on ZeroGPU: BLIP base and Mask R-CNN v2 take well under a second per image
#: on a GPU, but the first call of a new worker also moves the preloaded weights (about 1.2 GB) to the GPU.
#: Not measured on ZeroGPU yet; chosen with a wide margin under the 60-second default.
DEFAULT_DURATION = 30
#: GPU sizes ``spaces.GPU(size=...)`` accepts (``large``: half an RTX Pro 6000, 48 GB; ``xlarge``: a whole one).
GPU_SIZES = ("large", "xlarge")


def spaces_available() -> bool:
    """Whether the ``spaces`` package could be imported (it is preinstalled on Gradio Spaces)."""
    return spaces is not None


def on_zerogpu() -> bool:
    """Whether this process runs on ZeroGPU hardware: the ``SPACES_ZERO_GPU`` variable Spaces set there is true.

    The same test the ``spaces`` package makes (``spaces.config.Config.zero_gpu``).

    >>> on_zerogpu() == env_flag("SPACES_ZERO_GPU")
    True
    """
    return env_flag("SPACES_ZERO_GPU")


def gpu(
    duration: int | float | Callable[..., float] = DEFAULT_DURATION, *, size: str | None = None
) -> Callable[[F], F]:
    """Decorator: run the function with a ZeroGPU GPU attached, where there is ZeroGPU; otherwise leave it alone.

    Wraps with ``spaces.GPU(duration=duration)`` (and ``size=`` when given) when ``spaces`` is importable, and
    returns the function itself when it is not.

    Args:
        duration (int | float | Callable, default DEFAULT_DURATION): the most seconds one call may hold the GPU, or
            a function of the call's arguments that returns them (``spaces.GPU``'s dynamic duration).
        size (str | None, default None): ``"large"`` or ``"xlarge"``; None leaves ``spaces``' default (large).

    Returns:
        a decorator.

    Raises:
        ValueError: a duration that is not a positive number of seconds, or an unknown size.

    >>> gpu(duration=10)(len)("abc")
    3
    """
    if not callable(duration) and (
        isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration <= 0
    ):
        raise ValueError(f"duration must be a positive number of seconds or a callable, got {duration!r}")
    if size is not None and size not in GPU_SIZES:
        raise ValueError(f"size must be one of {GPU_SIZES} or None, got {size!r}")

    def decorate(function: F) -> F:
        if spaces is None:
            return function
        options: dict[str, Any] = {"duration": duration}
        if size is not None:
            options["size"] = size
        return spaces.GPU(**options)(function)

    return decorate


def default_device() -> str:
    """``"cuda"`` on ZeroGPU (models are placed there at start-up), else ``"auto"`` (a GPU when one is visible)."""
    return "cuda" if on_zerogpu() else "auto"


def runtime_summary() -> dict[str, Any]:
    """Where this process runs, for logs and the page: the Space, the hardware kind, the device and profile.

    Returns:
        dict with
        - ``"space_id"``: ``"user/name"`` on a Space (its ``SPACE_ID`` variable), else None;
        - ``"spaces_package"``: bool, whether ``spaces`` is importable;
        - ``"zerogpu"``: bool, :func:`on_zerogpu`;
        - ``"device"``: :func:`default_device`;
        - ``"profile"``: :func:`pipeline.speed.default_profile` of that device.
    """
    return {
        "space_id": os.environ.get("SPACE_ID") or None,
        "spaces_package": spaces_available(),
        "zerogpu": on_zerogpu(),
        "device": default_device(),
        "profile": default_profile(default_device()),
    }
