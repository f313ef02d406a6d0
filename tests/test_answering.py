"""pipeline.answering: how many, whether there is, where, answered from the objects on scenes whose truth is known;
the question-answering model (a tiny random BLIP VQA saved here, loaded by the catalog's real paths) for the rest."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from helpers import ROOT, TINY_CATEGORIES, install_hub_stand_in, save_tiny_segmenter
from PIL import Image

from pipeline import (
    AnswerPipeline,
    ImageAnalysisPipeline,
    ModelSpec,
    ModelUnavailableError,
    answer_question,
    list_models,
    load_answerer,
    load_captioner,
    load_segmenter,
    registered_models,
)
from pipeline.answering import NO_ANSWERER, answer_from_objects, check_question, question_kind
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


# -- the question-answering model ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def answerer(tiny_blip_vqa_dir) -> AnswerPipeline:
    return load_answerer(tiny_blip_vqa_dir, device="cpu")


def test_the_catalog_offers_blip_vqa_and_an_offline_answerer():
    specs = {spec.name: spec for spec in list_models("answerer")}
    assert specs["blip-vqa-base"].source == "Salesforce/blip-vqa-base"
    assert specs["shapes"].source.endswith("shapes-answerer")
    with pytest.raises(ValueError, match="unknown answerer 'nope': choose one of .*'blip-vqa-base'"):
        load_answerer("nope")


def test_the_answerer_is_the_model_called_directly(answerer, tiny_blip_vqa_dir, shapes_image):
    from transformers import BlipForQuestionAnswering, BlipProcessor

    model = BlipForQuestionAnswering.from_pretrained(tiny_blip_vqa_dir).eval()
    processor = BlipProcessor.from_pretrained(tiny_blip_vqa_dir)
    inputs = processor(images=shapes_image, text="What colour is the circle?", return_tensors="pt")
    with torch.inference_mode():
        expected = processor.decode(model.generate(**inputs, max_new_tokens=4)[0], skip_special_tokens=True)
    got = answerer(shapes_image, question="  What colour is the circle? ", max_new_tokens=4)
    assert type(answerer.model).__name__ == "BlipForQuestionAnswering"
    assert got == {"answer": " ".join(expected.split())} and got["answer"]
    batch = answerer([shapes_image, shapes_image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)], question="Is it red?")
    assert len(batch) == 2 and all(isinstance(one["answer"], str) for one in batch)


def test_the_answerer_refuses_a_missing_empty_or_long_question(answerer, shapes_image):
    with pytest.raises(TypeError, match="AnswerPipeline needs a question"):
        answerer(shapes_image)
    with pytest.raises(ValueError, match="question must not be empty"):
        answerer(shapes_image, question=" ")
    with pytest.raises(ValueError, match="at most 200 characters, got 'a text of 201 characters'"):
        answerer(shapes_image, question="x" * 201)


def test_questions_go_to_the_objects_or_the_model_and_name_their_objects(answerer, shapes_image):
    found = [thing("circle", 25, 25), thing("square", 70, 40)]
    count = answer_question("How many circles?", shapes_image, found, labels=SHAPES_LABELS, answerer=answerer)
    assert (count["source"], count["answer"], count["instances"]) == ("objects", "1", [0])
    colour = answer_question(
        "What colour is the square?", shapes_image, found, labels=SHAPES_LABELS, answerer=answerer
    )
    assert colour["source"] == answerer.name and colour["instances"] == [1]
    assert colour["answer"] == answerer(shapes_image, question="What colour is the square?")["answer"]
    assert colour["sentence"][0].isupper() and colour["sentence"].endswith(".")
    alone = answer_question("What colour is the square?", shapes_image, found, labels=SHAPES_LABELS)
    assert alone == {
        "question": "What colour is the square?", "answer": "", "sentence": NO_ANSWERER, "source": None,
        "instances": [1],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("question", "sentence"),
    [
        ("What colour is the triangle?", "I see no triangle."),
        ("What colour are the triangles?", "I see no triangles."),
        ("What is beside the triangle, and the dog?", "I see no triangle."),  # a dog is no shapes label
    ],
)
def test_a_question_about_a_known_object_not_found_is_not_left_to_the_model(
    answerer, shapes_image, question, sentence
):
    found = [thing("circle", 25, 25), thing("square", 70, 40)]
    for model in (answerer, None):  # the model is never asked, so the answer is the same without one
        got = answer_question(question, shapes_image, found, labels=SHAPES_LABELS, answerer=model)
        assert got == {"question": question, "answer": "not found", "sentence": sentence, "source": "objects",
                       "instances": []}  # fmt: skip
    # Both named, one found: the model answers about the one that is there.
    both = answer_question("Is the square left of the triangle?", shapes_image, found, labels=SHAPES_LABELS,
                           answerer=answerer)  # fmt: skip
    assert both["source"] == answerer.name and both["instances"] == [1]
    coco = answer_question("What is the man holding, a cup or a dog?", shapes_image, [], answerer=None)
    assert coco["sentence"] == "I see no person and no cup and no dog." and coco["answer"] == "not found"


def test_the_combined_pipeline_asks_with_one_segmentation(tiny_blip_dir, tiny_blip_vqa_dir, tmp_path, shapes_image):
    segmenter = load_segmenter(
        save_tiny_segmenter(tmp_path / "squares", favourite=TINY_CATEGORIES.index("square")), device="cpu"
    )
    pipe = ImageAnalysisPipeline(
        load_captioner(tiny_blip_dir, device="cpu"), segmenter, answerer=load_answerer(tiny_blip_vqa_dir, device="cpu")
    )
    squares = segmenter(shapes_image, threshold=0.1, subtask="instance")["instances"]
    assert squares, "the test segmenter must find its squares"
    answers = pipe.ask(shapes_image, ["How many squares?", "What colour is the square?"], threshold=0.1)
    assert answers[0]["answer"] == str(len(squares)) and answers[0]["instances"] == list(range(len(squares)))
    assert answers[1]["source"] == pipe.answerer.name and answers[1]["instances"] == list(range(len(squares)))
    assert pipe.ask(shapes_image, "Is there a circle?", threshold=0.1)["answer"] == "no"
    with pytest.raises(ValueError, match="question must not be empty"):
        pipe.ask(shapes_image, ["Is there a circle?", ""])
    with pytest.raises(ValueError, match="at least one question"):
        pipe.ask(shapes_image, [])


def test_a_missing_answerer_fails_fast_with_what_to_do(tmp_path):
    with registered_models([ModelSpec("gone", "answerer", str(tmp_path / "not-here"), "a deleted answerer")]):
        with pytest.raises(ModelUnavailableError, match="answerer 'gone': its directory .* does not exist"):
            load_answerer("gone")


def test_blip_vqa_base_loads_through_the_hub_cache_offline(tiny_blip_vqa_dir, tmp_path, shapes_image):
    """The real path of the catalog's hub entry: Salesforce/blip-vqa-base found in a Hugging Face cache, offline."""
    install_hub_stand_in(tmp_path / "hf-cache", "Salesforce/blip-vqa-base", tiny_blip_vqa_dir)
    shapes_image.save(tmp_path / "shapes.png")
    script = (
        "from pipeline import load_answerer\n"
        "answerer = load_answerer('blip-vqa-base', device='cpu')\n"
        f"print(answerer.name, type(answerer.model).__name__, answerer({str(tmp_path / 'shapes.png')!r}, "
        "question='What colour is it?', max_new_tokens=3)['answer'])\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hf-cache"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    expected = load_answerer(tiny_blip_vqa_dir, device="cpu")(
        shapes_image, question="What colour is it?", max_new_tokens=3
    )
    assert done.stdout.split("\n")[-2] == f"blip-vqa-base BlipForQuestionAnswering {expected['answer']}"
