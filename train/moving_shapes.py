"""A moving-shapes video with known masks: the shapes world in motion, to measure a live view's outlines.

Shapes of the :mod:`train.shapes` world (its categories, colours and backgrounds) move and turn over a still
background, at ``fps`` frames a second; one comes in from the left edge, one goes out at the right. Every frame comes
with each shape's true mask, so that the outlines a live view returns at any rate can be scored against the frame
they were shown on (:func:`frame_ious`).

>>> video = moving_sequence(np.random.default_rng(0), frames=3, size=(160, 120))
>>> len(video.frames), video.frames[0].size, len(video.masks[0]) == len(video.labels)
(3, (160, 120), True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .shapes import CATEGORIES, COLORS, _background


@dataclass
class MovingShapes:
    """A video: ``frames[i]`` (RGB pictures) and ``masks[i][k]``, shape k's mask (bool[H, W]) in frame i, ``None``
    while part of it is outside the picture (coming in, going out: shown, not scored).

    ``labels[k]`` is shape k's category; ``fps`` the frame rate the motion was drawn for.
    """

    frames: list[Image.Image]
    masks: list[list[np.ndarray | None]]
    labels: list[str]
    fps: float


def _outline(category: str, center: tuple[float, float], radius: float, angle: float) -> list[tuple[float, float]]:
    """The shape's polygon (a circle as 32 points), turned by ``angle`` radians about its centre."""
    if category == "circle":
        points = [(np.cos(t), np.sin(t)) for t in np.linspace(0, 2 * np.pi, 32, endpoint=False)]
    elif category == "square":
        points = [(-0.9, -0.9), (0.9, -0.9), (0.9, 0.9), (-0.9, 0.9)]
    else:
        points = [(0.0, -1.0), (1.1, 0.8), (-1.1, 0.8)]
    cos, sin = np.cos(angle), np.sin(angle)
    x, y = center
    return [(x + radius * (px * cos - py * sin), y + radius * (px * sin + py * cos)) for px, py in points]


def moving_sequence(
    rng: np.random.Generator,
    *,
    frames: int = 90,
    size: tuple[int, int] = (320, 240),
    shapes: int = 3,
    fps: float = 30.0,
    speed: float = 60.0,
    turn: float = 0.6,
) -> MovingShapes:
    """Draw a video of ``shapes`` shapes moving and turning over a background, each in its own horizontal band
    (so that they never hide one another), upright at first as the shapes world draws them.

    Args:
        rng (numpy.random.Generator): the only source of randomness.
        frames (int, default 90): how many frames (3 s at 30 frames/s).
        size (tuple[int, int], default (320, 240)): width and height in pixels.
        shapes (int, default 3): how many shapes, 1 to 5 (distinct colours); with two or more, the first comes in
            from the left edge and the last goes out at the right one.
        fps (float, default 30.0): the frame rate the motion is drawn for.
        speed (float, default 60.0): the most pixels a second a shape moves.
        turn (float, default 0.6): the most radians a second a shape turns.

    Returns:
        MovingShapes
    """
    if not 1 <= shapes <= len(COLORS):
        raise ValueError(f"shapes must be between 1 and {len(COLORS)}, got {shapes!r}")
    if frames < 1:
        raise ValueError(f"frames must be positive, got {frames!r}")
    width, height = size
    lane = height / shapes  # each shape keeps to its own band, so that shapes pass without hiding one another
    background = Image.fromarray(_background(rng, max(width, height))).crop((0, 0, width, height))
    radii = np.minimum(rng.uniform(0.12, 0.2, size=shapes) * min(width, height), 0.45 * lane)
    starts = np.stack([rng.uniform(radii, width - radii), (np.arange(shapes) + 0.5) * lane], axis=1)
    heading = rng.uniform(-np.pi / 3, np.pi / 3, size=shapes) + np.pi * rng.integers(2, size=shapes)
    velocity = np.stack([np.cos(heading), np.sin(heading)], axis=1) * rng.uniform(0.5, 1.0, (shapes, 1)) * speed
    if shapes >= 2:
        starts[0, 0], velocity[0, 0] = -radii[0], abs(velocity[0, 0])  # comes in from the left
        starts[-1, 0], velocity[-1, 0] = width - 2 * radii[-1], abs(velocity[-1, 0])  # goes out at the right
    spin = rng.uniform(-turn, turn, size=shapes)
    categories = [CATEGORIES[i] for i in rng.integers(len(CATEGORIES), size=shapes)]
    colors = [list(COLORS)[i] for i in rng.choice(len(COLORS), size=shapes, replace=False)]
    video = MovingShapes([], [], categories, fps)
    for index in range(frames):
        seconds = index / fps
        picture = background.copy()
        draw = ImageDraw.Draw(picture)
        visible = []
        for k in range(shapes):
            x, y = starts[k] + velocity[k] * seconds
            if 0 < k < shapes - 1:  # the shapes that stay bounce off the left and right edges
                x = _bounce(x, radii[k], width - radii[k])
            y = _bounce(y, k * lane + radii[k], (k + 1) * lane - radii[k])
            polygon = _outline(categories[k], (x, y), radii[k], spin[k] * seconds)
            draw.polygon(polygon, fill=COLORS[colors[k]])
            canvas = Image.new("L", size, 0)
            ImageDraw.Draw(canvas).polygon(polygon, fill=255)
            inside = all(0 <= px <= width - 1 and 0 <= py <= height - 1 for px, py in polygon)
            visible.append(np.asarray(canvas) > 0 if inside else None)
        video.frames.append(picture)
        video.masks.append(visible)
    return video


def _bounce(value: float, low: float, high: float) -> float:
    """``value`` reflected into ``[low, high]``, as a point moving back and forth between two walls."""
    span = high - low
    if span <= 0:
        return (low + high) / 2
    folded = (value - low) % (2 * span)
    return low + (folded if folded <= span else 2 * span - folded)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def frame_ious(truth: Sequence[np.ndarray | None], found: Sequence[np.ndarray]) -> list[float]:
    """Each true shape's IoU with the found mask matched to it (greedy, best pairs first; 0.0 when none is left).

    Shapes partly outside the picture (``None`` in ``truth``) are not scored, and their found masks are not matched.
    """
    scored = [k for k, mask in enumerate(truth) if mask is not None]
    pairs = sorted(((mask_iou(truth[k], mask), k, j) for k in scored for j, mask in enumerate(found)), reverse=True)
    best: dict[int, float] = {}
    used: set[int] = set()
    for iou, k, j in pairs:
        if k not in best and j not in used and iou > 0:
            best[k] = iou
            used.add(j)
    return [best.get(k, 0.0) for k in scored]


def mean_iou(scores: Sequence[float]) -> float:
    """The mean of per-shape IoUs (0.0 when there are none)."""
    return float(np.mean(scores)) if len(scores) else 0.0
