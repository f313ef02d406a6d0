"""A deterministic synthetic "shapes" data set: pictures of coloured shapes with instance masks and captions.

Each image (``image_size`` square, PNG) shows 1 to ``max_objects`` shapes (circle, square, triangle) in five colours
(distinct within a picture) on a varied low-saturation background (flat, gradient or noise), partly overlapping: a
shape drawn later hides part of an earlier one, and every shape keeps at least ``min_visible`` of its area in view.
Shape centres are at least ``min_gap`` pixels apart horizontally, so "to the left of" is always well defined.

With ``--stuff`` (:func:`draw_sample` ``stuff=True``) the background is stuff instead: one to three regions of
:data:`STUFF` (``sky``: a light-blue vertical gradient; ``grass``: green with darker speckles; ``water``: blue with
lighter horizontal streaks; ``sand``: pale yellow-brown with fine grain; ``wall``: flat light grey or beige with faint
brick lines), split by boundaries that are straight or wavy, across or (less often) down the picture. Each split then
also holds ADE20K-style semantic annotations (``<split>/annotations/000000.png``: 0 unlabeled, 1..5 the stuff of
:data:`STUFF`, 6 a shape, 7 a plain background: :data:`PLAIN_SHARE` of the pictures keep the plain one) and
``labels.json`` (their names), what ``train/stuff.py`` reads. A picture without
``--stuff`` is drawn exactly as before (the random draws are the same), so the committed models' data is unchanged.

A split folder holds what the training scripts read::

    <out>/<split>/images/000000.png ...
    <out>/<split>/annotations/000000.png ...   with --stuff: the semantic labels of each pixel
    <out>/<split>/instances.json     COCO instances (compressed RLE masks, areas, boxes, iscrowd 0)
    <out>/<split>/captions.txt       Flickr8k layout ("image,caption"), five phrasings per image
    <out>/<split>/questions.json     VQAv2 layout: questions about each image (:func:`questions`), with
    <out>/<split>/annotations.json   their answers from the picture's truth (ten answers each, as VQAv2 gives)

(``--caption_layout token`` writes Flickr8k's ``Flickr8k.token.txt`` and ``results`` Flickr30k's ``results.csv``.)
Every image is drawn from its own random generator seeded by ``(seed, split, index)``, so a file is the same on every
machine and a split of another seed shares no image with it.

With ``--varied`` (:func:`draw_varied`) each picture is rendered differently (:data:`VARIED`): its size (96 to 288 px)
and aspect, plain, light noisy or stuff backgrounds, smaller and larger shapes, blur and JPEG artefacts, a quarter of
them as above. With ``--grouped`` each picture has one caption, its shapes grouped by kind with counts in words
(:func:`grouped`: "a blue circle and two triangles in red and yellow"). Both are for captioner experiments
(train/README.md has what they gave); the committed models are trained on the default splits.

Command (the ``shapes`` models are trained on the default splits; their held-out test split uses ``--seed 1``)::

    python -m train.shapes --output_dir data/shapes --seed 0 --train 3000 --val 200 --test 300
    python -m train.shapes --output_dir data/shapes-stuff --stuff --seed 0 --train 600 --val 60 --test 60
    python -m train.shapes --output_dir data/shapes-varied --varied --grouped --train 8000 --val 0 --test 0

>>> sample = draw_sample(np.random.default_rng(0))
>>> sample.image.size, len(sample.objects) >= 1
((128, 128), True)
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from pycocotools import mask as mask_utils

CATEGORIES = ("circle", "square", "triangle")
COLORS = {
    "red": (215, 35, 35),
    "green": (40, 175, 55),
    "blue": (40, 70, 215),
    "yellow": (235, 210, 40),
    "purple": (140, 50, 175),
}
SPLITS = ("train", "val", "test")
CAPTION_LAYOUTS = {"captions": "captions.txt", "token": "Flickr8k.token.txt", "results": "results.csv"}
COUNT_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}
#: The stuff a ``--stuff`` background is made of; annotation value ``i + 1`` is ``STUFF[i]``.
STUFF = ("sky", "grass", "water", "sand", "wall")
#: The annotation value of a pixel of a shape (a thing: the stuff model learns to leave it out).
SHAPE_LABEL = len(STUFF) + 1
#: The annotation value of a plain background (a share of a ``--stuff`` split keeps the old backgrounds, so that the
#: stuff model learns to find no stuff there).
PLAIN_LABEL = len(STUFF) + 2
#: The share of a ``--stuff`` split's pictures drawn on a plain background.
PLAIN_SHARE = 0.2
#: The semantic classes of a ``--stuff`` split, index = annotation value - 1 (``labels.json``).
STUFF_CLASSES = (*STUFF, "shape", "plain")


@dataclass
class ShapeObject:
    """One drawn shape: its category and colour names, its visible mask (bool[H, W]) and the shape's centre x."""

    category: str
    color: str
    mask: np.ndarray
    center_x: float


