"""pipeline.describe: positions, sizes, reading order, counts and plurals, short and long forms, max_objects, and the
grounded caption, on hand-built instances, on shapes scenes whose truth is known and on the committed shapes models.
"""

from __future__ import annotations

import contextlib
import doctest
import io
import json
import re
from collections import Counter

import numpy as np
import pytest
from helpers import EXAMPLES, ROOT
from torchvision.models.detection import MaskRCNN_ResNet50_FPN_V2_Weights

import pipeline.describe
from pipeline import describe_scene, from_json, ground_caption, load_pipeline, locate_objects, to_json
from pipeline.describe import COCO_LABELS, SHAPES_LABELS, SYNONYMS, noun, plural_word
from train import shapes

W, H = 600, 300  # thirds: x 200 and 400, y 100 and 200


def box_at(label: str, center: tuple[float, float], side: float = 80.0, score: float = 0.9, area=None) -> dict:
    """An instance with a square box of ``side`` pixels centred at ``center`` (no mask: describe never reads one)."""
    x, y = center
    return {
        "label": label,
        "label_id": 1,
        "score": score,
        "box": [x - side / 2, y - side / 2, x + side / 2, y + side / 2],
        "area": side * side if area is None else area,
    }


def truth_instances(sample: shapes.Sample) -> list[dict]:
    """A shapes picture's objects as instances: the visible mask's box and pixel count, score 1."""
    instances = []
    for shape in sample.objects:
        rows, cols = np.nonzero(shape.mask)
        box = [float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)]
        instances.append({"label": shape.category, "score": 1.0, "box": box, "area": int(shape.mask.sum())})
    return instances


def expected_place(box: list[float], area: float, size: tuple[int, int]) -> tuple[str, str]:
    """The documented rules, written out again: (position phrase, size word) of one box in a picture."""
    width, height = size
    x, y = (box[0] + box[2]) / 2 / width, (box[1] + box[3]) / 2 / height
    column = "left" if x < 1 / 3 else "right" if x > 2 / 3 else "centre"
    row = "top" if y < 1 / 3 else "bottom" if y > 2 / 3 else "middle"
    if (column, row) == ("centre", "middle"):
        position = "in the centre"
    elif row == "middle":
        position = f"on the {column}"
    else:
        position = f"at the {row}" + ("" if column == "centre" else f" {column}")
    share = area / (width * height)
    return position, "large" if share > 0.25 else "small" if share < 0.02 else "medium"


def label_sentence(description: str, label: str, count: int) -> str:
    """The one sentence of ``description`` about ``label``: it starts with the count and the (sized) noun."""
    pattern = rf"(?:^|\. ){count} (?:large |small )?{re.escape(noun(label, count))}\b[^.]*\."
    found = re.findall(pattern, description)
    assert len(found) == 1, (label, count, description)
    return found[0]


def test_nine_positions_and_the_thirds():
    cells = {
        (100, 50): "at the top left",
        (300, 50): "at the top",
        (500, 50): "at the top right",
        (100, 150): "on the left",
        (300, 150): "in the centre",
        (500, 150): "on the right",
        (100, 250): "at the bottom left",
        (300, 250): "at the bottom",
        (500, 250): "at the bottom right",
    }
    places = locate_objects([box_at("cat", center) for center in cells], (W, H))
    assert [place["position"] for place in places] == list(cells.values())  # already in reading order
    # A centre exactly on a third's edge belongs to the middle third; a hair beyond it, to the outer one.
    edges = [box_at("cat", (200, 100)), box_at("cat", (399.9, 199.9)), box_at("cat", (400.1, 200.1))]
    assert [(p["column"], p["row"]) for p in locate_objects(edges, (W, H))] == [
        ("centre", "middle"),
        ("centre", "middle"),
        ("right", "bottom"),
    ]


