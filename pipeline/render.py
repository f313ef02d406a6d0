"""Pictures for people: instance overlays, the semantic map with its legend, the panoptic view, the objects table.

Everything here takes the output contract of :class:`~pipeline.combined.ImageAnalysisPipeline` (or of
:class:`~pipeline.segmentation.SegmentationPipeline`) and the input image, and returns new RGB PIL images or plain
rows; nothing runs a model (a display threshold's views come from :func:`pipeline.panoptic.with_threshold`).

Colours come from one fixed, colour-blind-aware palette keyed by label id, so a label keeps its colour across the
three views, across frames of the live view and across requests. Text is drawn on an opaque tag so that it stays
legible over any photo.

>>> import numpy as np
>>> from PIL import Image
>>> image = Image.new("RGB", (64, 48), "gray")
>>> mask = Image.fromarray(np.pad(np.full((20, 20), 255, np.uint8), ((4, 24), (4, 40))), mode="L")
>>> instance = {"label": "cat", "label_id": 17, "score": 0.9, "box": [4, 4, 24, 24], "mask": mask, "area": 400}
>>> draw_instances(image, [instance]).size
(64, 48)
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .describe import count_objects
from .masks import MaskCrop, crop_of
from .options import Option

#: How strongly masks tint the photo: the drawing's call option, declared once (see :mod:`pipeline.options`).
OPACITY = Option("opacity", "float", 0.5, "how strongly masks tint the photo", low=0.0, high=1.0)
DRAW_OPTIONS = (OPACITY,)

#: Okabe-Ito and Tableau colours first (distinguishable with the common colour-vision deficiencies), then hues
#: spaced by the golden angle for label ids beyond them.
BASE_PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 159, 0),
    (86, 180, 233),
    (0, 158, 115),
    (240, 228, 66),
    (0, 114, 178),
    (213, 94, 0),
    (204, 121, 167),
    (148, 103, 189),
    (140, 86, 75),
    (23, 190, 207),
    (188, 189, 34),
    (227, 119, 194),
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
)

VIEWS = ("objects", "semantic", "panoptic")


def color_for(label_id: int) -> tuple[int, int, int]:
    """The RGB colour of a label id; stable across calls, views and processes.

    >>> color_for(1) == color_for(1), color_for(1) != color_for(2)
    (True, True)
    """
    if label_id <= 0:
        return (0, 0, 0)
    index = label_id - 1
    if index < len(BASE_PALETTE):
        return BASE_PALETTE[index]
    hue = (index * 0.618033988749895) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.65, 0.95)
    return (round(red * 255), round(green * 255), round(blue * 255))


def palette(count: int) -> list[tuple[int, int, int]]:
    """The colours of label ids ``1..count``."""
    return [color_for(label_id) for label_id in range(1, count + 1)]


def text_color(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on ``background`` (WCAG relative luminance)."""

    def channel(value: int) -> float:
        c = value / 255.0
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    luminance = 0.2126 * channel(background[0]) + 0.7152 * channel(background[1]) + 0.0722 * channel(background[2])
    return (0, 0, 0) if luminance > 0.179 else (255, 255, 255)


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def font_size_for(image_size: tuple[int, int]) -> int:
    """A label size that stays readable when the picture is scaled to fit a phone screen (1/24 of its longer side)."""
    width, height = image_size
    return int(np.clip(max(width, height) / 24, 12, 56))


@lru_cache(maxsize=512)
def _tag(text: str, fill: tuple[int, int, int], size: int) -> Image.Image:
    """A text label on an opaque tag in ``fill``, drawn once per text, colour and size: a live stream draws the same
    tags frame after frame (its key frame's scores do not change while the outlines are carried), and laying out
    the text was a fifth of a ``/live_frame`` call's own time."""
    font = _font(size)
    left, top, right, bottom = font.getbbox(text)
    pad = max(2, size // 5)
    tag = Image.new("RGB", (right - left + 2 * pad, bottom - top + 2 * pad), fill)
    ImageDraw.Draw(tag).text((pad - left, pad - top), text, fill=text_color(fill), font=font)
    return tag


def _draw_tag(picture: Image.Image, xy: tuple[float, float], text: str, fill: tuple[int, int, int], size: int):
    """A text label on an opaque tag in ``fill`` whose lower left corner is at ``xy``, kept inside the picture."""
    tag = _tag(text, fill, size)
    x = int(np.clip(round(xy[0]), 0, max(0, picture.width - tag.width)))
    y = int(np.clip(round(xy[1]) - tag.height, 0, max(0, picture.height - tag.height)))
    picture.paste(tag, (x, y))


def _blend(image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int], opacity: float) -> None:
    """Blend ``color`` into the float image where ``mask`` is set, in place."""
    image[mask] = image[mask] * (1.0 - opacity) + np.asarray(color, dtype=np.float32) * opacity


