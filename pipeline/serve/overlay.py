"""The live tab's outlines as SVG: drawn by the browser over its own camera preview, not sent back as a picture.

Each live frame's answer to the page is a few hundred bytes of SVG (one polygon per object, in the frame's pixel
coordinates, with a ``viewBox`` of the frame's size) that ``page/live_overlay.js`` lays over the ``<video>`` the
camera plays in. Nothing is encoded or written to disk per frame, and the outlines sit on the picture the person sees.

>>> import numpy as np
>>> from pipeline.masks import MaskCrop
>>> square = {"label": "cup", "label_id": 47, "score": 0.9, "mask": MaskCrop(np.ones((4, 4), bool), 2, 2, 10, 10)}
>>> svg = outlines_svg([square], (10, 10), frame=7)
>>> 'viewBox="0 0 10 10"' in svg and 'data-frame="7"' in svg and "<polygon" in svg and ">cup<" in svg
True
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from ..masks import crop_of
from ..render import color_for


def outline_polygons(mask: Any, *, tolerance: float = 1.0) -> list[np.ndarray]:
    """The outer outlines of a mask (any form :func:`~pipeline.masks.crop_of` takes) as int32[N, 2] point arrays in
    the picture's pixel coordinates, simplified to within ``tolerance`` pixels; pieces of fewer than 3 points are
    left out."""
    crop = crop_of(mask)
    if crop.array.size == 0:
        return []
    contours, _ = cv2.findContours(crop.array.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        points = cv2.approxPolyDP(contour, tolerance, True).reshape(-1, 2)
        if len(points) >= 3:
            polygons.append(points + np.array([crop.left, crop.top], dtype=points.dtype))
    return polygons


def outlines_svg(instances: Sequence[dict[str, Any]], size: tuple[int, int], *, frame: int = 0) -> str:
    """One frame's objects as an SVG fragment sized by ``viewBox`` to the frame (``size`` is ``(width, height)``).

    Each object is a ``<g>`` with its outline (a polygon per piece, in its label's colour, lightly filled) and its
    label at the top left of its box. ``data-frame`` numbers the frame and ``data-objects`` counts the objects, so
    that the page (and its tests) can tell one frame's outlines from the next. Decorative for screen readers: the
    caption and the objects line say the same in words.
    """
    width, height = size
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" data-frame="{frame}" '
        f'data-objects="{len(instances)}" aria-hidden="true" focusable="false">'
    ]
    for instance in instances:
        red, green, blue = color_for(int(instance.get("label_id", 0)))
        colour = f"rgb({red},{green},{blue})"
        polygons = outline_polygons(instance["mask"])
        if not polygons:
            continue
        parts.append(f'<g stroke="{colour}" fill="{colour}">')
        for points in polygons:
            joined = " ".join(f"{x},{y}" for x, y in points.tolist())
            parts.append(f'<polygon points="{joined}" fill-opacity="0.22" stroke-width="2.5" />')
        left = int(min(points[:, 0].min() for points in polygons))
        top = int(min(points[:, 1].min() for points in polygons))
        label = html.escape(str(instance.get("label", "")))
        parts.append(
            f'<text x="{left + 3}" y="{max(top - 4, 12)}" stroke="black" stroke-width="3" paint-order="stroke" '
            f'fill="white" font-size="{max(12, round(height / 24))}" font-family="sans-serif">{label}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)
