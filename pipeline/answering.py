"""Questions about a picture that its objects answer: how many, whether there is one, and where.

The segmenter knows counts and positions better than any captioner, so a question of one of these kinds about a
label the segmenter knows (its own label names, their synonyms and plurals, as :func:`pipeline.describe.ground_caption`
finds them) is answered from the instances alone: no model runs. Other questions (a colour, an activity, "what is
the man holding") are a question-answering model's, and :func:`answer_from_objects` returns None for them; but when
such a question names only objects the segmenter knows and did not find ("What colour is the square?" with no square
found), :func:`answer_question` answers it from the objects too (``answer`` :data:`NOT_FOUND`, "I see no square."):
a model asked about something that is not there makes an answer up ("red"). When the question names objects the
segmenter found, the model looks at them (:func:`focus`: the square around their boxes), not at the whole picture:
the shapes answerer named the colour of "the square" right in 0.811 of the held-out questions from the whole picture
and in 0.928 from the square around the square.

An answer follows the output contract for questions: ``{"question", "answer", "sentence", "source", "instances"}``
with ``answer`` short, VQA style (a number in digits, "yes" or "no", a place), ``sentence`` a full sentence to read
aloud, ``source`` ``"objects"`` (or the answering model's name), and ``instances`` the indices of the objects it
refers to, so that a page can outline them. Positions are :func:`pipeline.describe.locate_objects`' thirds of the
picture.

>>> cups = [{"label": "cup", "score": 0.9, "box": [5, 40, 25, 60], "area": 300},
...         {"label": "cup", "score": 0.8, "box": [40, 40, 60, 60], "area": 300}]
>>> answer_from_objects("How many cups are on the table?", cups, (100, 100))["sentence"]
'There are 2 cups: one on the left and one in the centre.'
>>> answer_from_objects("Is there a dog?", cups, (100, 100))["answer"]
'no'
>>> answer_from_objects("What colour is the cup?", cups, (100, 100)) is None
True
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from PIL import Image

from .base import Pipeline
from .captioning import caption_sentence
from .describe import count_phrase, ground_caption, locate_objects, noun
from .options import Option, by_name

#: A question, as a client may ask it: a text of at most 200 characters, not empty.
QUESTION = Option("question", "text", "", "a question about the picture", hook="preprocess", max_length=200)
#: The answering models' call options, declared once (see :mod:`pipeline.options`).
ANSWER_OPTIONS = (
    QUESTION,
    Option("max_new_tokens", "int", 10, "the longest answer, in tokens", hook="forward", low=1, limit=20,
           public=False),
)  # fmt: skip
#: What an answer says when no answering model is given and the objects cannot answer.
NO_ANSWERER = (
    "I can answer how many, is there and where questions about the objects I know; other questions need a "
    "question-answering model."
)
#: The short answer to a question about objects the segmenter knows and did not find ("Where is the dog?", "What
#: colour is the square?" when it found none): the objects answer it, not a model, which would make one up.
NOT_FOUND = "not found"
#: The kinds of question the objects answer, each recognised by how the question starts.
QUESTION_KINDS = {
    "count": re.compile(r"^\s*how\s+many\b", re.IGNORECASE),
    "presence": re.compile(r"^\s*(is|are)\s+there\b|^\s*(do|can)\s+you\s+see\b|^\s*any\b", re.IGNORECASE),
    "where": re.compile(r"^\s*where\b", re.IGNORECASE),
}
#: How far the part of the picture an answering model sees reaches beyond the objects its question names: this share
#: of the square's side on each side of their boxes (:func:`focus`). The tighter the better for the shapes answerer's
#: colours through ``/ask`` (0.928 of the 360 held-out questions with none, 0.914 with 0.05, 0.911 with 0.1).
FOCUS_MARGIN = 0.0


def check_question(question: Any) -> str:
    """The question, stripped, or a ValueError that says what is wrong (not a text, empty, over 200 characters).

    >>> check_question("  Is there a dog? ")
    'Is there a dog?'
    """
    text = QUESTION.check(question, bounded=True).strip()
    if not text:
        raise ValueError("question must not be empty: ask something about the picture, e.g. 'Is there a dog?'")
    return text


def question_kind(question: str) -> str | None:
    """``"count"``, ``"presence"`` or ``"where"`` when the question is of a kind the objects answer, else None.

    >>> question_kind("How many people?"), question_kind("Are there cars?"), question_kind("What is this?")
    ('count', 'presence', None)
    """
    return next((kind for kind, pattern in QUESTION_KINDS.items() if pattern.search(question)), None)


def _places(places: Sequence[Mapping[str, Any]]) -> str:
    """Where objects are, in reading order: "on the left", "one on the left and 2 in the centre"."""
    counts: dict[str, int] = {}
    for place in places:
        counts[place["position"]] = counts.get(place["position"], 0) + 1
    if len(places) == 1:
        return places[0]["position"]
    parts = [f"{'one' if count == 1 else count} {position}" for position, count in counts.items()]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + f" and {parts[-1]}"


def _there_are(label: str, places: Sequence[Mapping[str, Any]]) -> str:
    """Several objects of one label, counted and placed: "There are 2 cups: one on the left and one in the centre."."""
    return f"There are {count_phrase(label, len(places))}: {_places(places)}."


def _none_of(words: Sequence[Mapping[str, Any]]) -> str:
    """What a question names and the segmenter did not find: "I see no square.", "I see no dogs and no frisbee."."""
    missing = {word["label"]: noun(word["label"], 2 if word["word"].lower().endswith("s") else 1) for word in words}
    return "I see " + " and ".join(f"no {name}" for name in missing.values()) + "."


def focus(
    image: Image.Image,
    boxes: Sequence[Sequence[float]],
    image_size: Sequence[int] | None = None,
    margin: float = FOCUS_MARGIN,
) -> Image.Image:
    """The square part of a picture around some objects' boxes, what an answering model looks at for a question
    that names them: a colour is the object's own, and a model shown the whole picture answers with another
    object's. The square is centred on the boxes' union, its side the union's longer side plus ``margin`` of it on
    each side; what falls outside the picture is black (the square is not cut, so shapes keep their proportions
    when the model resizes it).

    Args:
        image (PIL.Image.Image): the picture.
        boxes (Sequence[Sequence[float]]): ``[x0, y0, x1, y1]`` boxes, in pixels of ``image_size``; not empty.
        image_size (Sequence[int] | None, default None): ``(width, height)`` the boxes are in, when ``image`` is a
            copy of another size; None: ``image.size``.
        margin (float, default :data:`FOCUS_MARGIN`): the share of the square's side added on each side.

    Returns:
        PIL.Image.Image: the square, at least 1 x 1 pixel.

    >>> from PIL import Image
    >>> focus(Image.new("RGB", (200, 100)), [[10, 20, 50, 40], [60, 30, 90, 60]], margin=0.0).size
    (80, 80)
    >>> focus(Image.new("RGB", (100, 50)), [[10, 20, 50, 40]], image_size=(200, 100), margin=0.0).size
    (20, 20)
    """
    if not boxes:
        raise ValueError("focus needs at least one box, got none")
    scale_x, scale_y = (image.width / image_size[0], image.height / image_size[1]) if image_size else (1.0, 1.0)
    x0, y0 = min(box[0] for box in boxes) * scale_x, min(box[1] for box in boxes) * scale_y
    x1, y1 = max(box[2] for box in boxes) * scale_x, max(box[3] for box in boxes) * scale_y
    side = max(1.0, max(x1 - x0, y1 - y0) * (1 + 2 * margin))
    left, top = round((x0 + x1 - side) / 2), round((y0 + y1 - side) / 2)
    return image.crop((left, top, left + round(side), top + round(side)))


def answer_from_objects(
    question: str,
    instances: Sequence[Mapping[str, Any]],
    image_size: Sequence[int],
    *,
    labels: Iterable[str] | None = None,
) -> dict[str, Any] | None:
    """Answer a counting, presence or location question from the objects found, or None when they cannot.

    Args:
        question (str): the question, at most 200 characters (:func:`check_question`).
        instances (Sequence[dict]): the contract's instances (``label``, ``box``, ``area``; masks are not read).
        image_size (tuple[int, int]): ``(width, height)`` of the picture, in pixels.
        labels (Iterable[str] | None, default None): the segmenter's label names, what it could have found
            (None: the 80 COCO labels); a question about anything else is not answered here.

    Returns:
        dict with ``"question"``, ``"answer"`` (short), ``"sentence"`` (to read aloud), ``"source"``
        (``"objects"``) and ``"instances"`` (indices into ``instances``); or None when the question is not one
        of :data:`QUESTION_KINDS` or names no label the segmenter knows.

    Raises:
        ValueError: a question that is not a text, is empty or is over 200 characters.
    """
    question = check_question(question)
    kind = question_kind(question)
    named = ground_caption(question, instances, labels) if kind else []
    if not named:
        return None
    label, found = named[0]["label"], named[0]["instances"]
    places = [place for place in locate_objects(instances, image_size) if place["index"] in set(found)]
    count = len(found)
    if kind == "count":
        answer = str(count)
        if count == 0:
            sentence = f"There are no {noun(label, 2)}."
        elif count == 1:
            sentence = f"There is {count_phrase(label, 1)}, {_places(places)}."
        else:
            sentence = _there_are(label, places)
    elif kind == "presence":
        answer = "yes" if count else "no"
        if count:
            sentence = f"Yes: {count_phrase(label, count)}, {_places(places)}."
        else:
            sentence = f"No, I see no {noun(label, 2 if named[0]['word'].lower().endswith('s') else 1)}."
    else:
        answer = _places(places) if count else NOT_FOUND
        if count == 0:
            sentence = f"I see no {noun(label)}."
        elif count == 1:
            sentence = f"The {noun(label)} is {_places(places)}."
        else:
            sentence = _there_are(label, places)
    return {"question": question, "answer": answer, "sentence": sentence, "source": "objects", "instances": found}


class AnswerPipeline(Pipeline):
    """Answer a question about images with a transformers visual question-answering model (BLIP VQA:
    ``BlipForQuestionAnswering``, e.g. ``Salesforce/blip-vqa-base``).

    Args:
        model (transformers.PreTrainedModel): a VQA generation model; moved to ``device``, eval mode.
        processor (Any): its processor (``BlipProcessor``), called with ``images=`` and ``text=``.
        name (str, default "custom"): the catalog name, the ``source`` of its answers.
        device, batch_size, max_pixels: see :class:`pipeline.base.Pipeline`.

    Call options (:data:`ANSWER_OPTIONS`):
        question (str): required; at most 200 characters, not empty (:func:`check_question`); the same for every
            image of a list.
        max_new_tokens (int, default 10): the longest answer, in tokens.

    Returns (per image):
        dict with
        - ``"answer"``: the model's short answer, VQA style (``"2"``, ``"yes"``, ``"red"``), single spaced.

    >>> from pipeline import load_answerer
    >>> answerer = load_answerer("shapes", device="cpu")  # or "blip-vqa-base"
    >>> answerer("space/examples/shapes.png", question="What colour is the circle?")
    {'answer': 'blue'}
    """

    call_options = by_name(ANSWER_OPTIONS)

    def __init__(self, model: Any, processor: Any, *, name: str = "custom", **kwargs: Any):
        super().__init__(**kwargs)
        if not hasattr(model, "generate"):
            raise TypeError(f"model must be a transformers generation model, got {type(model).__name__}")
        self.name = name
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.model = model.to(self.device).eval()
        self.dtype = next(self.model.parameters()).dtype

    def _sanitize_parameters(self, **kwargs: Any) -> tuple[dict, dict, dict]:
        if "question" not in kwargs:
            raise TypeError("AnswerPipeline needs a question=..., e.g. answerer(image, question='What colour is it?')")
        preprocess_kwargs, forward_kwargs, postprocess_kwargs = super()._sanitize_parameters(**kwargs)
        preprocess_kwargs["question"] = check_question(preprocess_kwargs["question"])
        return preprocess_kwargs, forward_kwargs, postprocess_kwargs

    def preprocess(self, image: Image.Image, question: str = "") -> dict[str, torch.Tensor]:
        return dict(self.processor(images=image, text=question, return_tensors="pt"))

    def _forward(self, model_inputs: list[dict[str, torch.Tensor]], max_new_tokens: int = 10) -> list[torch.Tensor]:
        # One question per call, so the text inputs of a batch have one length and stack as they are.
        batch = {key: torch.cat([inputs[key] for inputs in model_inputs]).to(self.device) for key in model_inputs[0]}
        batch["pixel_values"] = batch["pixel_values"].to(self.dtype)
        return list(self.model.generate(**batch, max_new_tokens=max_new_tokens).cpu())

    def postprocess(self, sequence: torch.Tensor) -> dict[str, str]:
        return {"answer": " ".join(self.tokenizer.decode(sequence, skip_special_tokens=True).split())}


def answer_question(
    question: str,
    image: Image.Image,
    instances: Sequence[Mapping[str, Any]],
    *,
    labels: Iterable[str] | None = None,
    answerer: AnswerPipeline | None = None,
    image_size: Sequence[int] | None = None,
    **answer_options: Any,
) -> dict[str, Any]:
    """Answer a question about a picture from the right source: its objects when they can
    (:func:`answer_from_objects`), else the answering model.

    Args:
        question (str): at most 200 characters, not empty.
        image (PIL.Image.Image): the picture the instances were found in (only the model looks at it).
        instances (Sequence[dict]): the contract's instances of the picture.
        labels (Iterable[str] | None, default None): the segmenter's label names (None: the 80 COCO labels).
        answerer (AnswerPipeline | None, default None): the model for the other questions; None answers them with
            :data:`NO_ANSWERER` (``answer`` empty, ``source`` None).
        image_size (Sequence[int] | None, default None): ``(width, height)`` of the picture the instances' boxes
            are in, when ``image`` is a copy of another size (a page's display copy); None: ``image.size``.
        **answer_options: the answerer's other call options (``max_new_tokens``).

    Returns:
        dict with ``"question"``, ``"answer"``, ``"sentence"``, ``"source"`` (``"objects"``, the answerer's name,
        or None when nobody could answer) and ``"instances"`` (from the model: the objects its question names, which
        is all of the picture it sees, :func:`focus`, when there are any).
        A question that names objects the segmenter knows, none of which it found, is answered from the objects
        whatever its kind: ``answer`` :data:`NOT_FOUND`, ``sentence`` "I see no square.", ``instances`` empty.

    >>> from PIL import Image
    >>> cups = [{"label": "cup", "score": 0.9, "box": [5, 40, 25, 60], "area": 300}]
    >>> answer_question("What colour is the cup?", Image.new("RGB", (100, 100)), cups)["instances"]
    [0]
    >>> answer_question("What colour are the dogs?", Image.new("RGB", (100, 100)), cups)["sentence"]
    'I see no dogs.'
    """
    question = check_question(question)
    found = answer_from_objects(question, instances, image_size or image.size, labels=labels)
    if found is not None:
        return found
    words = ground_caption(question, instances, labels)
    named = sorted({index for word in words for index in word["instances"]})
    if words and not named:  # it asks about objects the segmenter knows and did not find: no model guesses them
        return {"question": question, "answer": NOT_FOUND, "sentence": _none_of(words), "source": "objects",
                "instances": []}  # fmt: skip
    if answerer is None:
        return {"question": question, "answer": "", "sentence": NO_ANSWERER, "source": None, "instances": named}
    seen = focus(image, [instances[index]["box"] for index in named], image_size) if named else image
    answer = answerer(seen, question=question, **answer_options)["answer"]
    sentence = caption_sentence(answer) if answer else "I could not find an answer."
    return {"question": question, "answer": answer, "sentence": sentence, "source": answerer.name, "instances": named}