def _edges(mask: np.ndarray) -> np.ndarray:
    """The one-pixel inner boundary of a boolean mask."""
    interior = mask.copy()
    interior[1:, :] &= mask[:-1, :]
    interior[:-1, :] &= mask[1:, :]
    interior[:, 1:] &= mask[:, :-1]
    interior[:, :-1] &= mask[:, 1:]
    return mask & ~interior


def _thicken(mask: np.ndarray, radius: int) -> np.ndarray:
    grown = mask.copy()
    for _ in range(max(0, radius)):
        step = grown.copy()
        step[1:, :] |= grown[:-1, :]
        step[:-1, :] |= grown[1:, :]
        step[:, 1:] |= grown[:, :-1]
        step[:, :-1] |= grown[:, 1:]
        grown = step
    return grown


def draw_instances(
    image: Image.Image,
    instances: Sequence[Mapping[str, Any]],
    *,
    opacity: float = 0.5,
    boxes: bool = True,
    labels: bool = True,
    outlines: bool = True,
) -> Image.Image:
    """The photo with each instance's mask tinted in its label's colour, its box, outline and a ``label score`` tag.

    Args:
        image (PIL.Image.Image): the analysed image (any mode; drawn as RGB), or a smaller copy of it to draw at
            display size (the masks and boxes are scaled to it; the aspect ratio must be the same).
        instances (Sequence[dict]): the contract's instances (``label``, ``label_id``, ``score``, ``box``, ``mask``;
            masks as PIL images, COCO RLE or :class:`~pipeline.masks.MaskCrop`).
        opacity (float, default 0.5): how strongly masks tint the photo, 0 (invisible) to 1 (opaque).
        boxes (bool, default True): draw each instance's box.
        labels (bool, default True): draw the ``label 0.93`` tag above each box.
        outlines (bool, default True): draw each mask's outline, which keeps touching objects apart.

    Returns:
        PIL.Image.Image: a new RGB image the size of ``image``.
    """
    opacity = OPACITY.check(opacity)
    canvas = np.asarray(image.convert("RGB"), dtype=np.float32).copy()
    size = font_size_for(image.size)
    line = max(1, size // 10)
    # Paint the lowest score first so the most confident object ends on top, as the semantic map decides.
    ordered = sorted(instances, key=lambda instance: instance["score"])
    scale = (1.0, 1.0)
    for instance in ordered:
        crop = crop_of(instance["mask"], image.size)
        scale = _scale_to(image.size, (crop.width, crop.height), instance["label"])
        window, mask = _fitted_window(crop, image.size, margin=line + 1)
        color = color_for(int(instance["label_id"]))
        _blend(canvas[window], mask, color, opacity)
        if outlines:
            canvas[window][_thicken(_edges(mask), line - 1)] = color
    result = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(result)
    for instance in ordered:
        color = color_for(int(instance["label_id"]))
        x0, y0, x1, y1 = (float(v) * scale[index % 2] for index, v in enumerate(instance["box"]))
        if boxes:
            draw.rectangle([x0, y0, x1, y1], outline=color, width=line + 1)
        if labels:
            _draw_tag(result, (x0, y0), f"{instance['label']} {instance['score']:.2f}", color, size)
    return result


def _scale_to(target: tuple[int, int], frame: tuple[int, int], what: str) -> tuple[float, float]:
    """How much smaller the drawing is than the masks' picture, across and down; a ValueError when the two are not
    the same picture (their shapes differ by more than a display size's rounding)."""
    sx, sy = target[0] / frame[0], target[1] / frame[1]
    if abs(frame[0] * sy - target[0]) > 1.0 and abs(frame[1] * sx - target[1]) > 1.0:
        raise ValueError(f"mask of {what!r} is {frame}, the image is {target}")
    return sx, sy


def _fitted_window(crop: MaskCrop, size: tuple[int, int], margin: int) -> tuple[tuple[slice, slice], np.ndarray]:
    """The crop scaled to a picture of ``size`` (nearest neighbour), with ``margin`` pixels around it so that its
    outline is found at the window's border too: ``(window of the picture, mask inside it)``."""
    width, height = size
    sx, sy = width / crop.width, height / crop.height
    rows, cols = crop.array.shape
    left, top = int(crop.left * sx), int(crop.top * sy)
    right = max(left + 1, round((crop.left + cols) * sx)) if cols else left
    bottom = max(top + 1, round((crop.top + rows) * sy)) if rows else top
    mask = crop.array
    if (right - left, bottom - top) != (cols, rows) and mask.size:
        mask = np.asarray(Image.fromarray(mask).resize((right - left, bottom - top), Image.Resampling.NEAREST))
    x0, y0 = max(0, left - margin), max(0, top - margin)
    x1, y1 = min(width, right + margin), min(height, bottom + margin)
    padded = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    padded[top - y0 : top - y0 + mask.shape[0], left - x0 : left - x0 + mask.shape[1]] = mask[: y1 - top, : x1 - left]
    return (slice(y0, y1), slice(x0, x1)), padded


def _fit_map(label_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An int map scaled to ``size`` ``(width, height)`` by nearest neighbour (as it is when it already fits)."""
    if label_map.shape[::-1] == tuple(size):
        return label_map
    picture = Image.fromarray(label_map.astype(np.int32), mode="I")
    return np.asarray(picture.resize(size, Image.Resampling.NEAREST), dtype=np.int32)


def colorize(label_map: np.ndarray, colors: Mapping[int, tuple[int, int, int]]) -> np.ndarray:
    """An ``[H, W, 3]`` uint8 picture of an int map, each id in its colour and 0 black."""
    lookup_size = int(label_map.max()) + 1 if label_map.size else 1
    lookup = np.zeros((lookup_size, 3), dtype=np.uint8)
    for value, color in colors.items():
        if 0 < value < lookup_size:
            lookup[value] = color
    return lookup[label_map]


def _with_legend(picture: Image.Image, entries: Sequence[tuple[str, tuple[int, int, int]]]) -> Image.Image:
    """Append a legend below the picture: one swatch and name per entry, wrapped to the picture's width."""
    size = round(font_size_for(picture.size) * 1.3)  # the legend is read, not glanced at: a size up from labels
    font = _font(size)
    pad, swatch = size // 2, size
    probe = ImageDraw.Draw(picture)
    widths = [swatch + pad + int(probe.textlength(text, font=font)) + 2 * pad for text, _ in entries]
    rows: list[list[int]] = [[]]
    used = pad
    for index, width in enumerate(widths):
        if rows[-1] and used + width > picture.width:
            rows.append([])
            used = pad
        rows[-1].append(index)
        used += width
    row_height = size + pad
    legend_height = pad + row_height * len(rows) if entries else 0
    out = Image.new("RGB", (picture.width, picture.height + legend_height), (255, 255, 255))
    out.paste(picture, (0, 0))
    draw = ImageDraw.Draw(out)
    for row_index, row in enumerate(rows):
        x = pad
        y = picture.height + pad + row_index * row_height
        for index in row:
            text, color = entries[index]
            draw.rectangle([x, y, x + swatch, y + swatch], fill=color, outline=(0, 0, 0))
            draw.text((x + swatch + pad, y), text, fill=(0, 0, 0), font=font)
            x += widths[index]
    return out


def draw_semantic(
    semantic: Mapping[str, Any],
    image: Image.Image | None = None,
    *,
    opacity: float = 0.6,
    legend: bool = True,
) -> Image.Image:
    """The semantic map: each pixel in its label's colour, over a dimmed photo, with a legend of names and shares.

    Args:
        semantic (dict): ``{"map": np.ndarray[H, W] int32, "labels": {id: name}}`` from the contract.
        image (PIL.Image.Image | None, default None): the photo to show under the colours (or a smaller copy of it:
            the map is scaled to it); None shows black at the map's size.
        opacity (float, default 0.6): the colours' opacity over the photo.
        legend (bool, default True): add a legend strip below: swatch, label name and its share of the picture.

    Returns:
        PIL.Image.Image: RGB, the picture's size plus the legend's height.
    """
    opacity = OPACITY.check(opacity)
    full_map = np.asarray(semantic["map"])
    ids, counts = np.unique(full_map, return_counts=True)
    shares = {int(label_id): count / max(1, full_map.size) for label_id, count in zip(ids, counts)}
    label_map = full_map if image is None else _fit_map(full_map, image.size)
    present = [int(v) for v in ids if v != 0]
    colors = {label_id: color_for(label_id) for label_id in present}
    colored = colorize(label_map, colors).astype(np.float32)
    if image is None:
        picture = colored
    else:
        base = np.asarray(image.convert("RGB"), dtype=np.float32) * 0.45  # dim the photo so the colours read
        covered = label_map > 0
        picture = base.copy()
        picture[covered] = base[covered] * (1.0 - opacity) + colored[covered] * opacity
    out = Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8))
    if not legend:
        return out
    names = semantic.get("labels", {})
    entries = [
        (f"{names.get(label_id, str(label_id))} {100.0 * shares[label_id]:.0f}%", colors[label_id])
        for label_id in present
    ]
    if not entries:
        entries = [("no objects", (0, 0, 0))]
    return _with_legend(out, entries)