@dataclass
class Sample:
    """One picture with its shapes, listed left to right."""

    image: Image.Image
    objects: list[ShapeObject]
    #: With stuff backgrounds: uint8[H, W], 1..5 the stuff of :data:`STUFF` (under the shapes too; 0 on a plain
    #: background, :data:`PLAIN_SHARE` of them), else None.
    stuff: np.ndarray | None = None


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A low-saturation background (flat, gradient or noise) so the shapes' colours stay unambiguous."""
    style = rng.integers(3)
    base = rng.uniform(50, 200) + rng.uniform(-12, 12, size=3)
    if style == 0:
        pixels = np.broadcast_to(base, (size, size, 3)).copy()
    elif style == 1:
        other = rng.uniform(50, 200) + rng.uniform(-12, 12, size=3)
        ramp = np.linspace(0.0, 1.0, size)[:, None, None]
        pixels = base * (1 - ramp) + other * ramp
        pixels = np.broadcast_to(pixels, (size, size, 3)) if rng.integers(2) else pixels.transpose(1, 0, 2)
        pixels = np.broadcast_to(pixels, (size, size, 3)).copy()
    else:
        pixels = base + rng.normal(0, rng.uniform(8, 25), size=(size, size, 1))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _stuff_texture(rng: np.random.Generator, kind: str, size: int) -> np.ndarray:
    """A whole picture of one stuff's texture (float RGB); the regions cut their part out of it."""
    rows = np.arange(size, dtype=np.float64)[:, None, None]
    if kind == "sky":
        top = np.array([105, 160, 225]) + rng.uniform(-12, 12, size=3)
        bottom = np.array([185, 215, 245]) + rng.uniform(-10, 10, size=3)
        ramp = rows / max(1, size - 1)
        return np.broadcast_to(top * (1 - ramp) + bottom * ramp, (size, size, 3)) + rng.normal(0, 2, (size, size, 1))
    if kind == "grass":
        pixels = np.array([70, 150, 55]) + rng.uniform(-15, 15, size=3) + rng.normal(0, 6, (size, size, 1))
        speckles = rng.random((size, size)) < 0.18
        pixels[speckles] *= rng.uniform(0.45, 0.7)
        return pixels
    if kind == "water":
        pixels = np.array([35, 85, 165]) + rng.uniform(-12, 12, size=3) + rng.normal(0, 4, (size, size, 1))
        for _ in range(size // 4):  # short light streaks along the rows
            row, start = rng.integers(size), rng.integers(size)
            pixels[row, start : start + int(rng.integers(6, 24))] += rng.uniform(35, 70)
        return pixels
    if kind == "sand":
        return np.array([210, 188, 140]) + rng.uniform(-12, 12, size=3) + rng.normal(0, 9, (size, size, 3))
    base = np.array([200, 200, 200]) if rng.integers(2) else np.array([222, 206, 178])
    pixels = np.broadcast_to(base + rng.uniform(-10, 10, size=3), (size, size, 3)).copy()
    brick, line = int(rng.integers(8, 13)), rng.uniform(14, 24)
    offset = int(rng.integers(brick))
    pixels[(np.arange(size) + offset) % brick == 0] -= line
    for top in range(-offset, size, brick):  # vertical joints, shifted by half a brick every other course
        shift = brick if (top // brick) % 2 else 0
        pixels[max(0, top) : max(0, top + brick), shift :: 2 * brick] -= line
    return pixels


def _stuff_background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One to three stuff regions split by straight or wavy boundaries: (uint8 RGB pixels, uint8 labels 1..5)."""
    count = int(rng.integers(1, 4))
    kinds = [int(k) for k in rng.choice(len(STUFF), size=count, replace=False)]
    cuts = np.sort(rng.uniform(0.25, 0.75, size=count - 1)) if count > 1 else np.array([])
    if count == 3:
        cuts = np.array([rng.uniform(0.2, 0.4), rng.uniform(0.6, 0.8)])
    across = rng.random() < 0.75  # boundaries run across the picture (a horizon) more often than down it
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    position, along = (rows, cols) if across else (cols, rows)
    labels = np.full((size, size), kinds[0] + 1, dtype=np.uint8)
    for cut, kind in zip(cuts, kinds[1:]):
        boundary = cut * size
        if rng.random() < 0.6:  # not always straight
            amplitude, period = rng.uniform(2, size * 0.08), rng.uniform(size * 0.3, size * 1.2)
            boundary = boundary + amplitude * np.sin(2 * np.pi * along / period + rng.uniform(0, 2 * np.pi))
        labels[position >= boundary] = kind + 1
    pixels = np.zeros((size, size, 3), dtype=np.float64)
    for kind in kinds:
        region = labels == kind + 1
        pixels[region] = _stuff_texture(rng, STUFF[kind], size)[region]
    return np.clip(pixels, 0, 255).astype(np.uint8), labels


def _shape_mask(category: str, center: tuple[float, float], radius: float, size: int) -> np.ndarray:
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    x, y = center
    if category == "circle":
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=255)
    elif category == "square":
        half = radius * 0.9
        draw.rectangle([x - half, y - half, x + half, y + half], fill=255)
    else:
        draw.polygon(
            [(x, y - radius), (x + radius * 1.1, y + radius * 0.8), (x - radius * 1.1, y + radius * 0.8)], fill=255
        )
    return np.asarray(canvas) > 0


def draw_sample(
    rng: np.random.Generator,
    *,
    image_size: int = 128,
    max_objects: int = 3,
    min_gap: int = 14,
    min_visible: float = 0.6,
    stuff: bool = False,
    radius: tuple[float, float] = (0.09, 0.2),
) -> Sample:
    """Draw one picture with 1 to ``max_objects`` shapes.

    Args:
        rng (numpy.random.Generator): the only source of randomness.
        image_size (int, default 128): width and height in pixels.
        max_objects (int, default 3): most shapes in a picture, 1 to 4.
        min_gap (int, default 14): least horizontal distance between two shape centres, in pixels.
        min_visible (float, default 0.6): least fraction of a shape left in view by the shapes drawn over it.
        stuff (bool, default False): a background of stuff regions (:func:`_stuff_background`) instead of a plain
            one; the sample's ``stuff`` then holds their labels.
        radius (tuple[float, float], default (0.09, 0.2)): the range of the shapes' radii, a fraction of the side.

    Returns:
        Sample: the RGB image and its shapes sorted by centre x (left to right).
    """
    if not 1 <= max_objects <= 4:
        raise ValueError(f"max_objects must be between 1 and 4, got {max_objects!r}")
    if image_size < 64:
        raise ValueError(f"image_size must be at least 64 pixels, got {image_size!r}")
    stuff_labels = None
    if stuff and rng.random() >= PLAIN_SHARE:
        pixels, stuff_labels = _stuff_background(rng, image_size)
    else:
        pixels = _background(rng, image_size)
        stuff_labels = np.zeros((image_size, image_size), dtype=np.uint8) if stuff else None
    count = int(rng.integers(1, max_objects + 1))
    for _ in range(100):  # rejection sampling of a layout; a few tries at most in practice
        radii = rng.uniform(*radius, size=count) * image_size
        centers_x = [rng.uniform(r * 1.1, image_size - r * 1.1) for r in radii]
        centers_y = [rng.uniform(r, image_size - r) for r in radii]
        gaps = np.diff(np.sort(centers_x))
        if count > 1 and gaps.min() < min_gap:
            continue
        categories = [CATEGORIES[i] for i in rng.integers(len(CATEGORIES), size=count)]
        full = [_shape_mask(c, (x, y), r, image_size) for c, x, y, r in zip(categories, centers_x, centers_y, radii)]
        visible = [mask.copy() for mask in full]
        for later in range(1, count):  # shapes are painted in list order, so later ones hide earlier ones
            for earlier in range(later):
                visible[earlier] &= ~full[later]
        if all(v.sum() >= min_visible * f.sum() for v, f in zip(visible, full)):
            break
    else:
        raise RuntimeError("no layout found in 100 tries; lower min_gap or max_objects")
    # Distinct colours: two touching shapes of one colour would merge into one blob in the picture.
    colors = [list(COLORS)[i] for i in rng.choice(len(COLORS), size=count, replace=False)]
    objects = []
    for category, color, mask, full_mask, center_x in zip(categories, colors, visible, full, centers_x):
        tint = np.clip(np.array(COLORS[color]) + rng.integers(-20, 21, size=3), 0, 255)
        pixels[full_mask] = tint.astype(np.uint8)
        objects.append(ShapeObject(category, color, mask, float(center_x)))
    objects.sort(key=lambda shape: shape.center_x)
    return Sample(Image.fromarray(pixels), objects, stuff_labels)


#: What :func:`draw_varied` varies, so that a model trained on it meets other renderings: the picture's longer side
#: and its aspect (height / width), the backgrounds' share ("plain": :func:`_background`, "light": a bright noisy one,
#: "stuff": :func:`_stuff_background`), the shapes' radius as a fraction of the picture's side, the share of pictures
#: blurred and the blur radius, the share saved through JPEG and its quality, and the share left as :func:`draw_sample`
#: draws them (128 px, plain background).
VARIED = {
    "side": (96, 288),
    "aspect": (0.7, 1.45),
    "backgrounds": {"plain": 0.4, "light": 0.3, "stuff": 0.3},
    "radius": (0.055, 0.2),
    "blur": (0.5, (0.2, 1.4)),
    "jpeg": (0.6, (30, 95)),
    "unchanged": 0.25,
}


def _light_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A bright background with grain, sometimes shaded from one side (the colours stay the shapes')."""
    pixels = rng.uniform(150, 245) + rng.uniform(-12, 12, size=3) + rng.normal(0, rng.uniform(0, 35), (size, size, 1))
    if rng.random() < 0.5:
        shade = np.linspace(-1, 1, size)[None, :, None] * rng.uniform(5, 40)
        pixels = pixels + (shade if rng.random() < 0.5 else shade.transpose(1, 0, 2))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def draw_varied(rng: np.random.Generator, *, max_objects: int = 3) -> Sample:
    """One training picture in a varied rendering (:data:`VARIED`): picture size and aspect, background, shape sizes,
    blur and JPEG artefacts all drawn at random, the shapes and captions those of :func:`draw_sample`.

    >>> sample = draw_varied(np.random.default_rng(3))
    >>> 1 <= len(sample.objects) <= 3 and sample.objects[0].mask.shape == sample.image.size[::-1]
    True
    """
    if rng.random() < VARIED["unchanged"]:
        return draw_sample(rng, max_objects=max_objects)
    side = int(rng.integers(VARIED["side"][0], VARIED["side"][1] + 1))
    kinds = list(VARIED["backgrounds"])
    background = kinds[rng.choice(len(kinds), p=list(VARIED["backgrounds"].values()))]
    sample = draw_sample(
        rng, image_size=side, max_objects=max_objects, min_gap=max(6, side // 10), radius=VARIED["radius"],
        stuff=background == "stuff",
    )  # fmt: skip
    pixels = np.asarray(sample.image).copy()
    if background == "light":
        shapes_there = np.any([shape.mask for shape in sample.objects], axis=0)
        pixels[~shapes_there] = _light_background(rng, side)[~shapes_there]
    aspect = rng.uniform(*VARIED["aspect"])
    width, height = (side, max(64, round(side * aspect))) if aspect < 1 else (max(64, round(side / aspect)), side)
    image = Image.fromarray(pixels).resize((width, height), Image.BILINEAR)
    chance, radii = VARIED["blur"]
    if rng.random() < chance:
        image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(*radii))))
    chance, qualities = VARIED["jpeg"]
    if rng.random() < chance:
        encoded = io.BytesIO()
        image.save(encoded, format="JPEG", quality=int(rng.integers(qualities[0], qualities[1] + 1)))
        image = Image.open(io.BytesIO(encoded.getvalue())).convert("RGB")
    for shape in sample.objects:
        shape.mask = np.asarray(Image.fromarray(shape.mask).resize((width, height), Image.NEAREST))
        shape.center_x *= width / side
    return Sample(image, sample.objects)


