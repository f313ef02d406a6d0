"""The pipeline contract shared by every task, modelled on transformers' ``Pipeline``.

A call goes ``__call__ -> _sanitize_parameters -> preprocess -> _forward -> postprocess``:

- ``_sanitize_parameters(**kwargs)`` checks the call options against the pipeline's declarations (``call_options``,
  :class:`pipeline.options.Option`: each names its hook) and splits them into the keyword arguments of the three
  hooks, forwarding an option only when the caller gave it so that defaults live in the hook signatures;
- ``preprocess(image, **kw)`` turns one loaded RGB image into model inputs;
- ``_forward(batch, **kw)`` is the model call and nothing else; it runs under ``torch.inference_mode()``;
- ``postprocess(outputs, **kw)`` turns one image's raw outputs into plain Python data (no tensors leave).

``__call__`` accepts one image or a list; a list is processed in batches of ``batch_size`` and returns a list.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from .images import ImageInput, load_image
from .options import Option, split_by_hook


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"`` or ``None`` into a ``torch.device``.

    ``"auto"`` (and ``None``) picks CUDA when a GPU is visible, else the CPU. Asking for CUDA without a GPU is an
    error rather than a silent fall back, so that a misconfigured server says so at start-up.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        resolved = None
    if resolved is None or resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be one of 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} was asked for, but no CUDA GPU is visible to PyTorch; use 'cpu' or 'auto'"
        )
    return resolved


class Pipeline:
    """Base class: one model, the three hooks, batching, device placement and timing.

    Subclasses set ``self.model`` (in eval mode, on ``self.device``), declare their call options in ``call_options``
    (``{name: Option}``) and implement the hooks.

    Args:
        device (str | torch.device, default "auto"): where the model runs.
        batch_size (int, default 1): how many images go through ``_forward`` at once when a list is given.
        max_pixels (int | None, default None): image intake limit, see :func:`pipeline.images.load_image`.
    """

    #: The call options, declared once (name, type, default, bounds, help, hook): see :mod:`pipeline.options`.
    call_options: dict[str, Option] = {}

    def __init__(self, *, device: str | torch.device = "auto", batch_size: int = 1, max_pixels: int | None = None):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        #: Milliseconds spent in the last call, one entry per hook, summed over batches.
        self.last_timings_ms: dict[str, float] = {}

    # -- the hooks -------------------------------------------------------------------------------------------------
    def _sanitize_parameters(self, **kwargs: Any) -> tuple[dict, dict, dict]:
        """Each given option checked by its declaration and sent to its hook (a subclass adds cross-checks)."""
        return split_by_hook(self.call_options, kwargs, type(self).__name__)

    def preprocess(self, image: Any, **kwargs: Any) -> dict[str, Any]:
        raise NotImplementedError

    def _forward(self, model_inputs: list[dict[str, Any]], **kwargs: Any) -> list[Any]:
        raise NotImplementedError

    def postprocess(self, model_outputs: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    # -- the driver ------------------------------------------------------------------------------------------------
    def __call__(self, images: ImageInput | Sequence[ImageInput], **kwargs: Any) -> Any:
        """Run the pipeline on one image (returns one result) or a list of images (returns a list)."""
        preprocess_kwargs, forward_kwargs, postprocess_kwargs = self._sanitize_parameters(**kwargs)
        single = not isinstance(images, (list, tuple))
        batch = [images] if single else list(images)
        timings = {"preprocess": 0.0, "forward": 0.0, "postprocess": 0.0}
        results = []
        for start in range(0, len(batch), self.batch_size):
            chunk = batch[start : start + self.batch_size]
            tick = time.perf_counter()
            model_inputs = [self.preprocess(self.load(image), **preprocess_kwargs) for image in chunk]
            timings["preprocess"] += _ms_since(tick)
            tick = time.perf_counter()
            with torch.inference_mode():
                model_outputs = self._forward(model_inputs, **forward_kwargs)
            timings["forward"] += _ms_since(tick)
            tick = time.perf_counter()
            results.extend(self.postprocess(output, **postprocess_kwargs) for output in model_outputs)
            timings["postprocess"] += _ms_since(tick)
        self.last_timings_ms = timings
        return results[0] if single else results

    def load(self, image: ImageInput) -> Any:
        """Image intake for one input; a subclass may accept more (the combined pipeline takes loaded images)."""
        return load_image(image, max_pixels=self.max_pixels)


def _ms_since(tick: float) -> float:
    return (time.perf_counter() - tick) * 1000.0
