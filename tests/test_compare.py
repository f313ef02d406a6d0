"""pipeline.compare: several captioners on one image, each timed, a failing one reported in its row."""

from __future__ import annotations

import pytest
from helpers import draw_shapes

from pipeline import ModelUnavailableError, load_captioner
from pipeline.compare import compare_captioners, format_comparison, load_once


@pytest.fixture(scope="module")
def captioners(tiny_blip_dir, tiny_vit_gpt2_dir, tiny_git_dir):
    return {
        "blip": load_captioner(tiny_blip_dir, device="cpu"),
        "vit-gpt2": load_captioner(tiny_vit_gpt2_dir, device="cpu"),
        "git": load_captioner(tiny_git_dir, device="cpu"),
    }


def test_each_captioner_captions_in_order_with_its_time(captioners):
    image = draw_shapes(seed=2)
    rows = compare_captioners(image, captioners, max_new_tokens=8)
    assert [row["name"] for row in rows] == ["blip", "vit-gpt2", "git"]
    for row, captioner in zip(rows, captioners.values(), strict=True):
        assert row["error"] is None and row["milliseconds"] > 0
        assert row["caption"] == captioner(image, max_new_tokens=8)["caption"] != ""
    by_list = compare_captioners(image, list(captioners.values()), max_new_tokens=8)
    assert [row["caption"] for row in by_list] == [row["caption"] for row in rows]
    assert [row["name"] for row in by_list] == [captioner.name for captioner in captioners.values()]


def test_a_failing_captioner_gives_its_error_in_its_row(captioners):
    def unavailable():
        raise ModelUnavailableError("captioner 'gone' is not in /srv/models", public="captioner 'gone' is not here")

    loaders = {"gone": unavailable, **captioners}
    rows = compare_captioners(draw_shapes(), loaders, prompt="a picture of", max_new_tokens=6)
    by_name = {row["name"]: row for row in rows}
    assert by_name["gone"]["caption"] is None and "/srv/models" in by_name["gone"]["error"]
    assert by_name["vit-gpt2"]["caption"] is None and "takes no prompt" in by_name["vit-gpt2"]["error"]
    for name in ("blip", "git"):  # the others still ran, with the prompt
        assert by_name[name]["error"] is None and by_name[name]["caption"].startswith("A picture of")
    public = compare_captioners(draw_shapes(), {"gone": unavailable}, public=True)
    assert public[0]["error"] == "captioner 'gone' is not here"  # no path of the server
    lines = format_comparison(rows)
    assert lines[0] == "gone      error: captioner 'gone' is not in /srv/models"
    assert lines[1].startswith("blip      A picture of") and lines[1].endswith(" ms)")


def test_load_once_loads_once_and_repeats_its_error():
    calls = []

    def failing():
        calls.append("try")
        raise ValueError("unknown captioner 'nope'")

    once = load_once(failing)
    for _ in range(3):
        with pytest.raises(ValueError, match="unknown captioner 'nope'"):
            once()
    assert calls == ["try"]


def test_bad_calls_are_refused(captioners):
    with pytest.raises(ValueError, match="at least one captioner"):
        compare_captioners(draw_shapes(), {})
    with pytest.raises(ValueError, match="names must be different"):
        compare_captioners(draw_shapes(), [captioners["blip"], captioners["blip"]])
    with pytest.raises(ValueError, match="not an image"):
        compare_captioners(b"not an image at all", captioners)