def grouped(objects: Sequence[ShapeObject]) -> str:
    """What a picture shows, kind by kind with counts in words: circles, then squares, then triangles; the colours of
    a kind in :data:`COLORS` order ("a red circle and two squares in green and blue"). ``--grouped`` writes it as a
    picture's only caption; its words are :func:`vocabulary`'s with ``grouped=True``.

    >>> blank = np.zeros((1, 1), bool)
    >>> grouped([ShapeObject("square", "blue", blank, 1.0), ShapeObject("circle", "red", blank, 5.0),
    ...          ShapeObject("square", "green", blank, 9.0)])
    'a red circle and two squares in green and blue'
    """
    groups = []
    for kind in CATEGORIES:
        shades = sorted((shape.color for shape in objects if shape.category == kind), key=list(COLORS).index)
        if len(shades) == 1:
            groups.append(f"a {shades[0]} {kind}")
        elif shades:
            groups.append(f"{COUNT_WORDS[len(shades)]} {kind}s in {' '.join(shades[:-1])} and {shades[-1]}")
    return groups[0] if len(groups) == 1 else " ".join(groups[:-1]) + f" and {groups[-1]}"


def describe(objects: Sequence[ShapeObject]) -> list[str]:
    """Five phrasings of what a picture shows, shapes named left to right ("a red circle to the left of ...").

    >>> shapes = [ShapeObject("circle", "red", np.zeros((1, 1), bool), 1.0),
    ...           ShapeObject("square", "blue", np.zeros((1, 1), bool), 9.0)]
    >>> describe(shapes)[0]
    'a red circle to the left of a blue square'
    """
    names = [f"a {shape.color} {shape.category}" for shape in objects]
    count = COUNT_WORDS[len(names)]
    if len(names) == 1:
        (first,) = names
        return [
            first,
            f"a picture of {first}",
            f"{first} on a plain background",
            f"one shape {first}",
            f"only {first}",
        ]
    listing = " ".join(names[:-1]) + f" and {names[-1]}"
    rest = " ".join(names[1:-1] + [f"and {names[-1]}"]) if len(names) > 2 else names[-1]
    return [
        f"{names[0]} to the left of {rest}",
        listing,
        f"a picture of {listing}",
        f"{count} shapes {listing}",
        f"{names[-1]} to the right of {' '.join(names[:-2] + [f'and {names[-2]}']) if len(names) > 2 else names[0]}",
    ]


