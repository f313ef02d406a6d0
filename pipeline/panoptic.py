"""The semantic map and the panoptic view, built from instances (and optional stuff regions): one code path.

The rules follow Panoptic FPN and the reference ``panopticapi`` combiner: instances are taken by score, highest
first; one below ``score_threshold`` is dropped; one whose mask is already more than ``overlap_threshold`` covered
by earlier segments is dropped, otherwise it takes only the pixels still free. Stuff regions, when a semantic model
supplies them, then fill what is left where the free part is at least ``stuff_area_min`` pixels. The semantic map
paints each pixel with the label of the highest-scoring instance that covers it (on equal scores, the one listed
first).

:class:`ViewBuilder` takes the instances one at a time, each as the window of the picture its mask covers
(:class:`~pipeline.masks.MaskCrop`), so that a segmenter never holds every picture-sized mask at once;
:func:`views_from_instances` builds both views from the contract's instances (any mask form), which is what the
segmenter does and what a display re-threshold does, so the two cannot differ.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .masks import MaskCrop, crop_of
from .options import Option

DEFAULT_SCORE_THRESHOLD = 0.5
DEFAULT_OVERLAP_THRESHOLD = 0.5
DEFAULT_STUFF_AREA_MIN = 64 * 64
#: A stuff region is kept when its free part is at least this share of the picture, or :data:`DEFAULT_STUFF_AREA_MIN`
#: pixels when that is less (panopticapi's 4096 px is about 1.3% of a COCO photo; 2% of a 128 px picture is 328 px).
STUFF_SHARE_MIN = 0.02
VIEWS = ("semantic", "panoptic")
#: The score threshold: a segmenter's call option, and what a display re-threshold takes.
THRESHOLD = Option("threshold", "float", DEFAULT_SCORE_THRESHOLD, "objects scoring below this are left out", low=0.0,
                   high=1.0)  # fmt: skip


class ViewBuilder:
    """The semantic map and the panoptic segments of one picture, from instances added highest score first.

    Args:
        height, width (int): the picture's size.
        views (Sequence[str], default ("semantic", "panoptic")): which of the two to build.
        score_threshold (float, default 0.5): instances scoring below this are left out of the panoptic view.
        overlap_threshold (float, default 0.5): an instance already covered for more than this share of its area
            is left out of the panoptic view.
    """

    def __init__(
        self,
        height: int,
        width: int,
        *,
        views: Sequence[str] = VIEWS,
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        overlap_threshold: float = DEFAULT_OVERLAP_THRESHOLD,
    ):
        unknown = sorted(set(views) - set(VIEWS))
        if unknown:
            raise ValueError(f"views must be among {VIEWS}, got {unknown}")
        self.height, self.width = height, width
        self.score_threshold, self.overlap_threshold = score_threshold, overlap_threshold
        self.semantic_map = np.zeros((height, width), dtype=np.int32) if "semantic" in views else None
        self.panoptic_map = np.zeros((height, width), dtype=np.int32) if "panoptic" in views else None
        self.segments: list[dict[str, Any]] = []
        self.names: dict[int, str] = {}
        self._last_score = float("inf")

    def add(self, crop: MaskCrop, label_id: int, score: float, label: str) -> None:
        """Add the next instance (scores must not rise from one call to the next)."""
        if score > self._last_score:
            raise ValueError(f"instances must come highest score first, got {score} after {self._last_score}")
        self._last_score = score
        window, mask = crop.window, crop.array
        if self.semantic_map is not None and mask.size:
            painted = self.semantic_map[window]
            fresh = mask & (painted == 0)
            if fresh.any():
                painted[fresh] = label_id
                self.names[label_id] = label
        if self.panoptic_map is not None and score >= self.score_threshold:
            self._place(window, mask, label_id, label, score, isthing=True)

    def _place(self, window, mask: np.ndarray, label_id: int, label: str, score: float | None, isthing: bool):
        area = int(np.count_nonzero(mask))
        if area == 0:
            return False
        taken = self.panoptic_map[window]
        free = mask & (taken == 0)
        free_area = int(np.count_nonzero(free))
        if free_area == 0 or (isthing and area - free_area > self.overlap_threshold * area):
            return False
        segment_id = len(self.segments) + 1
        taken[free] = segment_id
        self.segments.append(
            {"id": segment_id, "label": label, "label_id": label_id, "isthing": isthing, "score": score,
             "area": free_area}
        )  # fmt: skip
        return True

    def add_stuff(
        self,
        stuff_map: np.ndarray,
        names: Mapping[int, str],
        area_min: int,
        scores: Mapping[int, float] | None = None,
    ) -> None:
        """Fill what no instance took with stuff regions of at least ``area_min`` free pixels: each region becomes
        one panoptic segment (``isthing`` False, ``score`` the model's mean confidence from ``scores`` or None) and
        paints its free pixels in the semantic map."""
        scores = scores or {}
        # One pass over the free pixels, whatever the number of regions: each pixel's region by np.unique's inverse.
        free = (self.panoptic_map if self.panoptic_map is not None else self.semantic_map) == 0
        label_ids, region_of, counts = _regions(stuff_map[free])
        segment_of = np.zeros(len(label_ids), dtype=np.int32)  # region -> its new panoptic segment id, 0: left out
        kept_label = np.zeros(len(label_ids), dtype=np.int32)  # region -> its label id where kept
        for index, (label_id, area) in enumerate(zip(label_ids.tolist(), counts.tolist())):
            if label_id == 0 or area < area_min:
                continue
            name = names.get(label_id, str(label_id))
            kept_label[index] = label_id
            if self.panoptic_map is not None:
                segment_of[index] = len(self.segments) + 1
                self.segments.append({"id": len(self.segments) + 1, "label": name, "label_id": label_id,
                                      "isthing": False, "score": scores.get(label_id), "area": area})  # fmt: skip
            if self.semantic_map is not None:
                self.names[label_id] = name
        if self.panoptic_map is not None:
            self.panoptic_map[free] = segment_of[region_of]
        if self.semantic_map is not None:
            painted = self.semantic_map[free]
            self.semantic_map[free] = np.where(painted == 0, kept_label[region_of], painted)

    @classmethod
    def from_views(cls, views: Mapping[str, Any], **thresholds: float) -> ViewBuilder:
        """A builder holding copies of a result's views (``semantic`` and/or ``panoptic``), to add stuff to."""
        present = [view for view in VIEWS if view in views]
        if not present:
            raise ValueError(f"a result needs one of {VIEWS} to add stuff to, got {sorted(views)}")
        height, width = np.asarray(views[present[0]]["map"]).shape
        builder = cls(height, width, views=present, **thresholds)
        if "semantic" in views:
            builder.semantic_map = np.array(views["semantic"]["map"], dtype=np.int32)
            builder.names = {int(k): v for k, v in views["semantic"]["labels"].items()}
        if "panoptic" in views:
            builder.panoptic_map = np.array(views["panoptic"]["map"], dtype=np.int32)
            builder.segments = [dict(segment) for segment in views["panoptic"]["segments"]]
        return builder

    def semantic(self) -> dict[str, Any]:
        """``{"map": np.ndarray[H, W] int32, "labels": {id: name}}``, the labels of the ids present (things and
        stuff)."""
        present = sorted(int(v) for v in np.unique(self.semantic_map) if v != 0)
        return {"map": self.semantic_map, "labels": {label_id: self.names[label_id] for label_id in present}}

    def panoptic(self) -> dict[str, Any]:
        """``{"map": np.ndarray[H, W] int32, "segments": [...]}``."""
        return {"map": self.panoptic_map, "segments": self.segments}


def views_from_instances(
    instances: Sequence[Mapping[str, Any]],
    size: tuple[int, int],
    *,
    views: Sequence[str] = VIEWS,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    overlap_threshold: float = DEFAULT_OVERLAP_THRESHOLD,
) -> dict[str, Any]:
    """The ``"semantic"`` and ``"panoptic"`` views of the contract's instances (highest score first; masks as PIL
    images, COCO RLE or crops), for a picture of ``size`` ``(width, height)``.

    >>> from pipeline.masks import MaskCrop
    >>> cat = {"label": "cat", "label_id": 17, "score": 0.9, "mask": MaskCrop(np.ones((2, 2), bool), 0, 0, 3, 4)}
    >>> views = views_from_instances([cat], (4, 3))
    >>> views["semantic"]["map"].tolist(), [s["label"] for s in views["panoptic"]["segments"]]
    ([[17, 17, 0, 0], [17, 17, 0, 0], [0, 0, 0, 0]], ['cat'])
    """
    width, height = size
    builder = ViewBuilder(
        height, width, views=views, score_threshold=score_threshold, overlap_threshold=overlap_threshold
    )
    for instance in instances:
        crop = crop_of(instance["mask"], size)
        builder.add(crop, int(instance["label_id"]), float(instance["score"]), instance["label"])
    result = {}
    if "semantic" in views:
        result["semantic"] = builder.semantic()
    if "panoptic" in views:
        result["panoptic"] = builder.panoptic()
    return result


def _by_score(masks: np.ndarray, labels: Sequence[int], scores: Sequence[float]):
    for index in np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable"):
        yield crop_of(masks[index]), int(labels[index]), float(scores[index])


def semantic_from_instances(
    masks: np.ndarray, labels: Sequence[int], scores: Sequence[float], *, height: int, width: int
) -> np.ndarray:
    """Paint each pixel with the label of the highest-scoring instance that covers it (on a tie, the first listed).

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
    builder = ViewBuilder(height, width, views=("semantic",))
    for crop, label_id, score in _by_score(masks, labels, scores):
        builder.add(crop, label_id, score, str(label_id))
    return builder.semantic_map


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
    builder = ViewBuilder(
        height, width, views=("panoptic",), score_threshold=score_threshold, overlap_threshold=overlap_threshold
    )
    for crop, label_id, score in _by_score(masks, labels, scores):
        builder.add(crop, label_id, score, label_names.get(label_id, str(label_id)))
    if stuff_map is not None:
        builder.add_stuff(stuff_map, stuff_names or {}, stuff_area_min)
    return builder.panoptic()


def with_threshold(
    result: Mapping[str, Any],
    threshold: float,
    *,
    overlap_threshold: float = DEFAULT_OVERLAP_THRESHOLD,
) -> dict[str, Any]:
    """The result a segmenter run at ``threshold`` would give, from one run at a lower threshold; no model runs.

    The instances at or above ``threshold`` are kept, and the semantic map and the panoptic segments are rebuilt
    from them by :func:`views_from_instances`, what :class:`~pipeline.segmentation.SegmentationPipeline` itself runs,
    so the views equal a fresh run's (tested). Stuff the views held (:func:`add_stuff`) is put back over the
    pixels it had, after the kept things (a thing left out leaves its pixels unlabeled: the stuff model's answer
    under it was not kept). Other keys are carried over as they are.

    Args:
        result (dict): one image's output with ``"instances"`` and at least one view (for the picture's size).
        threshold (float): the display threshold, between 0 and 1.
        overlap_threshold (float, default 0.5): panoptic fusion's overlap rule.

    Returns:
        dict: a copy of ``result`` with ``instances``, ``semantic`` and ``panoptic`` for ``threshold``.
    """
    threshold = THRESHOLD.check(threshold)
    kept = [instance for instance in result["instances"] if instance["score"] >= threshold]
    views = views_from_instances(
        kept, _result_size(result), score_threshold=threshold, overlap_threshold=overlap_threshold
    )
    stuff = stuff_of(result)
    if stuff is not None:
        views = add_stuff({"instances": kept, **views}, stuff, area_min=1)
    return {**result, "instances": kept, **{view: views[view] for view in VIEWS}}


def _result_size(result: Mapping[str, Any]) -> tuple[int, int]:
    for key in VIEWS:
        if key in result:
            height, width = np.asarray(result[key]["map"]).shape
            return width, height
    if result["instances"]:
        crop = crop_of(result["instances"][0]["mask"])
        return crop.width, crop.height
    raise ValueError("result has no instances and no map, so its image size is unknown")


def stuff_area_min(height: int, width: int) -> int:
    """The least free pixels a stuff region needs to be kept in a picture of this size (:data:`STUFF_SHARE_MIN`).

    >>> stuff_area_min(128, 128), stuff_area_min(480, 640)
    (328, 4096)
    """
    return min(DEFAULT_STUFF_AREA_MIN, max(1, int(np.ceil(STUFF_SHARE_MIN * height * width))))


def _regions(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True, return_counts=True)`` for label ids within a small range (a stuff
    map's), by counting instead of sorting: on a 40-megapixel photo, sorting took several copies of the map in int64.

    >>> [part.tolist() for part in _regions(np.array([1003, 0, 1003, 1001]))]
    [[0, 1001, 1003], [2, 0, 2, 1], [1, 1, 2]]
    """
    if values.size == 0 or int(values.max()) - int(values.min()) >= 1 << 16:
        return np.unique(values, return_inverse=True, return_counts=True)
    low = int(values.min())
    codes = (values - low).astype(np.int32, copy=False)
    every = np.bincount(codes)
    present = np.flatnonzero(every)
    lookup = np.zeros(len(every), dtype=np.int32)
    lookup[present] = np.arange(len(present), dtype=np.int32)
    return present + low, lookup[codes], every[present]


