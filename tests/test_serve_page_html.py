"""pipeline.serve.page_html: the grounded caption and the objects list as HTML, on scenes whose truth is known."""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser

import pytest

from pipeline.describe import SHAPES_LABELS, ground_caption
from pipeline.serve.page_html import (
    EMPTY_CAPTION,
    EMPTY_OBJECTS,
    GROUNDED_NAME,
    MISSING_NOTE,
    box_fractions,
    grounded_caption_html,
    objects_list_html,
)

SIZE = (200, 100)
#: Two triangles (left, right) and a circle at the bottom centre, as a shapes segmenter would find them.
FOUND = [
    {"label": "triangle", "box": [10.0, 35.0, 50.0, 65.0], "area": 600},
    {"label": "triangle", "box": [150.0, 35.0, 190.0, 65.0], "area": 600},
    {"label": "circle", "box": [80.0, 70.0, 120.0, 100.0], "area": 900},
]


class Elements(HTMLParser):
    """Every element's tag, attributes and text, in document order (the text of nested elements included)."""

    def __init__(self, markup: str):
        super().__init__()
        self.found: list[dict] = []
        self.open: list[dict] = []
        self.feed(markup)

    def handle_starttag(self, tag, attrs):
        element = {"tag": tag, "attrs": dict(attrs), "text": ""}
        self.found.append(element)
        self.open.append(element)

    def handle_endtag(self, tag):
        self.open.pop()

    def handle_data(self, data):
        for element in self.open:
            element["text"] += data

    def tagged(self, tag: str) -> list[dict]:
        return [element for element in self.found if element["tag"] == tag]


def test_found_words_are_named_buttons_with_their_boxes_and_missing_words_say_so():
    caption = "Two triangles, a circle & a square."
    grounding = ground_caption(caption, FOUND, labels=SHAPES_LABELS)
    assert [(g["word"], g["instances"]) for g in grounding] == [("triangles", [0, 1]), ("circle", [2]), ("square", [])]
    markup = grounded_caption_html(caption, grounding, FOUND, SIZE)
    page = Elements(markup)
    # The caption reads as it is written (escaped), with the note after the word the segmenter did not find.
    assert page.found[0]["attrs"] == {"role": "group", "aria-label": GROUNDED_NAME}
    assert page.tagged("p")[0]["text"] == f"Two triangles, a circle & a square {MISSING_NOTE}."
    assert "&amp;" in markup
    buttons = page.tagged("button")
    assert [b["text"] for b in buttons] == ["triangles", "circle"]
    assert [b["attrs"]["aria-label"] for b in buttons] == [
        "triangles (triangle): 2 objects found",
        "circle: 1 object found",
    ]
    assert json.loads(buttons[0]["attrs"]["data-boxes"]) == [[0.05, 0.35, 0.25, 0.65], [0.75, 0.35, 0.95, 0.65]]
    assert json.loads(buttons[1]["attrs"]["data-boxes"]) == [[0.4, 0.7, 0.6, 1.0]]
    assert [m["text"] for m in page.tagged("mark")] == ["square"]


def test_a_caption_is_escaped_and_an_empty_one_says_what_will_come():
    caption = '<script>alert("x")</script> a circle'
    markup = grounded_caption_html(caption, ground_caption(caption, FOUND, SHAPES_LABELS), FOUND, SIZE)
    assert "<script>" not in markup and html.unescape(re.sub(r"<[^>]+>", "", markup)) == caption
    assert grounded_caption_html("  ", [], [], SIZE) == EMPTY_CAPTION
    with pytest.raises(ValueError, match="grounding offsets"):
        grounded_caption_html("a circle", [{"word": "x", "start": 5, "end": 40, "label": "circle", "instances": []}],
                              FOUND, SIZE)  # fmt: skip


def test_objects_list_items_are_focusable_in_reading_order_with_label_position_and_size():
    page = Elements(objects_list_html(FOUND, SIZE))
    (listing,) = page.tagged("ul")
    assert listing["attrs"]["aria-label"] == "Objects found, in reading order: 3 objects"
    items = page.tagged("li")
    assert [item["text"] for item in items] == [
        "triangle: medium, on the left (3% of the picture)",
        "triangle: medium, on the right (3% of the picture)",
        "circle: medium, at the bottom (4% of the picture)",
    ]
    assert all(item["attrs"]["tabindex"] == "0" for item in items)
    assert json.loads(items[2]["attrs"]["data-boxes"]) == [[0.4, 0.7, 0.6, 1.0]]
    assert objects_list_html([], SIZE) == EMPTY_OBJECTS


def test_box_fractions_clip_to_the_picture_and_refuse_an_empty_one():
    assert box_fractions([-5, 0, 250, 50], SIZE) == [0.0, 0.0, 1.0, 0.5]
    with pytest.raises(ValueError, match="image_size must be positive"):
        box_fractions([0, 0, 1, 1], (0, 10))