def questions(objects: Sequence[ShapeObject]) -> list[dict[str, str]]:
    """Questions about a picture with their answers from its truth: how many of each shape and whether there is one
    (what the segmenter answers), the colour of each shape that is alone of its kind, and the shape of each colour
    (a question-answering model's).

    Returns:
        list of ``{"question", "answer", "question_type", "answer_type"}``; ``answer_type`` is VQAv2's
        (``"number"``, ``"yes/no"``, ``"other"``), ``question_type`` ``"count"``, ``"presence"``, ``"colour"`` or
        ``"shape"``.

    >>> shapes = [ShapeObject("circle", "red", np.zeros((1, 1), bool), 1.0),
    ...           ShapeObject("circle", "blue", np.zeros((1, 1), bool), 5.0),
    ...           ShapeObject("square", "green", np.zeros((1, 1), bool), 9.0)]
    >>> [(q["question"], q["answer"]) for q in questions(shapes) if q["question_type"] in ("count", "colour")]
    [('How many circles are there?', '2'), ('How many squares are there?', '1'), ('How many triangles are there?', \
'0'), ('What colour is the square?', 'green')]
    """
    counts = {category: sum(shape.category == category for shape in objects) for category in CATEGORIES}
    asked = [
        {"question": f"How many {category}s are there?", "answer": str(counts[category]), "question_type": "count",
         "answer_type": "number"}
        for category in CATEGORIES
    ] + [
        {"question": f"Is there a {category}?", "answer": "yes" if counts[category] else "no",
         "question_type": "presence", "answer_type": "yes/no"}
        for category in CATEGORIES
    ] + [
        {"question": f"What colour is the {shape.category}?", "answer": shape.color, "question_type": "colour",
         "answer_type": "other"}
        for shape in objects if counts[shape.category] == 1
    ] + [
        {"question": f"What shape is the {shape.color} one?", "answer": shape.category, "question_type": "shape",
         "answer_type": "other"}
        for shape in objects
    ]  # fmt: skip
    return asked