def test_sizes_by_share_of_the_picture():
    picture = W * H
    instances = [
        box_at("dog", (300, 150), area=0.26 * picture),
        box_at("dog", (300, 150), area=0.25 * picture),  # not over a quarter: medium
        box_at("dog", (300, 150), area=0.02 * picture),
        box_at("dog", (300, 150), area=0.019 * picture),
    ]
    assert [place["size"] for place in locate_objects(instances, (W, H))] == ["large", "medium", "medium", "small"]
    no_area = {"label": "dog", "score": 0.5, "box": [0.0, 0.0, 390.0, 300.0]}  # the box's area stands in
    (place,) = locate_objects([no_area], (W, H))
    assert place["size"] == "large" and place["share"] == pytest.approx(0.65)
    assert place["text"] == "large dog on the left"


def test_the_issue_example_reads_as_written():
    instances = [
        box_at("person", (300, 160), side=200, score=0.99, area=0.3 * W * H),
        box_at("bicycle", (310, 170), side=120, score=0.97),
        box_at("car", (450, 150), side=20, score=0.9),
        box_at("person", (80, 140), side=10, score=0.8),
        box_at("car", (520, 160), side=20, score=0.7),
        box_at("car", (580, 150), side=20, score=0.6),
    ]
    description = describe_scene("a man riding a bike down a street", instances, (W, H))
    assert description == (
        "A man riding a bike down a street. 2 people: a small one on the left and a large one in the centre. "
        "1 bicycle in the centre. 3 small cars on the right."
    )


def test_reading_order_rows_first_then_left_to_right():
    instances = [
        box_at("dog", (500, 250), score=0.99),  # bottom right
        box_at("cat", (550, 40), score=0.98),  # top right
        box_at("dog", (40, 60), score=0.97),  # top left
        box_at("bird", (300, 150), score=0.96),  # centre
        box_at("cat", (60, 280), score=0.95),  # bottom left
    ]
    order = [place["index"] for place in locate_objects(instances, (W, H))]
    assert order == [2, 1, 3, 4, 0]
    # Groups follow their first object: the top-left dog, then the top-right cat, then the bird.
    assert describe_scene("", instances, (W, H)) == (
        "2 dogs: one at the top left and one at the bottom right. 2 cats: one at the top right and one at the "
        "bottom left. 1 bird in the centre."
    )
    # Deterministic: the order of the input list does not change the words, ties broken by index.
    assert describe_scene("", instances[::-1], (W, H)) == describe_scene("", instances, (W, H))


def test_plurals_table_and_rule():
    assert [noun(label, 2) for label in ("person", "mouse", "sheep", "skis", "scissors", "wine glass")] == [
        "people",
        "mice",
        "sheep",
        "pairs of skis",
        "pairs of scissors",
        "wine glasses",
    ]
    assert [noun(label, 3) for label in ("bus", "knife", "couch", "toothbrush", "bench", "giraffe", "tv")] == [
        "buses",
        "knives",
        "couches",
        "toothbrushes",
        "benches",
        "giraffes",
        "TVs",
    ]
    assert [noun(label, 2) for label in ("hot dog", "cell phone", "teddy bear", "traffic light", "hair drier")] == [
        "hot dogs",
        "cell phones",
        "teddy bears",
        "traffic lights",
        "hair driers",
    ]
    assert [noun(label, 2) for label in SHAPES_LABELS] == ["circles", "squares", "triangles"]
    assert noun("person", 1) == "person" and noun("skis", 1) == "pair of skis" and noun("tv", 1) == "TV"
    assert plural_word("lady") == "ladies" and plural_word("toy") == "toys" and plural_word("class 12") == "class 12"
    for label in COCO_LABELS:  # every label gets a plural made of words, never a symbol
        assert re.fullmatch(r"[A-Za-z ]+", noun(label, 2)), label


def test_coco_labels_are_torchvision_s():
    categories = MaskRCNN_ResNet50_FPN_V2_Weights.DEFAULT.meta["categories"]
    assert COCO_LABELS == tuple(name for name in categories if name not in ("__background__", "N/A"))
    assert set(SYNONYMS) <= set(COCO_LABELS)