def add_stuff(result: Mapping[str, Any], stuff: Mapping[str, Any], *, area_min: int | None = None) -> dict[str, Any]:
    """A segmenter's result with a stuff model's regions fused into its views, Panoptic-FPN style: the things
    keep their pixels, and each stuff region fills the pixels still free when at least ``area_min`` of them are.

    Args:
        result (dict): the segmenter's output (``instances`` and the views it computed); not changed.
        stuff (dict): :class:`~pipeline.stuff.StuffPipeline`'s ``{"map", "labels", "scores"}`` of the same picture.
        area_min (int | None, default None): least free pixels of a kept region; None: :func:`stuff_area_min`.

    Returns:
        dict: a copy of ``result`` whose ``semantic`` map and ``panoptic`` segments also hold the stuff
        (``isthing`` False, ``score`` the model's mean confidence over its region); a result without views (subtask
        ``"instance"``) comes back as it is.

    >>> things = views_from_instances([], (4, 2))
    >>> sky = {"map": np.array([[1002] * 4, [0] * 4]), "labels": {1002: "sky"}, "scores": {1002: 0.9}}
    >>> fused = add_stuff({"instances": [], **things}, sky, area_min=2)
    >>> fused["panoptic"]["segments"], fused["semantic"]["labels"]
    ([{'id': 1, 'label': 'sky', 'label_id': 1002, 'isthing': False, 'score': 0.9, 'area': 4}], {1002: 'sky'})
    """
    if not any(view in result for view in VIEWS):
        return dict(result)
    builder = ViewBuilder.from_views(result)
    stuff_map = np.asarray(stuff["map"])
    if stuff_map.shape != (builder.height, builder.width):
        raise ValueError(f"stuff map is {list(stuff_map.shape)}, the views {[builder.height, builder.width]}")
    if area_min is None:
        area_min = stuff_area_min(builder.height, builder.width)
    builder.add_stuff(stuff_map, stuff["labels"], area_min, stuff.get("scores"))
    fused = dict(result)
    if "semantic" in result:
        fused["semantic"] = builder.semantic()
    if "panoptic" in result:
        fused["panoptic"] = builder.panoptic()
    return fused


