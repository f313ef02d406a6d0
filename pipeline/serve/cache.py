"""A process-wide model cache: each model loads once, is shared by every request, and the least recently used
ones are evicted when memory runs short.

A server holds one :class:`ModelCache`. Requests ask it for a pipeline by kind and name; the first request loads the
model (others asking for the same model meanwhile wait for that one load instead of starting their own), later ones
get the same object. Before a new model loads, models are evicted least recently used first while the cache holds
more than ``max_models``, or the models it holds weigh more than ``max_bytes``, or the machine has less than
``min_free_bytes`` of memory available. A request still using an evicted model keeps it alive until it finishes;
the memory returns when the last reference goes.

>>> cache = ModelCache(device="cpu")
>>> segmenter = cache.get("segmenter", "shapes")
>>> segmenter is cache.get("segmenter", "shapes")
True
"""

from __future__ import annotations

import gc
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import psutil
import torch

from ..catalog import KINDS, load_answerer, load_captioner, load_segmenter, load_stuff
from ..hub import ModelUnavailableError

Loader = Callable[..., Any]


def model_bytes(pipeline: Any) -> int:
    """Bytes held by a pipeline's model parameters and buffers (0 for an object without ``.model``)."""
    model = getattr(pipeline, "model", None)
    if not isinstance(model, torch.nn.Module):
        return 0
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


def available_memory() -> int:
    """Bytes of memory the machine can still give without swapping (``psutil.virtual_memory().available``)."""
    return int(psutil.virtual_memory().available)


class ModelCache:
    """Load-once, least-recently-used cache of captioner and segmenter pipelines.

    Args:
        device (str, default "auto"): where models run, passed to the loaders.
        max_models (int | None, default None): hold at most this many models; None for no count limit.
        max_bytes (int | None, default None): hold at most this many bytes of weights; None for no size limit.
        min_free_bytes (int, default 1 GiB): before loading, evict until the machine has this much memory free
            (or nothing is left to evict).
        loaders (dict[str, Callable] | None, default None): ``{"captioner": fn, "segmenter": fn, "stuff": fn,
            "answerer": fn}`` (any of them) called as ``fn(name, device=..., **options)``; defaults to
            :func:`~pipeline.catalog.load_captioner`, :func:`~pipeline.catalog.load_segmenter`,
            :func:`~pipeline.catalog.load_stuff` and :func:`~pipeline.catalog.load_answerer`.
        memory_probe (Callable[[], int] | None, default None): returns the free bytes; defaults to
            :func:`available_memory` (tests pass their own).
    """

    def __init__(
        self,
        *,
        device: str = "auto",
        max_models: int | None = None,
        max_bytes: int | None = None,
        min_free_bytes: int = 1 << 30,
        loaders: dict[str, Loader] | None = None,
        memory_probe: Callable[[], int] | None = None,
    ):
        if max_models is not None and max_models < 1:
            raise ValueError(f"max_models must be a positive integer or None, got {max_models!r}")
        self.device = device
        self.max_models = max_models
        self.max_bytes = max_bytes
        self.min_free_bytes = min_free_bytes
        defaults = {
            "captioner": load_captioner,
            "segmenter": load_segmenter,
            "stuff": load_stuff,
            "answerer": load_answerer,
        }
        self.loaders = {**defaults, **(loaders or {})}
        self.memory_probe = memory_probe or available_memory
        self._models: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[Hashable, threading.Lock] = {}
        self._status: dict[tuple[str, str], str] = {}
        #: Keys evicted so far, oldest first (for logs and tests).
        self.evicted: list[Hashable] = []

    def get(self, kind: str, name: str, **options: Any) -> Any:
        """The pipeline for ``(kind, name, options)``, loading it on first use.

        Args:
            kind (str): one of :data:`pipeline.catalog.KINDS`.
            name (str): a catalog name (or anything the loader accepts).
            **options: extra loader keyword arguments; part of the cache key (hashable values only).

        Returns:
            the loaded pipeline, the same object on every call until it is evicted.

        Raises:
            ValueError: an unknown kind or name.
            ModelUnavailableError: the loader could not load it (nothing is cached then; the next call retries).
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        key = (kind, name, tuple(sorted(options.items())))
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key][0]
            load_lock = self._loading.setdefault(key, threading.Lock())
        with load_lock:  # one load per key; concurrent callers of the same key wait for it
            with self._lock:
                if key in self._models:
                    self._models.move_to_end(key)
                    return self._models[key][0]
            self._make_room()
            self._status[(kind, name)] = "loading"
            try:
                pipeline = self.loaders[kind](name, device=self.device, **options)
            except Exception as error:
                self._status[(kind, name)] = public_message(error)
                with self._lock:
                    self._loading.pop(key, None)
                raise
            self._status[(kind, name)] = "ready"
            with self._lock:  # held in one block with the lock's removal: a caller arriving now finds the model
                self._models[key] = (pipeline, model_bytes(pipeline))
                self._models.move_to_end(key)
                self._loading.pop(key, None)
            self._make_room(keep=key)
            return pipeline

    def _over_budget(self, extra_models: int) -> bool:
        count = len(self._models) + extra_models
        if self.max_models is not None and count > self.max_models:
            return True
        if self.max_bytes is not None and self.bytes_held() > self.max_bytes:
            return True
        return self.memory_probe() < self.min_free_bytes

    def _make_room(self, keep: Hashable | None = None) -> None:
        """Evict least recently used models until within budget; ``keep`` (the model just loaded) is never evicted."""
        extra = 0 if keep is not None else 1
        evicted = False
        while True:
            with self._lock:
                candidates = [key for key in self._models if key != keep]
                if not candidates or not self._over_budget(extra):
                    break
                victim = candidates[0]
                del self._models[victim]
                self.evicted.append(victim)
                evicted = True
        if evicted:
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def status(self, kind: str, name: str) -> str | None:
        """``"loading"``, ``"ready"``, why its last load failed (no server paths), or None if never asked for."""
        return self._status.get((kind, name))

    def preload(self, wanted: list[tuple[str, str]], report: Callable[[str], None] = print) -> None:
        """Load models one after the other (a server's defaults, behind its page), reporting each outcome;
        a model that fails is reported and left out, the others still load."""
        for kind, name in wanted:
            self._status.setdefault((kind, name), "loading")
        for kind, name in wanted:
            try:
                self.get(kind, name)
                report(f"loaded {kind} {name!r}")
            except Exception as error:  # reported; the page says why, the server keeps serving
                report(f"warning: {error}")

    def loading(self) -> bool:
        """Whether a model is loading now (the page polls its notes while one is)."""
        return "loading" in self._status.values()

    def bytes_held(self) -> int:
        """Bytes of model weights the cache holds."""
        return sum(size for _, size in self._models.values())

    def loaded(self) -> list[tuple[str, str]]:
        """``(kind, name)`` of the models held, least recently used first."""
        with self._lock:
            return [(kind, name) for kind, name, _ in self._models]

    def clear(self) -> None:
        """Drop every model."""
        with self._lock:
            self._models.clear()
        gc.collect()


def public_message(error: Exception) -> str:
    """What a client may read of a model's failure: :attr:`ModelUnavailableError.public` (no server paths)."""
    if isinstance(error, ModelUnavailableError):
        return error.public
    return f"{type(error).__name__} while loading the model; the server's log has the details"
