"""pipeline.serve.tools: what an assistant (MCP) and view_api() read about each endpoint, from the declarations."""

from __future__ import annotations

import pytest

from pipeline.serve.tools import TOOLS, endpoint_description, tool_docstring

MENUS = {"captioner": ["shapes", "blip-base"], "segmenter": ["shapes"], "answerer": ["blip-vqa-base"]}
DEFAULTS = {"captioner": "shapes", "segmenter": "shapes", "answerer": "none"}


def test_descriptions_carry_each_option_with_its_bounds():
    assert "num_beams: an integer from 1 to 8 (default 1)" in endpoint_description("analyze")
    assert "repetition_penalty: a number from 1 to 2" in endpoint_description("analyze")
    assert "Bounds: threshold: a number from 0 to 1" in endpoint_description("segment")
    with pytest.raises(ValueError, match="no endpoint 'live_frame'"):
        endpoint_description("live_frame")
    assert "live_frame" not in TOOLS


def test_an_image_parameter_says_this_servers_limits(monkeypatch):
    text = tool_docstring("describe", ["image", "captioner", "segmenter", "options"], MENUS, DEFAULTS)
    assert "image: the picture: an http(s) URL" in text and "at most 25 MB and 40 megapixels" in text
    assert "captioner: one of this server's captioners ['shapes', 'blip-base'] (default 'shapes')" in text
    monkeypatch.setenv("PIPELINE_MAX_PIXELS", "2000000")  # an operator's lower limit is what clients read
    assert "at most 25 MB and 2 megapixels" in tool_docstring("caption", ["image"], MENUS, DEFAULTS)


def test_the_ask_tool_says_where_answers_come_from_and_the_question_bounds():
    text = tool_docstring("ask", ["image", "question", "segmenter", "answerer", "options"], MENUS, DEFAULTS)
    assert "answered from the objects it finds" in text and "sentence (a full sentence to read aloud)" in text
    assert "question: the question, a text of at most 200 characters, not empty" in text
    assert "answerer: one of this server's question answerers ['blip-vqa-base', 'none'] (default 'none')" in text
    assert "threshold: a number from 0 to 1 (default 0.5)" in text