def write_questions(root: Path, asked: dict[int, list[dict[str, str]]], description: str) -> None:
    """``questions.json`` and ``annotations.json`` in the VQAv2 layout (each answer given ten times, as VQAv2's ten
    annotators would agree on a synthetic truth), question ids numbered in image order."""
    questions_file: dict = {"info": {"description": description}, "questions": []}
    annotations: dict = {"info": {"description": description}, "annotations": []}
    for image_id, entries in asked.items():
        for entry in entries:
            question_id = len(questions_file["questions"]) + 1
            questions_file["questions"].append(
                {"image_id": image_id, "question": entry["question"], "question_id": question_id}
            )
            annotations["annotations"].append(
                {
                    "question_id": question_id,
                    "image_id": image_id,
                    "question_type": entry["question_type"],
                    "answer_type": entry["answer_type"],
                    "multiple_choice_answer": entry["answer"],
                    "answers": [
                        {"answer": entry["answer"], "answer_confidence": "yes", "answer_id": n} for n in range(1, 11)
                    ],
                }
            )
    (root / "questions.json").write_text(json.dumps(questions_file))
    (root / "annotations.json").write_text(json.dumps(annotations))


def write_captions(path: str | Path, captions: dict[str, list[str]], layout: str = "captions") -> Path:
    """Write captions in one of the Flickr layouts.

    Args:
        path (str | Path): the file to write.
        captions (dict[str, list[str]]): image file name -> its captions.
        layout (str, default "captions"): ``"captions"`` (Flickr8k ``captions.txt``: ``image,caption`` CSV),
            ``"token"`` (``Flickr8k.token.txt``: ``name.jpg#0<TAB>caption``) or ``"results"`` (Flickr30k
            ``results.csv``: ``image_name| comment_number| comment``).
    """
    if layout not in CAPTION_LAYOUTS:
        raise ValueError(f"layout must be one of {tuple(CAPTION_LAYOUTS)}, got {layout!r}")
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as handle:
        if layout == "captions":
            writer = csv.writer(handle)
            writer.writerow(["image", "caption"])
            writer.writerows([name, text] for name, texts in captions.items() for text in texts)
        elif layout == "token":
            handle.writelines(
                f"{name}#{i}\t{text}\n" for name, texts in captions.items() for i, text in enumerate(texts)
            )
        else:
            handle.write("image_name| comment_number| comment\n")
            handle.writelines(
                f"{name}| {i}| {text}\n" for name, texts in captions.items() for i, text in enumerate(texts)
            )
    return path