def segment_colors(segments: Sequence[Mapping[str, Any]]) -> dict[int, tuple[int, int, int]]:
    """One colour per panoptic segment: its label's colour, lightened or darkened for each further instance."""
    seen: dict[int, int] = {}
    colors = {}
    for segment in segments:
        label_id = int(segment["label_id"])
        nth = seen.get(label_id, 0)
        seen[label_id] = nth + 1
        red, green, blue = (c / 255.0 for c in color_for(label_id))
        hue, lightness, saturation = colorsys.rgb_to_hls(red, green, blue)
        # Alternate lighter and darker shades so that neighbouring instances of one class stay apart.
        shift = ((nth + 1) // 2) * 0.12 * (1 if nth % 2 else -1)
        r, g, b = colorsys.hls_to_rgb(hue, float(np.clip(lightness + shift, 0.2, 0.85)), saturation)
        colors[int(segment["id"])] = (round(r * 255), round(g * 255), round(b * 255))
    return colors


def draw_panoptic(
    panoptic: Mapping[str, Any],
    image: Image.Image | None = None,
    *,
    opacity: float = 0.6,
    labels: bool = True,
) -> Image.Image:
    """The panoptic view: every segment in its own shade of its label's colour, white borders, a name at its centre.

    Args:
        panoptic (dict): ``{"map": np.ndarray[H, W] int32, "segments": [...]}`` from the contract.
        image (PIL.Image.Image | None, default None): the photo under the colours (or a smaller copy of it: the
            map is scaled to it); None shows black at the map's size.
        opacity (float, default 0.6): the colours' opacity over the photo.
        labels (bool, default True): write each segment's label at its centre of mass.

    Returns:
        PIL.Image.Image: RGB, the picture's size.
    """
    opacity = OPACITY.check(opacity)
    segment_map = np.asarray(panoptic["map"])
    if image is not None:
        segment_map = _fit_map(segment_map, image.size)
    colors = segment_colors(panoptic["segments"])
    colored = colorize(segment_map, colors).astype(np.float32)
    covered = segment_map > 0
    if image is None:
        picture = colored
    else:
        base = np.asarray(image.convert("RGB"), dtype=np.float32) * 0.45
        picture = base.copy()
        picture[covered] = base[covered] * (1.0 - opacity) + colored[covered] * opacity
    # A pixel is on a border where its right or lower neighbour belongs to another segment.
    border = np.zeros_like(covered)
    border[:, :-1] |= segment_map[:, :-1] != segment_map[:, 1:]
    border[:-1, :] |= segment_map[:-1, :] != segment_map[1:, :]
    size = font_size_for((segment_map.shape[1], segment_map.shape[0]))
    picture[_thicken(border, max(0, size // 16))] = 255.0
    out = Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8))
    if labels:
        for segment in panoptic["segments"]:
            rows, cols = np.nonzero(segment_map == segment["id"])
            if rows.size == 0:
                continue
            center = (float(cols.mean()) - size, float(rows.mean()) + size / 2)
            _draw_tag(out, center, str(segment["label"]), colors[int(segment["id"])], size)
    return out


def objects_table(instances: Sequence[Mapping[str, Any]], image_size: tuple[int, int] | None = None) -> list[list]:
    """One row per instance for a table a screen reader can walk: ``[label, score, area_px, area_percent]``.

    Args:
        instances (Sequence[dict]): the contract's instances, highest score first.
        image_size (tuple[int, int] | None, default None): ``(width, height)`` for the area share; None gives 0.

    Returns:
        list[list]: rows of ``[str, float rounded to 3, int, float rounded to 1]``.
    """
    pixels = image_size[0] * image_size[1] if image_size else 0
    return [
        [
            instance["label"],
            round(float(instance["score"]), 3),
            int(instance["area"]),
            round(100.0 * instance["area"] / pixels, 1) if pixels else 0.0,
        ]
        for instance in instances
    ]


def describe_objects(instances: Sequence[Mapping[str, Any]]) -> str:
    """A sentence listing what was found, for people who cannot see the overlay: ``"2 circles, 1 square"``; worded
    as everywhere else by :func:`pipeline.describe.count_objects`."""
    return count_objects(instances)
