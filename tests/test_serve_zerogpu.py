"""pipeline/serve/zerogpu.py with and without the ``spaces`` package.

ZeroGPU cannot run here, so "present" is a stand-in ``spaces`` module put on ``sys.path`` for the test: it has the
real ``spaces.GPU(task=None, *, duration=None, size=None)`` signature, records how it was called, and wraps the
function the way the real one does off ZeroGPU (the function still runs, its name and signature kept).
"""

from __future__ import annotations

import importlib
import inspect
import sys
import textwrap

import pytest

import pipeline.serve.zerogpu as zerogpu
from pipeline.speed import default_profile

FAKE_SPACES = textwrap.dedent(
    '''
    """A stand-in for Hugging Face's ``spaces`` package: records every ``GPU`` decoration and call."""
    import functools

    decorations = []
    calls = []


    def GPU(task=None, *, duration=None, size=None):
        def decorate(function):
            decorations.append({"function": function.__name__, "duration": duration, "size": size})

            @functools.wraps(function)
            def wrapper(*args, **kwargs):
                calls.append(function.__name__)
                return function(*args, **kwargs)

            wrapper.zerogpu = None
            return wrapper

        return decorate if task is None else decorate(task)
    '''
)


@pytest.fixture
def with_spaces(tmp_path, monkeypatch):
    """pipeline.serve.zerogpu re-imported with the stand-in ``spaces`` importable; restored afterwards."""
    (tmp_path / "spaces.py").write_text(FAKE_SPACES)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "spaces", raising=False)
    yield importlib.reload(zerogpu)
    monkeypatch.undo()
    sys.modules.pop("spaces", None)
    importlib.reload(zerogpu)


@pytest.fixture
def without_spaces(monkeypatch):
    """pipeline.serve.zerogpu re-imported where ``import spaces`` fails, as on a machine without it."""
    monkeypatch.setitem(sys.modules, "spaces", None)  # None in sys.modules makes the import raise ImportError
    yield importlib.reload(zerogpu)
    monkeypatch.undo()
    importlib.reload(zerogpu)


def analyse(image_size: int, *, beams: int = 1) -> dict[str, int]:
    """A stand-in for GPU work."""
    return {"pixels": image_size * image_size, "beams": beams}


def test_with_spaces_the_function_is_wrapped_by_spaces_gpu_and_still_runs(with_spaces):
    import spaces

    assert with_spaces.spaces_available()
    decorated = with_spaces.gpu(duration=20)(analyse)
    assert decorated is not analyse and hasattr(decorated, "zerogpu")
    assert spaces.decorations == [{"function": "analyse", "duration": 20, "size": None}]
    assert decorated(8, beams=3) == {"pixels": 64, "beams": 3}
    assert spaces.calls == ["analyse"]
    assert inspect.signature(decorated) == inspect.signature(analyse)  # Gradio reads the handler's signature


def test_with_spaces_size_and_dynamic_duration_are_passed_on(with_spaces):
    import spaces

    def seconds(image_size: int, *, beams: int = 1) -> float:
        return 5.0 * beams

    with_spaces.gpu(duration=seconds, size="xlarge")(analyse)
    assert spaces.decorations[-1] == {"function": "analyse", "duration": seconds, "size": "xlarge"}


def test_without_spaces_the_function_is_returned_unchanged(without_spaces):
    assert not without_spaces.spaces_available()
    decorated = without_spaces.gpu(duration=20)(analyse)
    assert decorated is analyse
    assert decorated(4) == {"pixels": 16, "beams": 1}


@pytest.mark.parametrize("duration", [0, -5, True, "60", None])
def test_bad_durations_are_refused(duration):
    with pytest.raises(ValueError, match="duration must be a positive number of seconds"):
        zerogpu.gpu(duration=duration)


def test_bad_size_is_refused():
    with pytest.raises(ValueError, match=r"size must be one of \('large', 'xlarge'\)"):
        zerogpu.gpu(size="huge")


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("1", True), ("false", False), ("", False)])
def test_on_zerogpu_reads_the_variable_spaces_sets(monkeypatch, value, expected):
    monkeypatch.setenv("SPACES_ZERO_GPU", value)
    assert zerogpu.on_zerogpu() is expected


def test_defaults_on_zerogpu_and_on_cpu(monkeypatch):
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setenv("SPACE_ID", "someone/describe")
    assert zerogpu.default_device() == "cuda"
    assert default_profile(zerogpu.default_device()) == "full"
    summary = zerogpu.runtime_summary()
    assert summary["zerogpu"] is True and summary["space_id"] == "someone/describe"
    monkeypatch.delenv("SPACES_ZERO_GPU")
    assert zerogpu.default_device() == "auto"
    assert default_profile("cpu") == "fast"
    assert default_profile("cuda") == "full"


def test_default_profile_names_a_real_profile():
    from pipeline.speed import PROFILES

    assert default_profile("cpu") in PROFILES and default_profile("cuda") in PROFILES