def test_short_adds_counts_only_when_they_tell_more():
    cat, couch = box_at("cat", (100, 150), score=0.9), box_at("couch", (300, 200), side=200, score=0.8)
    assert describe_scene("a cat on a couch", [cat, couch], (W, H), detail="short") == "A cat on a couch."
    assert describe_scene("a cat on a couch", [cat, couch], (W, H)) == (
        "A cat on a couch. 1 cat on the left. 1 couch in the centre."
    )
    dogs = [box_at("dog", (100, 150)), box_at("dog", (500, 150))]
    assert describe_scene("two dogs on a lawn", dogs, (W, H), detail="short") == "Two dogs on a lawn."
    assert describe_scene("a man and a woman", [box_at("person", (1, 1))] * 2, (W, H), detail="short") == (
        "A man and a woman."
    )
    assert describe_scene("a dog on a lawn", dogs, (W, H), detail="short") == "A dog on a lawn. 2 dogs."
    assert describe_scene("dogs on a lawn", dogs, (W, H), detail="short") == "Dogs on a lawn. 2 dogs."  # how many?
    assert describe_scene("a lawn", [*dogs, cat], (W, H), detail="short") == "A lawn. 2 dogs and 1 cat."
    assert describe_scene("", dogs, (W, H), detail="short") == "2 dogs."


def test_max_objects_names_the_most_confident_and_counts_the_rest():
    instances = [
        box_at("person", (300, 150), score=0.99),
        box_at("person", (100, 150), score=0.5),
        box_at("dog", (500, 150), score=0.9),
        box_at("cup", (500, 250), score=0.4),
        box_at("cup", (100, 250), score=0.3),
    ]
    assert describe_scene("", instances, (W, H), max_objects=2) == (
        "1 person in the centre. 1 dog on the right. Also 2 cups and 1 more person."
    )
    assert describe_scene("", instances, (W, H), max_objects=0) == "5 objects: 2 people, 2 cups and 1 dog."
    assert (
        describe_scene("", instances, (W, H), max_objects=2, detail="short") == "1 person, 1 dog and 3 more objects."
    )
    everything = describe_scene("", instances, (W, H), max_objects=None)
    assert everything == describe_scene("", instances, (W, H), max_objects=5) and "Also" not in everything
    assert describe_scene("", instances, (W, H), max_objects=4).endswith("Also 1 more cup.")
    labels = ["person"] * 5 + ["car"] * 4 + ["chair"] * 3 + ["cup"] * 2 + ["dog", "bench"]
    crowd = [box_at(label, (30 * i, 150), score=1 - i / 100) for i, label in enumerate(labels)]
    assert describe_scene("", crowd, (W, H), max_objects=1) == (
        "1 person on the left. Also 4 more people, 4 cars, 3 chairs, 2 cups and 2 other objects."
    )


def test_options_are_checked():
    with pytest.raises(ValueError, match=r"detail must be one of 'short', 'long', got 'medium'"):
        describe_scene("a cat", [], (W, H), detail="medium")
    for bad in (-1, 2.5, True, "3"):
        with pytest.raises(ValueError, match="max_objects must be an integer of at least 0, got"):
            describe_scene("a cat", [], (W, H), max_objects=bad)
    with pytest.raises(ValueError, match="image_size must be"):
        describe_scene("a cat", [], (0, 10))


def test_empty_scenes():
    assert describe_scene("a plain wall", [], (W, H)) == "A plain wall. No objects found."
    assert describe_scene("a plain wall", [], (W, H), detail="short") == "A plain wall."
    assert describe_scene("", [], (W, H)) == describe_scene("  ", [], (W, H), detail="short") == "No objects found."
    assert ground_caption("", []) == [] and locate_objects([], (W, H)) == []
    assert ground_caption("a plain wall", []) == []


