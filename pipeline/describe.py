"""Words for people who cannot see the picture: the scene description (what is where) and the grounded caption.

Everything here is built from the instances alone (``label``, ``score``, ``box``, ``area``; never the mask, whose
in-memory form may change) and the image size, so it works the same on the library's results and on their JSON
form. Nothing runs a model and nothing is random: the same instances always give the same words.

**The description** (:func:`describe_scene`) is the caption as a sentence, then the objects grouped by label with
counts, each with its position and size in words, written to be read aloud by a screen reader (short sentences,
numbers as digits, no symbols). The rules, each a constant below:

- *position*: the third of the picture that the box centre falls in, across (left, centre, right) and down (top,
  middle, bottom), said as one of nine phrases: "at the top left", "at the top", "at the top right", "on the
  left", "in the centre", "on the right", "at the bottom left", "at the bottom", "at the bottom right".
- *size*: the object's ``area`` (its mask's pixels; its box's when there is no area) over the picture's:
  "large" over :data:`LARGE_SHARE` (a quarter), "small" under :data:`SMALL_SHARE` (1 in 50), nothing said between.
- *reading order*: as lines of text are read, the top third first, then the middle, then the bottom, and left to
  right within each (by box centre x, then centre y, then the instance's index). A label's group comes where its
  first object comes in that order, and inside a group the objects keep that order.
- ``max_objects``: the most confident objects (by score) are named, at most this many; the rest are counted in one
  closing sentence (at most :data:`REST_LABELS` labels, the most numerous first, then "and 5 other objects"), so
  that a crowd does not turn into a minute of speech.

*Stuff* (with a stuff model, the panoptic view's segments with ``isthing`` False) closes the long description:
"Sky at the top, grass at the bottom." names the largest regions (at most :data:`STUFF_NAMED`, each covering at
least :data:`STUFF_SHARE`, fewer when ``max_objects`` is smaller) in reading order, each where its centre of mass
falls (:func:`locate_stuff`).

**The grounded caption** (:func:`ground_caption`) finds the caption's words that name a label: the segmenter's own
label names, the synonyms of :data:`SYNONYMS` (man, woman, child ... -> person; bike -> bicycle; ...) and the
plural of each, a multi-word label ("hot dog", "teddy bear") matched as one word, the longest match first. With a
stuff model its labels count too, with :data:`STUFF_SYNONYMS` ("sea", "beach", "street" -> water, sand, road),
linked to their panoptic segments.

>>> box = {"label": "dog", "label_id": 18, "score": 0.9, "box": [10.0, 30.0, 40.0, 70.0], "area": 900}
>>> describe_scene("a dog on the grass", [box], (160, 100))
'A dog on the grass. 1 dog on the left.'
>>> ground_caption("a dog on the grass", [box])
[{'word': 'dog', 'start': 2, 'end': 5, 'label': 'dog', 'instances': [0]}]
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from .captioning import caption_sentence
from .options import Option, by_name

DETAILS = ("short", "long")
#: How many objects the description names by default; the rest are counted in one sentence.
DEFAULT_MAX_OBJECTS = 10
#: The description's call options, declared once (see :mod:`pipeline.options`).
DESCRIBE_OPTIONS = (
    Option("detail", "choice", "long", "long: what is where; short: the alt text", choices=DETAILS),
    Option("max_objects", "int", DEFAULT_MAX_OBJECTS, "objects the description names", low=0, limit=50,
           none_means="no limit"),
)  # fmt: skip
_OPTIONS = by_name(DESCRIBE_OPTIONS)
#: The closing count of the objects not named lists at most this many labels, the most numerous first.
REST_LABELS = 4
#: An object covering more than this share of the picture is "large".
LARGE_SHARE = 0.25
#: An object covering less than this share of the picture is "small" (1 in 50: on a 640x480 photo, under 78x78 px).
SMALL_SHARE = 0.02

COLUMNS = ("left", "centre", "right")
ROWS = ("top", "middle", "bottom")
#: The words of each (column, row) third of the picture.
POSITIONS = {
    ("left", "top"): "at the top left",
    ("centre", "top"): "at the top",
    ("right", "top"): "at the top right",
    ("left", "middle"): "on the left",
    ("centre", "middle"): "in the centre",
    ("right", "middle"): "on the right",
    ("left", "bottom"): "at the bottom left",
    ("centre", "bottom"): "at the bottom",
    ("right", "bottom"): "at the bottom right",
}

#: The 80 COCO labels as torchvision names them (``weights.meta["categories"]`` without ``__background__`` and
#: ``N/A``): the labels grounding looks for when it is given no label list; and the offline shapes models' labels.
COCO_LABELS = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)  # fmt: skip
SHAPES_LABELS = ("circle", "square", "triangle")

#: Plurals the rule in :func:`plural_word` gets wrong; the rule: -s, -x, -z, -ch, -sh take -es, a consonant
#: and -y becomes -ies, anything else takes -s.
IRREGULAR_PLURALS = {
    "person": "people",
    "people": "people",
    "man": "men",
    "woman": "women",
    "gentleman": "gentlemen",
    "policeman": "policemen",
    "child": "children",
    "mouse": "mice",
    "goose": "geese",
    "knife": "knives",
    "calf": "calves",
    "sheep": "sheep",
    "cattle": "cattle",
    "aircraft": "aircraft",
    "broccoli": "broccoli",
    "luggage": "luggage",
    "skis": "skis",
    "scissors": "scissors",
}
#: How a label is said when it is not said as it is written: (one, several).
SPOKEN = {
    "skis": ("pair of skis", "pairs of skis"),
    "scissors": ("pair of scissors", "pairs of scissors"),
    "tv": ("TV", "TVs"),
}

#: Caption words that name a COCO label, by label (singular forms; plurals come from :func:`plural_word`). Words
#: that often name something else in captions are left out on purpose (bag, glass, pitcher, screen, couple):
#: a missed word costs nothing, a wrong one marks the caption as doubtful.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "person": (
        "man", "woman", "boy", "girl", "people", "child", "kid", "guy", "lady", "gentleman", "player", "baby",
        "toddler", "infant", "adult", "teenager", "teen", "skier", "surfer", "skateboarder", "snowboarder",
        "batter", "catcher", "umpire", "rider", "biker", "policeman", "police officer", "officer", "crowd",
        "tennis player", "baseball player", "soccer player", "frisbee player",
    ),
    "bicycle": ("bike", "cycle"),
    "car": ("taxi", "sedan"),
    "motorcycle": ("motorbike", "motor bike", "moped", "dirt bike", "motor cycle"),
    "airplane": ("plane", "aeroplane", "jet", "airliner", "aircraft", "jetliner"),
    "train": ("locomotive", "tram"),
    "truck": ("lorry", "pickup truck", "fire truck"),
    "boat": ("ship", "sailboat", "canoe", "kayak", "yacht", "ferry"),
    "traffic light": ("stop light", "traffic signal"),
    "fire hydrant": ("hydrant",),
    "bird": ("pigeon", "seagull", "gull", "duck", "goose", "parrot", "swan", "owl"),
    "cat": ("kitten", "kitty"),
    "dog": ("puppy", "pup"),
    "horse": ("pony", "foal"),
    "sheep": ("lamb",),
    "cow": ("calf", "bull", "cattle"),
    "bear": ("polar bear", "grizzly"),
    "backpack": ("back pack", "rucksack"),
    "umbrella": ("parasol",),
    "handbag": ("purse", "hand bag"),
    "tie": ("necktie",),
    "suitcase": ("luggage", "suit case"),
    "frisbee": ("flying disc",),
    "sports ball": ("ball", "football", "soccer ball", "tennis ball", "basketball", "volleyball"),
    "baseball bat": ("bat",),
    "baseball glove": ("mitt", "baseball mitt"),
    "skateboard": ("skate board",),
    "surfboard": ("surf board",),
    "tennis racket": ("racket", "racquet", "tennis racquet"),
    "wine glass": ("wineglass",),
    "cup": ("mug",),
    "donut": ("doughnut",),
    "hot dog": ("hotdog",),
    "couch": ("sofa",),
    "potted plant": ("plant", "houseplant"),
    "dining table": ("table",),
    "tv": ("television", "monitor"),
    "laptop": ("laptop computer",),
    "mouse": ("computer mouse",),
    "remote": ("remote control", "controller"),
    "cell phone": ("phone", "cellphone", "smartphone", "mobile phone"),
    "oven": ("stove",),
    "refrigerator": ("fridge",),
    "teddy bear": ("teddy", "stuffed animal"),
    "hair drier": ("hair dryer", "hairdryer", "blow dryer"),
    "toothbrush": ("tooth brush",),
}  # fmt: skip
#: Caption words that name a stuff label (a stuff model's: ADE20K's, the shapes world's), by label; a label's own
#: name wins over another's synonym (an ADE20K model has "sea" and "field" of its own).
STUFF_SYNONYMS: dict[str, tuple[str, ...]] = {
    "water": ("sea", "ocean", "lake", "river", "waves"),
    "sea": ("ocean", "waves"),
    "sand": ("beach",),
    "road": ("street",),
    "grass": ("lawn", "field", "meadow"),
    "sidewalk": ("pavement",),
    "earth": ("ground", "dirt"),
    "mountain": ("hills",),
}  # fmt: skip
#: The description names at most this many stuff regions, the largest, each covering at least :data:`STUFF_SHARE`.
STUFF_NAMED = 3
#: A stuff region smaller than this share of the picture is not named in the description.
STUFF_SHARE = 0.05
#: Labels that are also colours: "an orange cat" names no orange. Such a word is taken as the label only where
#: no noun can follow it (the caption ends, punctuation, a preposition, a verb in -ing).
COLOUR_LABELS = frozenset({"orange"})
_NOUN_FOLLOWERS = frozenset(
    "a an the and or on in into with next to of at near by from under over beside behind is are sits sit lies "
    "lie cut".split()
)
_COLOURS = frozenset("red orange yellow green blue purple pink brown black white grey gray silver gold".split())
_NUMBERS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    "eleven": 11, "twelve": 12, "both": 2,
}  # fmt: skip
_TOKEN = re.compile(r"[^\W_]+")  # runs of letters and digits: "hot-dog" is two tokens, "man's" is "man" + "s"
_SKIPPED_LABELS = frozenset({"__background__", "n/a", ""})


def plural_word(word: str) -> str:
    """The plural of one English noun or noun phrase (its last word): :data:`IRREGULAR_PLURALS`, then the rule.

    >>> [plural_word(w) for w in ("bus", "knife", "wine glass", "person", "lady", "toy", "circle")]
    ['buses', 'knives', 'wine glasses', 'people', 'ladies', 'toys', 'circles']
    """
    head, _, last = word.rpartition(" ")
    prefix = f"{head} " if head else ""
    lower = last.lower()
    if lower in IRREGULAR_PLURALS:
        return prefix + IRREGULAR_PLURALS[lower]
    if not lower or not lower[-1].isalpha():
        return word  # "class 12": no plural to make
    if lower.endswith(("s", "x", "z", "ch", "sh")):
        return f"{prefix}{last}es"
    if lower.endswith("y") and len(lower) > 1 and lower[-2] not in "aeiou":
        return f"{prefix}{last[:-1]}ies"
    return f"{prefix}{last}s"


def noun(label: str, count: int = 1) -> str:
    """How ``count`` objects of ``label`` are said after the number: ``noun("person", 2) == "people"``.

    >>> noun("person", 1), noun("person", 3), noun("skis", 1), noun("mouse", 2), noun("tv", 2)
    ('person', 'people', 'pair of skis', 'mice', 'TVs')
    """
    one, several = SPOKEN.get(label.lower(), (label, None))
    if count == 1:
        return one
    return several or plural_word(label)


def count_phrase(label: str, count: int) -> str:
    """``count`` objects of ``label`` in words, the one wording of a count in the page, the description, the CLI and
    the batch job: ``count_phrase("person", 2) == "2 people"``.

    >>> count_phrase("person", 2), count_phrase("circle", 1), count_phrase("skis", 3)
    ('2 people', '1 circle', '3 pairs of skis')
    """
    return f"{count} {noun(label, count)}"


def count_labels(instances: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """How many objects of each label, the most numerous first (ties in the order they were found).

    >>> count_labels([{"label": "dog"}, {"label": "person"}, {"label": "person"}])
    {'person': 2, 'dog': 1}
    """
    counts: dict[str, int] = {}
    for instance in instances:
        counts[str(instance["label"])] = counts.get(str(instance["label"]), 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))  # sorted() is stable: ties keep their order


def count_objects(instances: Iterable[Mapping[str, Any]]) -> str:
    """What was found, counted, as one line: ``"2 people, 1 dog"`` (``"no objects found"`` when nothing was).

    >>> count_objects([{"label": "dog"}, {"label": "person"}, {"label": "person"}])
    '2 people, 1 dog'
    >>> count_objects([])
    'no objects found'
    """
    counts = count_labels(instances)
    return ", ".join(count_phrase(label, n) for label, n in counts.items()) or "no objects found"


def check_options(**options: Any) -> dict[str, Any]:
    """The description's options (:data:`DESCRIBE_OPTIONS`), each checked by its declaration.

    >>> check_options(detail="short", max_objects=None)
    {'detail': 'short', 'max_objects': None}
    """
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise TypeError(f"the description got unknown options {unknown}; it takes {sorted(_OPTIONS)}")
    return {name: _OPTIONS[name].check(value) for name, value in options.items()}


def _picture_size(image_size: Sequence[int]) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (width, height) in pixels, got {image_size!r}") from None
    if width <= 0 or height <= 0:
        raise ValueError(f"image_size must be (width, height) with both above 0, got {image_size!r}")
    return width, height


def _third(value: float, extent: int, names: tuple[str, str, str]) -> str:
    share = value / extent
    return names[0] if share < 1 / 3 else names[2] if share > 2 / 3 else names[1]


def locate_objects(instances: Sequence[Mapping[str, Any]], image_size: Sequence[int]) -> list[dict[str, Any]]:
    """Each instance's place and size in words, in reading order (top third first, left to right within a third).

    Args:
        instances (Sequence[dict]): the contract's instances; ``label``, ``box`` and ``area`` are read.
        image_size (tuple[int, int]): ``(width, height)`` of the picture, in pixels.

    Returns:
        list[dict]: one per instance, in reading order, with
        - ``"index"``: int, the instance's index in ``instances``;
        - ``"label"``: str;
        - ``"column"`` (``"left"``, ``"centre"``, ``"right"``) and ``"row"`` (``"top"``, ``"middle"``, ``"bottom"``):
          the third of the picture the box centre falls in;
        - ``"position"``: str, e.g. ``"at the top left"``, ``"in the centre"``;
        - ``"size"``: ``"large"``, ``"medium"`` or ``"small"``; ``"share"``: float, its area over the picture's;
        - ``"text"``: str, what a list item can say, e.g. ``"large person in the centre"``.

    >>> locate_objects([{"label": "cat", "box": [0, 0, 50, 40], "area": 2000}], (100, 100))[0]["text"]
    'cat at the top left'
    """
    width, height = _picture_size(image_size)
    located: list[tuple[tuple, dict[str, Any]]] = []
    for index, instance in enumerate(instances):
        x0, y0, x1, y1 = (float(v) for v in instance["box"])
        center_x = min(max((x0 + x1) / 2, 0.0), width)
        center_y = min(max((y0 + y1) / 2, 0.0), height)
        area = instance.get("area")
        area = float(area) if area is not None else max(0.0, x1 - x0) * max(0.0, y1 - y0)
        share = area / (width * height)
        size = "large" if share > LARGE_SHARE else "small" if share < SMALL_SHARE else "medium"
        column, row = _third(center_x, width, COLUMNS), _third(center_y, height, ROWS)
        position = POSITIONS[column, row]
        said = f"{size} " if size != "medium" else ""
        order = (ROWS.index(row), center_x, center_y, index)
        located.append(
            (
                order,
                {
                    "index": index,
                    "label": str(instance["label"]),
                    "column": column,
                    "row": row,
                    "position": position,
                    "size": size,
                    "share": share,
                    "text": f"{said}{noun(str(instance['label']))} {position}",
                },
            )
        )
    return [place for _, place in sorted(located, key=lambda pair: pair[0])]


def _segment_map(panoptic: Mapping[str, Any]) -> np.ndarray:
    segment_map = panoptic["map"]
    if isinstance(segment_map, Mapping):  # the JSON form
        from .jsonform import decode_map

        segment_map = decode_map(segment_map)
    return np.asarray(segment_map)


def locate_stuff(panoptic: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Each stuff segment of a panoptic view (``isthing`` False) with where it lies, in reading order.

    Args:
        panoptic (dict | None): the contract's panoptic view (``map`` as an array or its JSON form, ``segments``);
            None for none.

    Returns:
        list[dict]: one per stuff segment, top third first and left to right within a third (by centre of mass),
        with ``"id"`` (the segment's), ``"label"``, ``"column"``, ``"row"``, ``"position"`` (e.g. ``"at the top"``)
        and ``"share"`` (its area over the picture's).

    >>> sky_map = np.array([[1, 1, 1], [0, 0, 0], [2, 2, 2]])
    >>> segments = [{"id": 1, "label": "sky", "isthing": False}, {"id": 2, "label": "grass", "isthing": False}]
    >>> [(place["label"], place["position"]) for place in locate_stuff({"map": sky_map, "segments": segments})]
    [('sky', 'at the top'), ('grass', 'at the bottom')]
    """
    stuff = [segment for segment in (panoptic or {}).get("segments", []) if not segment.get("isthing", True)]
    if not stuff:
        return []
    segment_map = _segment_map(panoptic)
    height, width = segment_map.shape
    flat = segment_map.ravel()
    length = int(flat.max()) + 1
    counts = np.bincount(flat, minlength=length)
    rows = np.bincount(flat, weights=np.repeat(np.arange(height, dtype=np.float64), width), minlength=length)
    cols = np.bincount(flat, weights=np.tile(np.arange(width, dtype=np.float64), height), minlength=length)
    located = []
    for segment in stuff:
        index = int(segment["id"])
        if index >= length or counts[index] == 0:
            continue
        center_x = cols[index] / counts[index] + 0.5  # pixel centres
        center_y = rows[index] / counts[index] + 0.5
        column, row = _third(center_x, width, COLUMNS), _third(center_y, height, ROWS)
        place = {"id": index, "label": str(segment["label"]), "column": column, "row": row,
                 "position": POSITIONS[column, row], "share": float(counts[index]) / flat.size}  # fmt: skip
        located.append(((ROWS.index(row), center_x, center_y, index), place))
    return [place for _, place in sorted(located, key=lambda pair: pair[0])]


