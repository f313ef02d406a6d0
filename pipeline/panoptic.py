"""Fusing instance masks (and optional stuff regions) into a semantic map and non-overlapping panoptic segments.

The rules follow Panoptic FPN and the reference ``panopticapi`` combiner: instances are taken by score, highest
first; one below ``score_threshold`` is dropped; one whose mask is already more than ``overlap_threshold`` covered
by earlier segments is dropped, otherwise it takes only the pixels still free. Stuff regions, when a semantic model
supplies them, then fill what is left where the free part is at least ``stuff_area_min`` pixels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

DEFAULT_SCORE_THRESHOLD = 0.5
DEFAULT_OVERLAP_THRESHOLD = 0.5
DEFAULT_STUFF_AREA_MIN = 64 * 64


def semantic_from_instances(
    masks: np.ndarray, labels: Sequence[int], scores: Sequence[float], *, height: int, width: int
) -> np.ndarray:
    """Paint each pixel with the label of the highest-scoring instance that covers it.

    Args:
        masks (BoolTensor[N, H, W] as np.ndarray): binary instance masks.
        labels (Sequence[int]): label id of each instance (0 is reserved for background).
        scores (Sequence[float]): score of each instance.
        height (int), width (int): the map's size, used when there are no instances.

    Returns:
        np.ndarray[H, W] int32: label ids, 0 where no instance covers the pixel.

    >>> m = np.zeros((2, 2, 3), bool); m[0, :, :2] = True; m[1, :, 1:] = True
    >>> semantic_from_instances(m, [5, 7], [0.6, 0.9], height=2, width=3).tolist()
    [[5, 7, 7], [5, 7, 7]]
    """
    semantic = np.zeros((height, width), dtype=np.int32)
    # Paint lowest score first so that the highest-scoring instance is painted last and wins each pixel.
    for index in np.argsort(np.asarray(scores, dtype=np.float64), kind="stable"):
        semantic[masks[index]] = int(labels[index])
    return semantic


def fuse_panoptic(
    masks: np.ndarray,
    labels: Sequence[int],
    scores: Sequence[float],
    label_names: Mapping[int, str],
    *,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    overlap_threshold: float = DEFAULT_OVERLAP_THRESHOLD,
    stuff_map: np.ndarray | None = None,
    stuff_names: Mapping[int, str] | None = None,
    stuff_area_min: int = DEFAULT_STUFF_AREA_MIN,
) -> dict:
    """Fuse instances and optional stuff into one panoptic segmentation.

    Args:
        masks (BoolTensor[N, H, W] as np.ndarray): binary instance ("thing") masks.
        labels (Sequence[int]): label id of each instance.
        scores (Sequence[float]): score of each instance.
        label_names (Mapping[int, str]): name of each thing label id.
        score_threshold (float, default 0.5): instances scoring below this are left out.
        overlap_threshold (float, default 0.5): an instance whose mask is covered by earlier segments for more
            than this fraction of its area is left out.
        stuff_map (np.ndarray[H, W] int | None, default None): a semantic map of stuff label ids, 0 = none.
        stuff_names (Mapping[int, str] | None, default None): name of each stuff label id.
        stuff_area_min (int, default 4096): a stuff region keeps only free pixels, and is left out when fewer
            than this many remain.

    Returns:
        dict with
        - ``"map"``: np.ndarray[H, W] int32, segment ids, 0 = unlabeled;
        - ``"segments"``: list of ``{"id", "label", "label_id", "isthing", "score", "area"}``, ids 1..K in the
          order they were placed, ``score`` None for stuff, ``area`` the segment's pixel count in ``map``.
    """
    if masks.ndim != 3:
        raise ValueError(f"masks must be shaped [N, H, W], got {list(masks.shape)}")
    height, width = masks.shape[1:]
    panoptic = np.zeros((height, width), dtype=np.int32)
    segments: list[dict] = []
    for index in np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable"):
        score = float(scores[index])
        if score < score_threshold:
            continue
        mask = masks[index].astype(bool, copy=False)
        area = int(mask.sum())
        if area == 0:
            continue
        free = mask & (panoptic == 0)
        free_area = int(free.sum())
        if area - free_area > overlap_threshold * area or free_area == 0:
            continue
        segment_id = len(segments) + 1
        panoptic[free] = segment_id
        label_id = int(labels[index])
        segments.append(
            {
                "id": segment_id,
                "label": label_names.get(label_id, str(label_id)),
                "label_id": label_id,
                "isthing": True,
                "score": score,
                "area": free_area,
            }
        )
    if stuff_map is not None:
        names = stuff_names or {}
        for label_id in np.unique(stuff_map):
            if label_id == 0:
                continue
            free = (stuff_map == label_id) & (panoptic == 0)
            free_area = int(free.sum())
            if free_area < stuff_area_min:
                continue
            segment_id = len(segments) + 1
            panoptic[free] = segment_id
            segments.append(
                {
                    "id": segment_id,
                    "label": names.get(int(label_id), str(int(label_id))),
                    "label_id": int(label_id),
                    "isthing": False,
                    "score": None,
                    "area": free_area,
                }
            )
    return {"map": panoptic, "segments": segments}
