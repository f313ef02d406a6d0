"""The photo tab's words as HTML for a keyboard and a screen reader: the grounded caption and the objects list.

Gradio-free, so that it is unit-tested alone; the app shows both in ``gr.HTML`` blocks and ``page/a11y.js`` (in
:data:`PAGE_ASSETS`, with the page's stylesheet and its other scripts) makes them live: hovering or focusing a
marked caption word or an objects list item outlines its objects over the annotated picture, from the boxes each
element carries in ``data-boxes`` as fractions of the picture (``[[x0, y0, x1, y1], ...]``, 0 to 1, so that they
fit the picture at whatever size it is shown), and the arrow keys move through the list.

- The **grounded caption** (:func:`grounded_caption_html`): the caption with each word that names a found object
  as a ``<button>`` (a keyboard reaches it, a screen reader names it: "triangles: 2 objects found"), and each word
  that names an object the segmenter did not find marked, with "(not found in the picture)" after it: a hint that
  the caption may be wrong.
- The **objects list** (:func:`objects_list_html`): a ``<ul>`` of focusable items in reading order, each saying
  its label, position and size as :func:`pipeline.describe.locate_objects` words them.

>>> found = [{"label": "circle", "box": [0.0, 0.0, 50.0, 50.0], "area": 1963}]
>>> grounding = [{"word": "circle", "start": 2, "end": 8, "label": "circle", "instances": [0]},
...              {"word": "square", "start": 13, "end": 19, "label": "square", "instances": []}]
>>> print(grounded_caption_html("A circle and square.", grounding, found, (100, 100)))
<div role="group" aria-label="The caption, its objects marked"><p class="grounded-text">A \
<button type="button" class="grounded-word" data-boxes="[[0.0, 0.0, 0.5, 0.5]]" \
aria-label="circle: 1 object found">circle</button> and <mark class="grounded-missing">square</mark> \
<span class="grounded-note">(not found in the picture)</span>.</p></div>
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..describe import locate_objects

#: The page's stylesheet and scripts (``page.css``, ``a11y.js``, ``speech.js``, ``read_aloud.js``, ``answer.js``):
#: package data, so that the app finds them in a checkout, on the Space and installed from a wheel alike.
PAGE_ASSETS = Path(__file__).resolve().parent / "page"

#: What the two blocks say before there is a photo (and what a screen reader finds there).
EMPTY_CAPTION = '<p class="grounded-empty">The caption with its objects marked appears here.</p>'
#: The grounded caption's name for a screen reader (a group: its marked words are buttons).
GROUNDED_NAME = "The caption, its objects marked"
#: Said after a caption word that names an object the segmenter did not find.
MISSING_NOTE = "(not found in the picture)"
EMPTY_OBJECTS = '<p class="objects-empty">The objects found appear here, one per line.</p>'
#: What the answer block says before a question (and what a screen reader finds there).
EMPTY_ANSWER = '<p class="answer-empty">Ask a question about the photo: its answer appears here.</p>'
#: How many earlier questions about the current photo the answer block keeps.
HISTORY_LENGTH = 5


def box_fractions(box: Sequence[float], image_size: Sequence[int]) -> list[float]:
    """A pixel box ``[x0, y0, x1, y1]`` as fractions of the picture's width and height, clipped to 0..1.

    >>> box_fractions([10, 20, 60, 120], (200, 100))
    [0.05, 0.2, 0.3, 1.0]
    """
    width, height = image_size
    if width <= 0 or height <= 0:
        raise ValueError(f"image_size must be positive (width, height), got {tuple(image_size)!r}")
    scales = (width, height, width, height)
    return [round(min(1.0, max(0.0, float(value) / scale)), 4) for value, scale in zip(box, scales)]


def _boxes_attribute(instances: Sequence[Mapping[str, Any]], indices: Sequence[int], image_size) -> str:
    boxes = [box_fractions(instances[index]["box"], image_size) for index in indices]
    return html.escape(json.dumps(boxes), quote=True)


def _objects(count: int) -> str:
    return f"{count} object{'s' if count != 1 else ''}"


def grounded_caption_html(
    caption: str,
    grounding: Sequence[Mapping[str, Any]],
    instances: Sequence[Mapping[str, Any]],
    image_size: Sequence[int],
) -> str:
    """The caption as one HTML paragraph with its object words marked (see the module docstring).

    Args:
        caption (str): the caption exactly as the grounding's offsets index it.
        grounding (Sequence[dict]): :func:`pipeline.describe.ground_caption`'s words (``word``, ``start``, ``end``,
            ``label``, ``instances``, and ``segments`` for a stuff word), in caption order. A stuff word found as a
            region is marked ``grounded-stuff``; one not found gets the same hint as an object word.
        instances (Sequence[dict]): the instances the grounding indexes; only ``box`` is read.
        image_size (tuple[int, int]): ``(width, height)`` of the picture the boxes are in, in pixels.

    Returns:
        str: ``<div role="group" aria-label="..."><p class="grounded-text">...</p></div>``, every piece of the
        caption escaped;
        :data:`EMPTY_CAPTION` for an empty caption.
    """
    if not caption.strip():
        return EMPTY_CAPTION
    pieces, position = [], 0
    for mention in sorted(grounding, key=lambda mention: mention["start"]):
        start, end = int(mention["start"]), int(mention["end"])
        if start < position or not 0 <= start < end <= len(caption):
            raise ValueError(f"grounding offsets must be in order inside the caption, got {start}..{end}")
        pieces.append(html.escape(caption[position:start]))
        word, found = html.escape(caption[start:end]), list(mention["instances"])
        regions = list(mention.get("segments", []))  # a stuff word (sky, grass, ...): the stuff model's regions
        if regions and not found:
            label = str(mention["label"])
            named = word if word.lower() == label.lower() else f"{word} ({html.escape(label)})"
            pieces.append(f'<span class="grounded-stuff" aria-label="{named}: found around the objects">{word}</span>')
        elif found:
            label = str(mention["label"])
            named = word if word.lower() == label.lower() else f"{word} ({html.escape(label)})"
            boxes = _boxes_attribute(instances, found, image_size)
            pieces.append(
                f'<button type="button" class="grounded-word" data-boxes="{boxes}"'
                f' aria-label="{named}: {_objects(len(found))} found">{word}</button>'
            )
        else:
            note = f'<span class="grounded-note">{MISSING_NOTE}</span>'
            pieces.append(f'<mark class="grounded-missing">{word}</mark> {note}')
        position = end
    pieces.append(html.escape(caption[position:]))
    text = "".join(pieces)
    return f'<div role="group" aria-label="{GROUNDED_NAME}"><p class="grounded-text">{text}</p></div>'


def objects_list_html(instances: Sequence[Mapping[str, Any]], image_size: Sequence[int]) -> str:
    """The objects as a keyboard-navigable list in reading order, each item its label, position and size.

    Args:
        instances (Sequence[dict]): the contract's instances (``label``, ``box``, ``area``).
        image_size (tuple[int, int]): ``(width, height)`` of the picture, in pixels.

    Returns:
        str: ``<ul class="objects-items" aria-label="Objects found, in reading order">`` with one
        ``<li tabindex="0" data-boxes=...>`` per object, e.g. "circle: large, in the centre (31% of the picture)";
        :data:`EMPTY_OBJECTS` when there are none.

    >>> print(objects_list_html([{"label": "dog", "box": [0, 0, 40, 40], "area": 1600}], (100, 100)))
    ... # doctest: +NORMALIZE_WHITESPACE
    <ul class="objects-items" aria-label="Objects found, in reading order: 1 object">
    <li tabindex="0" data-boxes="[[0.0, 0.0, 0.4, 0.4]]">dog: medium, at the top left (16% of the picture)</li></ul>
    """
    if not instances:
        return EMPTY_OBJECTS
    items = []
    for place in locate_objects(instances, image_size):
        share = place["share"] * 100.0
        said = f"{share:.0f}%" if share >= 1 else "under 1%"
        text = f"{place['label']}: {place['size']}, {place['position']} ({said} of the picture)"
        boxes = _boxes_attribute(instances, [place["index"]], image_size)
        items.append(f'<li tabindex="0" data-boxes="{boxes}">{html.escape(text)}</li>')
    heading = f"Objects found, in reading order: {_objects(len(instances))}"
    return f'<ul class="objects-items" aria-label="{heading}">\n' + "".join(items) + "</ul>"


def _source(answer: Mapping[str, Any]) -> str:
    if answer["source"] == "objects":
        return "from the objects found"
    return f"by the answerer {answer['source']}" if answer["source"] else "no answerer chosen"


def answer_html(
    answer: Mapping[str, Any],
    instances: Sequence[Mapping[str, Any]],
    image_size: Sequence[int],
    earlier: Sequence[Mapping[str, Any]] = (),
    *,
    outlines: str | None = None,
) -> str:
    """The answer block of the photo and live tabs: the answer's sentence in large type, the question and its source,
    a button that outlines the objects it refers to (``data-boxes``, as the caption's words) or, on the live tab,
    their outlines for the page to lay over the camera, and the earlier answers about the same photo (or camera),
    newest first.

    Args:
        answer (dict): :func:`pipeline.answering.answer_question`'s (``question``, ``sentence``, ``source``,
            ``instances``).
        instances (Sequence[dict]): the instances the answer's ``instances`` index; only ``box`` is read.
        image_size (tuple[int, int]): ``(width, height)`` of the picture the boxes are in, in pixels.
        earlier (Sequence[dict], default ()): earlier answers (``question``, ``sentence``), newest first; at most
            :data:`HISTORY_LENGTH` are shown.
        outlines (str | None, default None): the objects' outlines as SVG (:func:`pipeline.serve.overlay.outlines_svg`)
            in place of the button, kept out of view for ``page/live_overlay.js`` to lay over the camera's preview.

    Returns:
        str: escaped HTML.

    >>> cup = [{"box": [0, 0, 50, 50]}]
    >>> said = {"question": "Is there a cup?", "sentence": "Yes: 1 cup.", "source": "objects", "instances": [0]}
    >>> print(answer_html(said, cup, (100, 100)))  # doctest: +NORMALIZE_WHITESPACE
    <p class="answer-sentence">Yes: 1 cup.</p><p class="answer-question">You asked: Is there a cup? (answered
    from the objects found)</p><button type="button" class="answer-objects" data-boxes="[[0.0, 0.0, 0.5, 0.5]]">Outline
    the 1 object it refers to</button>
    """
    parts = [
        f'<p class="answer-sentence">{html.escape(answer["sentence"])}</p>',
        f'<p class="answer-question">You asked: {html.escape(answer["question"])} (answered {_source(answer)})</p>',
    ]
    if outlines is not None:
        parts.append(f'<div class="answer-outlines" aria-hidden="true">{outlines}</div>')
    elif answer["instances"]:
        boxes = _boxes_attribute(instances, list(answer["instances"]), image_size)
        parts.append(
            f'<button type="button" class="answer-objects" data-boxes="{boxes}">Outline the '
            f"{_objects(len(answer['instances']))} it refers to</button>"
        )
    if earlier:
        items = "".join(
            f"<li>{html.escape(item['question'])} {html.escape(item['sentence'])}</li>"
            for item in earlier[:HISTORY_LENGTH]
        )
        about = "the camera" if outlines is not None else "this photo"
        parts.append(f'<ol class="answer-history" aria-label="Earlier questions about {about}">{items}</ol>')
    return "".join(parts)
