"""pipeline.serve.cache: load once, share, evict the least recently used over a count, size or memory budget."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from pipeline.hub import ModelUnavailableError
from pipeline.serve.cache import ModelCache, model_bytes


class FakePipeline:
    def __init__(self, name: str, parameters: int = 10):
        self.name = name
        self.model = torch.nn.Linear(parameters, 1, bias=False)


def counting_loaders(calls: list[str], delay: float = 0.0):
    def load(name: str, *, device: str = "auto", **options) -> FakePipeline:
        time.sleep(delay)
        calls.append(name)
        return FakePipeline(name)

    return {"captioner": load, "segmenter": load}


def test_loads_once_and_shares_the_model():
    calls: list[str] = []
    cache = ModelCache(device="cpu", loaders=counting_loaders(calls), memory_probe=lambda: 1 << 40)
    first = cache.get("captioner", "a")
    assert cache.get("captioner", "a") is first
    assert calls == ["a"]
    assert cache.get("segmenter", "a") is not first  # kinds are separate
    assert cache.get("segmenter", "a", min_size=320) is not cache.get("segmenter", "a")  # options are in the key


def test_concurrent_requests_share_one_load():
    calls: list[str] = []
    cache = ModelCache(device="cpu", loaders=counting_loaders(calls, delay=0.3), memory_probe=lambda: 1 << 40)
    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("captioner", "a"))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert calls == ["a"]
    assert len({id(result) for result in results}) == 1


def test_evicts_least_recently_used_beyond_max_models():
    calls: list[str] = []
    cache = ModelCache(device="cpu", max_models=2, loaders=counting_loaders(calls), memory_probe=lambda: 1 << 40)
    cache.get("captioner", "a")
    cache.get("captioner", "b")
    cache.get("captioner", "a")  # "b" is now the least recently used
    cache.get("captioner", "c")
    assert cache.loaded() == [("captioner", "a"), ("captioner", "c")]
    assert cache.evicted[0][:2] == ("captioner", "b")


def test_evicts_when_memory_is_short_but_keeps_the_new_model():
    free = {"bytes": 1 << 40}
    calls: list[str] = []
    cache = ModelCache(
        device="cpu", min_free_bytes=1 << 30, loaders=counting_loaders(calls), memory_probe=lambda: free["bytes"]
    )
    cache.get("captioner", "a")
    cache.get("segmenter", "b")
    free["bytes"] = 1 << 20  # memory is short now
    cache.get("captioner", "c")
    assert cache.loaded() == [("captioner", "c")]
    assert [key[:2] for key in cache.evicted] == [("captioner", "a"), ("segmenter", "b")]


def test_evicts_beyond_max_bytes():
    calls: list[str] = []
    one = model_bytes(FakePipeline("x"))
    cache = ModelCache(device="cpu", max_bytes=2 * one, loaders=counting_loaders(calls), memory_probe=lambda: 1 << 40)
    for name in "abc":
        cache.get("captioner", name)
    assert cache.bytes_held() <= 2 * one
    assert ("captioner", "a") not in cache.loaded()


def test_a_failed_load_is_not_cached_and_is_retried():
    attempts = []

    def failing(name: str, **options):
        attempts.append(name)
        raise ModelUnavailableError(f"captioner {name!r} is not here")

    cache = ModelCache(device="cpu", loaders={"captioner": failing}, memory_probe=lambda: 1 << 40)
    for _ in range(2):
        with pytest.raises(ModelUnavailableError, match="is not here"):
            cache.get("captioner", "missing")
    assert attempts == ["missing", "missing"]
    with pytest.raises(ValueError, match="kind must be one of"):
        cache.get("detector", "x")


def test_model_bytes_counts_parameters_and_buffers(tiny_segmenter_dir):
    from pipeline.catalog import load_segmenter

    segmenter = load_segmenter(tiny_segmenter_dir, device="cpu")
    expected = sum(t.numel() * t.element_size() for t in [*segmenter.model.parameters(), *segmenter.model.buffers()])
    assert model_bytes(segmenter) == expected > 0
    assert model_bytes(object()) == 0
