"""pipeline.answering: how many, whether there is, where, answered from the objects on scenes whose truth is known."""

from __future__ import annotations

import pytest

from pipeline.answering import answer_from_objects, check_question, question_kind
from pipeline.describe import SHAPES_LABELS

SIZE = (300, 300)  # thirds of 100 px: left/centre/right, top/middle/bottom


def thing(label: str, x: float, y: float, score: float = 0.9) -> dict:
    """An object of 20 x 20 px centred on (x, y)."""
    return {"label": label, "score": score, "box": [x - 10, y - 10, x + 10, y + 10], "area": 400}


PEOPLE = [thing("person", 50, 150), thing("dog", 150, 250), thing("person", 250, 150), thing("person", 260, 170)]


@pytest.mark.parametrize(
    ("question", "answer", "sentence", "instances"),
    [
        ("How many people are there?", "3", "There are 3 people: one on the left and 2 on the right.", [0, 2, 3]),
        ("how many men?", "3", "There are 3 people: one on the left and 2 on the right.", [0, 2, 3]),
        ("How many dogs are in the picture?", "1", "There is 1 dog, at the bottom.", [1]),
        ("How many cats?", "0", "There are no cats.", []),
        ("Is there a dog?", "yes", "Yes: 1 dog, at the bottom.", [1]),
        ("Are there any cars?", "no", "No, I see no cars.", []),
        ("Do you see a bicycle?", "no", "No, I see no bicycle.", []),
        ("Where is the dog?", "at the bottom", "The dog is at the bottom.", [1]),
        ("Where are the people?", "one on the left and 2 on the right", "There are 3 people: one on the left and 2 "
         "on the right.", [0, 2, 3]),
        ("Where is the bus?", "not found", "I see no bus.", []),
    ],
)  # fmt: skip
def test_questions_the_objects_answer(question, answer, sentence, instances):
    got = answer_from_objects(question, PEOPLE, SIZE)
    assert got == {
        "question": question,
        "answer": answer,
        "sentence": sentence,
        "source": "objects",
        "instances": instances,
    }


@pytest.mark.parametrize(
    "question",
    ["What colour is the dog?", "What is the man holding?", "How many unicorns are there?", "Describe the scene."],
)
def test_other_questions_are_left_to_a_question_answering_model(question):
    assert answer_from_objects(question, PEOPLE, SIZE) is None


def test_the_segmenters_own_labels_decide_what_it_can_answer():
    shapes = [thing("circle", 50, 50), thing("triangle", 250, 250)]
    assert answer_from_objects("How many circles?", shapes, SIZE, labels=SHAPES_LABELS)["answer"] == "1"
    assert answer_from_objects("Is there a square?", shapes, SIZE, labels=SHAPES_LABELS)["answer"] == "no"
    # A COCO label is not a shapes segmenter's: a question about it goes to the question-answering model.
    assert answer_from_objects("Is there a dog?", shapes, SIZE, labels=SHAPES_LABELS) is None


def test_question_kinds_and_bounds():
    assert [question_kind(q) for q in ("HOW MANY?", "is there a cat", "Where's the cup", "Why?")] == [
        "count",
        "presence",
        "where",
        None,
    ]
    assert check_question("  Is there a dog?  ") == "Is there a dog?"
    with pytest.raises(ValueError, match="question must not be empty"):
        check_question("   ")
    with pytest.raises(ValueError, match="question must be a text of at most 200 characters, got 'a text of 201"):
        check_question("x" * 201)
    with pytest.raises(ValueError, match="question must be a text of at most 200 characters, got 3"):
        check_question(3)