def test_grounding_offsets_synonyms_and_plurals():
    instances = [box_at("person", (1, 1)), box_at("bicycle", (1, 1)), box_at("person", (1, 1)), box_at("tv", (1, 1))]
    caption = "Two Men and a boy ride bikes past a television; people wave."
    grounding = ground_caption(caption, instances)
    assert [(g["word"], g["label"], g["instances"]) for g in grounding] == [
        ("Men", "person", [0, 2]),
        ("boy", "person", [0, 2]),
        ("bikes", "bicycle", [1]),
        ("television", "tv", [3]),
        ("people", "person", [0, 2]),
    ]
    for entry in grounding:
        assert caption[entry["start"] : entry["end"]] == entry["word"]
    assert json.loads(json.dumps(grounding)) == grounding


def test_grounding_multi_word_labels_and_longest_match():
    caption = "a teddy bear and a hot-dog by a traffic light, a dirt bike, two wine glasses and a cell phone"
    grounding = ground_caption(caption, [box_at("teddy bear", (1, 1)), box_at("motorcycle", (1, 1))])
    assert [(g["word"], g["label"]) for g in grounding] == [
        ("teddy bear", "teddy bear"),  # not "bear"
        ("hot-dog", "hot dog"),
        ("traffic light", "traffic light"),
        ("dirt bike", "motorcycle"),  # not "bike" -> bicycle
        ("wine glasses", "wine glass"),
        ("cell phone", "cell phone"),
    ]
    assert [g["instances"] for g in grounding] == [[0], [], [], [1], [], []]
    for entry in grounding:
        assert caption[entry["start"] : entry["end"]] == entry["word"]


def test_grounding_marks_named_objects_that_were_not_found():
    grounding = ground_caption("a cat chasing a mouse", [box_at("cat", (1, 1))])
    assert [(g["word"], g["instances"]) for g in grounding] == [("cat", [0]), ("mouse", [])]
    # Only words the segmenter could have found count: the shapes segmenter knows no cats.
    labels = ["__background__", *SHAPES_LABELS]
    assert [g["word"] for g in ground_caption("a cat by a red circle and two squares", [], labels)] == [
        "circle",
        "squares",
    ]
    assert ground_caption("a red triangle", [], labels)[0]["instances"] == []


def test_a_colour_is_not_the_fruit():
    words = [g["word"] for g in ground_caption("an orange cat eats an orange, an orange and white dog", [])]
    assert words == ["cat", "orange", "dog"]
    (fruit,) = [g for g in ground_caption("an orange cat eats an orange", []) if g["label"] == "orange"]
    assert fruit["start"] == 22


def test_spoken_words_only():
    """Digits, words and . , : only after the caption: nothing a screen reader spells out or skips."""
    rng = np.random.default_rng(3)
    labels = [*COCO_LABELS, *SHAPES_LABELS]
    for _ in range(50):
        instances = [
            box_at(
                str(rng.choice(labels)), tuple(rng.uniform(0, 300, 2)), side=rng.uniform(5, 250), score=rng.random()
            )
            for _ in range(rng.integers(0, 15))
        ]
        for detail in ("short", "long"):
            text = describe_scene("", instances, (W, H), detail=detail, max_objects=int(rng.integers(0, 12)))
            assert re.fullmatch(r"[A-Za-z0-9 ,.:]+", text), text
            assert all(len(sentence.split()) <= 40 for sentence in text.split(". ")), text


@pytest.mark.parametrize("seed", range(12))
def test_shapes_scenes_counts_positions_and_order(seed):
    sample = shapes.draw_sample(np.random.default_rng([7, seed]), image_size=128, max_objects=4)
    instances = truth_instances(sample)
    size = sample.image.size
    description = describe_scene("", instances, size, max_objects=None)
    counts = Counter(shape.category for shape in sample.objects)
    for label, count in counts.items():
        sentence = label_sentence(description, label, count)
        for instance in instances:
            if instance["label"] == label:
                assert expected_place(instance["box"], instance["area"], size)[0] in sentence
    assert len(description.split(". ")) == len(counts)
    places = locate_objects(instances, size)
    assert [(p["position"], p["size"]) for p in places] == [
        expected_place(instances[p["index"]]["box"], instances[p["index"]]["area"], size) for p in places
    ]
    rows = {"top": 0, "middle": 1, "bottom": 2}
    keys = [(rows[p["row"]], sum(instances[p["index"]]["box"][::2]) / 2) for p in places]
    assert keys == sorted(keys)  # rows top to bottom, left to right within a row