def stuff_of(result: Mapping[str, Any]) -> dict[str, Any] | None:
    """The stuff regions a result's views hold, as :func:`add_stuff` takes them (None when it holds none): the
    panoptic view's stuff segments, else the semantic map's ids of :data:`~pipeline.stuff.STUFF_ID_OFFSET` and up."""
    from .stuff import STUFF_ID_OFFSET

    if "panoptic" in result:
        segments = [segment for segment in result["panoptic"]["segments"] if not segment["isthing"]]
        if not segments:
            return None
        segment_map = np.asarray(result["panoptic"]["map"])
        stuff_map = np.zeros(segment_map.shape, dtype=np.int32)
        for segment in segments:
            stuff_map[segment_map == segment["id"]] = int(segment["label_id"])
        labels = {int(s["label_id"]): s["label"] for s in segments}
        return {"map": stuff_map, "labels": labels, "scores": {int(s["label_id"]): s["score"] for s in segments}}
    if "semantic" in result:
        semantic_map = np.asarray(result["semantic"]["map"])
        stuff_map = np.where(semantic_map >= STUFF_ID_OFFSET, semantic_map, 0).astype(np.int32)
        labels = {int(k): v for k, v in result["semantic"]["labels"].items() if int(k) >= STUFF_ID_OFFSET}
        return {"map": stuff_map, "labels": labels, "scores": {}} if labels else None
    return None