def coco_instances(description: str) -> dict[str, Any]:
    """An empty COCO instances file of the shapes' categories (ids 1-3), for :func:`add_picture` to fill."""
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CATEGORIES)]
    return {"info": {"description": description}, "images": [], "annotations": [], "categories": categories}


def add_picture(coco: dict[str, Any], file_name: str, sample: Sample) -> None:
    """Add a drawn picture to :func:`coco_instances`' file: its image entry (the next id) and each shape's instance,
    its visible mask as COCO RLE with the box and area pycocotools derives from it."""
    image_id = len(coco["images"]) + 1
    width, height = sample.image.size
    coco["images"].append({"id": image_id, "file_name": file_name, "width": width, "height": height})
    for shape in sample.objects:
        rle = mask_utils.encode(np.asfortranarray(shape.mask.astype(np.uint8)))
        coco["annotations"].append(
            {
                "id": len(coco["annotations"]) + 1,
                "image_id": image_id,
                "category_id": CATEGORIES.index(shape.category) + 1,
                "segmentation": {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")},
                "area": float(mask_utils.area(rle)),
                "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                "iscrowd": 0,
            }
        )


def write_split(
    output_dir: str | Path,
    split: str,
    count: int,
    *,
    seed: int = 0,
    image_size: int = 128,
    max_objects: int = 3,
    caption_layout: str = "captions",
    stuff: bool = False,
    varied: bool = False,
    grouped_captions: bool = False,
) -> Path:
    """Generate one split folder (images, ``instances.json``, captions, questions and answers) and return its
    path.

    Args:
        output_dir (str | Path): the data set root; the split goes to ``output_dir/split``.
        split (str): ``"train"``, ``"val"`` or ``"test"``; part of every image's seed.
        count (int): number of images.
        seed (int, default 0): the data set seed.
        image_size, max_objects: see :func:`draw_sample`.
        caption_layout (str, default "captions"): see :func:`write_captions`.
        stuff (bool, default False): stuff backgrounds, with ``annotations/`` and ``labels.json`` (module docstring).
        varied (bool, default False): pictures in varied renderings (:func:`draw_varied`; not with ``stuff``).
        grouped_captions (bool, default False): each picture's only caption is :func:`grouped`'s instead of
            :func:`describe`'s five phrasings.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if count < 1:
        raise ValueError(f"count must be a positive number of images, got {count!r}")
    if varied and stuff:
        raise ValueError("varied pictures draw their own backgrounds: give varied or stuff, not both")
    root = Path(output_dir) / split
    (root / "images").mkdir(parents=True, exist_ok=True)
    if stuff:
        (root / "annotations").mkdir(exist_ok=True)
        (root / "labels.json").write_text(json.dumps({"labels": list(STUFF_CLASSES), "stuff": list(STUFF)}))
    coco = coco_instances(f"synthetic shapes, split {split}, seed {seed}")
    captions: dict[str, list[str]] = {}
    asked: dict[int, list[dict[str, str]]] = {}
    for index in range(count):
        rng = np.random.default_rng([seed, SPLITS.index(split), index])
        if varied:
            sample = draw_varied(rng, max_objects=max_objects)
        else:
            sample = draw_sample(rng, image_size=image_size, max_objects=max_objects, stuff=stuff)
        file_name = f"{index:06d}.png"
        sample.image.save(root / "images" / file_name)
        if sample.stuff is not None:
            semantic = np.where(sample.stuff == 0, PLAIN_LABEL, sample.stuff).astype(np.uint8)
            for shape in sample.objects:
                semantic[shape.mask] = SHAPE_LABEL
            Image.fromarray(semantic).save(root / "annotations" / file_name)
        add_picture(coco, file_name, sample)
        captions[file_name] = [grouped(sample.objects)] if grouped_captions else describe(sample.objects)
        asked[index + 1] = questions(sample.objects)
    (root / "instances.json").write_text(json.dumps(coco))
    write_questions(root, asked, coco["info"]["description"])
    write_captions(root / CAPTION_LAYOUTS[caption_layout], captions, caption_layout)
    return root


def vocabulary(max_objects: int = 4, *, grouped: bool = False) -> list[str]:
    """Every word a shapes caption can use, in a fixed order (the ``shapes`` captioner's vocabulary); with
    ``grouped``, the words of :func:`grouped` captions too."""
    words = "a picture of on plain background one shape only shapes to the left right and".split()
    words += [COUNT_WORDS[n] for n in range(2, max_objects + 1)] + list(COLORS) + list(CATEGORIES)
    if grouped:  # last, so that the plain vocabulary is a prefix of this one (its words keep their ids)
        words += ["in", *(kind + "s" for kind in CATEGORIES)]
    return list(dict.fromkeys(words))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--output_dir", required=True, help="data set root; splits go to <output_dir>/<split>")
    parser.add_argument("--seed", type=int, default=0, help="data set seed (default 0)")
    parser.add_argument("--train", type=int, default=3000, help="train images (default 3000; 0 skips the split)")
    parser.add_argument("--val", type=int, default=200, help="validation images (default 200; 0 skips the split)")
    parser.add_argument("--test", type=int, default=300, help="test images (default 300; 0 skips the split)")
    parser.add_argument("--image_size", type=int, default=128, help="image width and height in pixels (default 128)")
    parser.add_argument("--max_objects", type=int, default=3, help="most shapes per image, 1-4 (default 3)")
    parser.add_argument("--stuff", action="store_true", help="stuff backgrounds with semantic annotations")
    parser.add_argument(
        "--varied", action="store_true", help="varied renderings: sizes, backgrounds, blur, JPEG (VARIED)"
    )
    parser.add_argument(
        "--grouped",
        action="store_true",
        help='one caption per image, by kind with counts: "two circles in red and blue"',
    )
    parser.add_argument(
        "--caption_layout", default="captions", choices=tuple(CAPTION_LAYOUTS), help="caption file layout"
    )
    args = parser.parse_args(argv)
    if min(args.train, args.val, args.test) < 0:
        parser.error("split sizes must be zero or positive")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    for split in SPLITS:
        if getattr(args, split) > 0:
            root = write_split(
                args.output_dir,
                split,
                getattr(args, split),
                seed=args.seed,
                image_size=args.image_size,
                max_objects=args.max_objects,
                caption_layout=args.caption_layout,
                stuff=args.stuff,
                varied=args.varied,
                grouped_captions=args.grouped,
            )
            print(f"wrote {getattr(args, split)} images to {root}")


if __name__ == "__main__":
    main()