def test_shapes_split_read_from_its_coco_file(shapes_data):
    """The same words from a written split's COCO annotations: boxes as [x, y, w, h], no masks at all."""
    coco = json.loads((shapes_data / "train" / "instances.json").read_text())
    names = {category["id"]: category["name"] for category in coco["categories"]}
    for image in coco["images"][:8]:
        annotations = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        instances = [
            {"label": names[a["category_id"]], "score": 1.0, "box": [x, y, x + w, y + h], "area": a["area"]}
            for a in annotations
            for x, y, w, h in [a["bbox"]]
        ]
        description = describe_scene("", instances, (image["width"], image["height"]))
        for label, count in Counter(instance["label"] for instance in instances).items():
            label_sentence(description, label, count)


@pytest.fixture(scope="module")
def shapes_pipe():
    return load_pipeline(captioner="shapes", segmenter="shapes", device="cpu")


# Pictures the committed shapes segmenter gets right (12 of the first 16 seeds; seeds 0, 5, 9 and 10 have a missed,
# an extra or a misplaced shape): what is tested here is that the words match the picture, not the segmenter's
# accuracy.
@pytest.mark.parametrize("seed", [1, 4, 7, 11, 13, 14])
def test_shapes_models_describe_the_picture_truly(shapes_pipe, seed):
    sample = shapes.draw_sample(np.random.default_rng(seed), max_objects=4)
    result = shapes_pipe(sample.image, max_objects=None)
    truth = truth_instances(sample)
    size = sample.image.size

    def placed(instances):
        return Counter((p["label"], p["position"]) for p in locate_objects(instances, size))

    assert placed(result["instances"]) == placed(truth)
    counts = Counter(shape.category for shape in sample.objects)
    for label, count in counts.items():
        sentence = label_sentence(result["description"], label, count)
        for instance in truth:
            if instance["label"] == label:
                assert expected_place(instance["box"], instance["area"], size)[0] in sentence
    assert result["description"].startswith(result["caption"][0].upper() + result["caption"][1:])
    for entry in result["grounding"]:
        assert result["caption"][entry["start"] : entry["end"]] == entry["word"]
        assert entry["instances"] == [i for i, o in enumerate(result["instances"]) if o["label"] == entry["label"]]
    back = from_json(json.loads(json.dumps(to_json(result))))
    assert back["description"] == result["description"] and back["grounding"] == result["grounding"]


def test_doctests():
    assert doctest.testmod(pipeline.describe).failed == 0


@pytest.mark.parametrize(
    ("document", "heading"),
    [
        ("README.md", "Every result also says in words what is where"),
        ("pipeline/README.md", "## Descriptions for people who cannot see the picture"),
    ],
)
def test_readme_snippet_runs_and_prints_what_it_shows(monkeypatch, document, heading):
    """The docs' description examples, run as written on space/examples/shapes.png; each print's output is the
    comment under it."""
    readme = (ROOT / document).read_text()
    section = readme.split(heading, 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert '"space/examples/shapes.png"' in code and (EXAMPLES / "shapes.png").exists()
    expected, lines = [], code.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("print("):
            shown = []
            for follower in lines[index + 1 :]:
                if not follower.startswith("# "):
                    break
                shown.append(follower[2:])
            expected.append(" ".join(shown))
    monkeypatch.chdir(ROOT)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, document, "exec"), {})
    assert out.getvalue().splitlines() == expected