def stuff_sentence(places: Sequence[Mapping[str, Any]], max_regions: int | None = STUFF_NAMED) -> str:
    """Where the main stuff regions are, as one sentence: "Sky at the top, grass at the bottom." ("" for none).

    The largest regions of at least :data:`STUFF_SHARE` of the picture are named, at most ``max_regions`` (and
    :data:`STUFF_NAMED`), in the reading order of ``places`` (:func:`locate_stuff`).

    >>> stuff_sentence([{"label": "sky", "position": "at the top", "share": 0.4},
    ...                 {"label": "grass", "position": "at the bottom", "share": 0.3}])
    'Sky at the top, grass at the bottom.'
    """
    limit = STUFF_NAMED if max_regions is None else min(STUFF_NAMED, max_regions)
    large = [place for place in places if place["share"] >= STUFF_SHARE]
    kept = {id(place) for place in sorted(large, key=lambda place: -place["share"])[:limit]}
    said = [f"{place['label']} {place['position']}" for place in large if id(place) in kept]
    if not said:
        return ""
    text = ", ".join(said)
    return text[0].upper() + text[1:] + "."


def _join(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``: how a list is said."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" and {items[-1]}"


def _groups(places: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Places by label, labels in the reading order of their first object (dicts keep insertion order)."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for place in places:
        groups.setdefault(place["label"], []).append(place)
    return groups


def _group_sentence(label: str, members: Sequence[Mapping[str, Any]]) -> str:
    """One label's sentence: "1 large dog in the centre.", "3 small cars on the right.", "2 people: a large one
    in the centre and one on the left." or, one size for all, "2 small cups: one on the left and one on the right."
    """
    count = len(members)
    sizes = {place["size"] for place in members}
    shared = sizes.pop() if len(sizes) == 1 else None  # one size for all is said once, before the noun
    kinds: dict[tuple[str, str], int] = {}  # (size, position) -> count, in reading order of first occurrence
    for place in members:
        kind = ("medium" if shared else place["size"], place["position"])
        kinds[kind] = kinds.get(kind, 0) + 1
    said = f"{shared} " if shared and shared != "medium" else ""
    if len(kinds) == 1:
        ((_, position),) = kinds
        return f"{count} {said}{noun(label, count)} {position}."
    parts = []
    for (size, position), same in kinds.items():
        if same == 1:
            parts.append(f"a {size} one {position}" if size != "medium" else f"one {position}")
        else:
            parts.append(f"{same} {size} ones {position}" if size != "medium" else f"{same} {position}")
    return f"{count} {said}{noun(label, count)}: {_join(parts)}."


def _counts(places: Sequence[Mapping[str, Any]]) -> list[str]:
    return [count_phrase(label, len(members)) for label, members in _groups(places).items()]


def _rest_sentence(rest: Sequence[Mapping[str, Any]], named_labels: set[str]) -> str:
    """The objects not named, counted: "Also 3 more people and 1 dog." (or "5 objects: ..." when none was named),
    the most numerous labels first and at most :data:`REST_LABELS` of them, so that the sentence stays short."""
    groups = sorted(_groups(rest).items(), key=lambda item: -len(item[1]))  # stable: ties keep reading order
    counts = [
        f"{len(same)} {'more ' if label in named_labels else ''}{noun(label, len(same))}"
        for label, same in groups[:REST_LABELS]
    ]
    others = sum(len(same) for _, same in groups[REST_LABELS:])
    if others:
        counts.append(f"{others} other object{'s' if others != 1 else ''}")
    if named_labels:
        return f"Also {_join(counts)}."
    return f"{len(rest)} object{'s' if len(rest) != 1 else ''}: {_join(counts)}."


def describe_scene(
    caption: str,
    instances: Sequence[Mapping[str, Any]],
    image_size: Sequence[int],
    *,
    detail: str = "long",
    max_objects: int | None = DEFAULT_MAX_OBJECTS,
    labels: Iterable[str] | None = None,
    panoptic: Mapping[str, Any] | None = None,
) -> str:
    """The scene in words for a screen reader: the caption, then what is where, how many and what is large, then
    where the main stuff regions are.

    Args:
        caption (str): the caption as the captioner wrote it ("" for none).
        instances (Sequence[dict]): the contract's instances (``label``, ``score``, ``box``, ``area``), highest
            score first; masks are not read.
        image_size (tuple[int, int]): ``(width, height)`` of the picture, in pixels.
        detail (str, default "long"): ``"long"``: the caption, then one sentence per label with each object's
            position and size, e.g. "A man riding a bike down a street. 2 people: a small one on the left and a
            large one in the centre. 1 bicycle in the centre. 3 cars on the right." ``"short"`` (alt text): the
            caption, then the counts by label ("2 people, 1 bicycle and 3 cars."), the counts only where they add
            something, i.e. unless the caption already names every object found, as many times as found (a singular
            noun counts 1, "two dogs" 2, a plural without a number leaves the count open).
        max_objects (int | None, default 10): name at most this many objects, the highest-scoring ones; the rest
            are summed up by label ("Also 3 more people and 1 dog." in the long form; "and 4 more objects" in
            the short one). None names every object.
        labels (Iterable[str] | None, default None): the segmenter's label names, for the short form's test of
            what the caption names (see :func:`ground_caption`).
        panoptic (dict | None, default None): the panoptic view; its stuff segments close the long form
            (:func:`stuff_sentence`: "Sky at the top, grass at the bottom."). The short form leaves stuff out.

    Returns:
        str: sentences separated by single spaces; "No objects found." when there are none.

    >>> cars = [{"label": "car", "score": 0.9, "box": [120, 40, 150, 60], "area": 500} for _ in range(3)]
    >>> describe_scene("a street", cars, (160, 100), detail="short")
    'A street. 3 cars.'
    """
    check_options(detail=detail, max_objects=max_objects)
    named_indices = sorted(range(len(instances)), key=lambda i: (-float(instances[i]["score"]), i))
    if max_objects is not None:
        named_indices = named_indices[:max_objects]
    named_set = set(named_indices)
    places = locate_objects(instances, image_size)
    named = [place for place in places if place["index"] in named_set]
    rest = [place for place in places if place["index"] not in named_set]
    sentences = [caption_sentence(caption)] if caption.strip() else []
    stuff = stuff_sentence(locate_stuff(panoptic), max_objects) if detail == "long" and panoptic else ""
    if not instances:
        if detail == "short" and sentences:
            return " ".join(sentences)
        return " ".join([*sentences, "No objects found.", *([stuff] if stuff else [])])
    if detail == "short":
        if not sentences or _counts_add_something(caption, instances, labels):
            items = _counts(named)
            if rest:
                items.append(f"{len(rest)} {'more ' if named else ''}object{'s' if len(rest) != 1 else ''}")
            sentences.append(_join(items) + ".")
        return " ".join(sentences)
    groups = _groups(named)
    sentences += [_group_sentence(label, members) for label, members in groups.items()]
    if rest:
        sentences.append(_rest_sentence(rest, set(groups)))
    return " ".join([*sentences, *([stuff] if stuff else [])])


@lru_cache(maxsize=32)
def _vocabulary(labels: tuple[str, ...]) -> dict[tuple[str, ...], tuple[str, bool]]:
    """Caption token sequences -> (label, plural form?), for each label, its synonyms and their plurals."""
    vocabulary: dict[tuple[str, ...], tuple[str, bool]] = {}

    def add(phrase: str, label: str) -> None:
        singular = tuple(_TOKEN.findall(phrase.lower()))
        plural = tuple(_TOKEN.findall(plural_word(phrase.lower())))
        if singular:
            vocabulary[singular] = (label, False)
        if plural:
            vocabulary[plural] = (label, True)  # after the singular: "sheep", "people" leave the count open

    chosen = [label for label in dict.fromkeys(labels) if label.strip().lower() not in _SKIPPED_LABELS]
    for label in chosen:  # synonyms first, so that a label's own name wins over another label's synonym
        for synonym in SYNONYMS.get(label.lower(), STUFF_SYNONYMS.get(label.lower(), ())):
            add(synonym, label)
    for label in chosen:
        add(label, label)
    return vocabulary


def _mentions(caption: str, labels: Iterable[str]) -> list[dict[str, Any]]:
    """The caption's label-naming words with their offsets, label, and the count the caption gives them."""
    vocabulary = _vocabulary(tuple(labels))
    longest = max((len(phrase) for phrase in vocabulary), default=1)
    tokens = [(match.group().lower(), match.start(), match.end()) for match in _TOKEN.finditer(caption)]

    def joined(first: int, last: int) -> bool:  # the tokens first..last are one phrase: spaces or a hyphen between
        return all(
            (gap := caption[tokens[k][2] : tokens[k + 1][1]]).isspace() or gap == "-" for k in range(first, last)
        )

    def next_word(position: int) -> str | None:  # the word right after a phrase, if only spaces come between
        if position >= len(tokens) or not caption[tokens[position - 1][2] : tokens[position][1]].isspace():
            return None
        return tokens[position][0]

    mentions, index = [], 0
    while index < len(tokens):
        for length in range(min(longest, len(tokens) - index), 0, -1):
            phrase = tuple(token for token, _, _ in tokens[index : index + length])
            if phrase in vocabulary and joined(index, index + length - 1):
                break
        else:
            index += 1
            continue
        label, plural = vocabulary[phrase]
        after = next_word(index + length)
        if length == 1 and phrase[0] in COLOUR_LABELS and after is not None:
            then = next_word(index + 2)
            noun_follows = after not in _NOUN_FOLLOWERS and not after.endswith("ing")
            if noun_follows or (after in ("and", "or") and then in _COLOURS):
                index += 1  # "an orange cat", "an orange and white cat": a colour, not the fruit
                continue
        before = [token for token, _, _ in tokens[max(0, index - 2) : index]]
        numbers = [_NUMBERS.get(token) or (int(token) if token.isdigit() else None) for token in before]
        number = next((n for n in reversed(numbers) if n), None)
        mentions.append(
            {
                "start": tokens[index][1],
                "end": tokens[index + length - 1][2],
                "label": label,
                "count": number if number is not None else (None if plural else 1),
            }
        )
        index += length
    return mentions


def _label_names(instances: Sequence[Mapping[str, Any]], labels: Iterable[str] | None) -> tuple[str, ...]:
    """The labels to look for: the segmenter's (or COCO's), then any other label an instance has, once each."""
    base = list(labels) if labels is not None else list(COCO_LABELS)
    return tuple(dict.fromkeys([*base, *sorted({str(instance["label"]) for instance in instances})]))


def _counts_add_something(caption: str, instances: Sequence[Mapping[str, Any]], labels: Iterable[str] | None) -> bool:
    """Whether counts by label tell more than the caption: unless it names each label found, as many times."""
    said: dict[str, int | None] = {}  # label -> how many the caption says; None: a plural with no number
    for mention in _mentions(caption, _label_names(instances, labels)):
        label, count = mention["label"].lower(), mention["count"]
        so_far = said.get(label, 0)
        said[label] = None if count is None or so_far is None else so_far + count
    found: dict[str, int] = {}
    for instance in instances:
        found[str(instance["label"]).lower()] = found.get(str(instance["label"]).lower(), 0) + 1
    return any(said.get(label) != count for label, count in found.items())


def ground_caption(
    caption: str,
    instances: Sequence[Mapping[str, Any]],
    labels: Iterable[str] | None = None,
    *,
    panoptic: Mapping[str, Any] | None = None,
    stuff_labels: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """The caption's words that name an object, each with the instances of its label.

    A word names a label when it is the label's name, one of its :data:`SYNONYMS`, or the plural of either
    (case does not matter); multi-word names ("hot dog", "teddy bear", "dirt bike") are matched as one word, the
    longest first, also when written with a hyphen. A colour that is also a label (:data:`COLOUR_LABELS`) is
    taken as the label only where no noun follows it.

    Args:
        caption (str): the caption exactly as it appears in the result (offsets index it).
        instances (Sequence[dict]): the contract's instances; only ``label`` is read.
        labels (Iterable[str] | None, default None): the segmenter's label names (its ``categories``); the
            words it could have found. None: the 80 COCO labels. The instances' own labels are always added.
        panoptic (dict | None, default None): the panoptic view, whose stuff segments (``isthing`` False) the
            stuff words link to.
        stuff_labels (Iterable[str] | None, default None): the stuff model's label names (its ``categories``): the
            stuff words it could have found; None: no stuff words are looked for (no stuff model ran). The stuff
            segments' own labels are always added.

    Returns:
        list[dict]: in caption order, one per word, with
        - ``"word"``: str, ``caption[start:end]``;
        - ``"start"``, ``"end"``: int, character offsets into ``caption``;
        - ``"label"``: str, the label the word names;
        - ``"instances"``: list[int], the indices into ``instances`` of that label, empty when the segmenter found
          none (a hint that the caption may be wrong);
        - ``"segments"`` (stuff words only): list[int], the ids of the panoptic stuff segments of that label,
          empty when the stuff model found none (the same hint); a stuff word's ``instances`` is empty.

    >>> found = [{"label": "bicycle"}, {"label": "person"}]
    >>> ground_caption("a man riding a bike", found)  # doctest: +NORMALIZE_WHITESPACE
    [{'word': 'man', 'start': 2, 'end': 5, 'label': 'person', 'instances': [1]},
     {'word': 'bike', 'start': 15, 'end': 19, 'label': 'bicycle', 'instances': [0]}]
    """
    names = _label_names(instances, labels)
    stuff_segments = [s for s in (panoptic or {}).get("segments", []) if not s.get("isthing", True)]
    stuff_names: tuple[str, ...] = ()
    if stuff_labels is not None or stuff_segments:
        found = [str(segment["label"]) for segment in stuff_segments]
        taken = {name.lower() for name in names}
        stuff_names = tuple(n for n in dict.fromkeys([*(stuff_labels or ()), *found]) if n.lower() not in taken)
    stuff_set = {name.lower() for name in stuff_names}
    grounding = []
    for mention in _mentions(caption, names + stuff_names):
        label = mention["label"].lower()
        entry = {
            "word": caption[mention["start"] : mention["end"]],
            "start": mention["start"],
            "end": mention["end"],
            "label": mention["label"],
            "instances": [i for i, instance in enumerate(instances) if str(instance["label"]).lower() == label],
        }
        if label in stuff_set:
            entry["segments"] = [int(s["id"]) for s in stuff_segments if str(s["label"]).lower() == label]
        grounding.append(entry)
    return grounding


def describe(
    caption: str,
    instances: Sequence[Mapping[str, Any]],
    image_size: Sequence[int],
    *,
    detail: str = "long",
    max_objects: int | None = DEFAULT_MAX_OBJECTS,
    labels: Iterable[str] | None = None,
    panoptic: Mapping[str, Any] | None = None,
    stuff_labels: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Both words of a result: ``{"description": describe_scene(...), "grounding": ground_caption(...)}``; with a
    ``panoptic`` view that holds stuff, and the stuff model's ``stuff_labels``, both say and link the stuff too.

    The pipeline calls this for every result; call it again after changing the instances (another threshold:
    :func:`pipeline.panoptic.with_threshold`), since grounding indices point into the instances list.
    """
    labels = list(labels) if labels is not None else None
    stuff_labels = list(stuff_labels) if stuff_labels is not None else None
    return {
        "description": describe_scene(
            caption, instances, image_size, detail=detail, max_objects=max_objects, labels=labels, panoptic=panoptic
        ),
        "grounding": ground_caption(caption, instances, labels, panoptic=panoptic, stuff_labels=stuff_labels),
    }
