"""Scoring captioners and segmenters: the one implementation behind ``train/``, the benchmark and the batch job.

- Captions: BLEU-1..4 and CIDEr (CIDEr-D) of pycocoevalcap's scorers, pure Python (no Java), every candidate scored
  against all references of its image (:func:`caption_metrics`).
- Instances: COCOeval (pycocotools) box and mask AP, AP50, AP75 from detections in the COCO results format
  (:func:`coco_detections`, :func:`coco_instance_metrics`).
- A pipeline on a data set folder: :func:`evaluate_captioner` (a caption file and an images folder, see
  :mod:`pipeline.caption_files`) and :func:`evaluate_segmenter` (``images/`` and a COCO ``instances.json``); with
  ``max_images`` the ground truth is cut to the same images, so that AP scores only what was predicted.

>>> scores = caption_metrics({"1.png": ["a red circle"], "2.png": ["a blue square"]}, {"1.png": "a red circle",
...                                                                                  "2.png": "a blue square"})
>>> round(scores["BLEU-1"], 3)
1.0
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from .caption_files import find_caption_data, read_captions

CAPTION_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "CIDEr")
COCO_METRICS = ("AP", "AP50", "AP75")
_WORD_SEPARATORS = re.compile(r"[^0-9a-z']+")


def normalize_caption(text: str) -> str:
    """Lower case, punctuation removed, single spaces: the tokenisation both the references and candidates get.

    >>> normalize_caption("A red circle, left of a Square.")
    'a red circle left of a square'
    """
    return " ".join(_WORD_SEPARATORS.split(text.lower())).strip()


def caption_metrics(references: Mapping[str, Sequence[str]], candidates: Mapping[str, str]) -> dict[str, float]:
    """Corpus BLEU-1..4 and CIDEr of one candidate caption per image against all that image's references.

    Args:
        references (Mapping[str, Sequence[str]]): image key -> its reference captions (at least one each).
        candidates (Mapping[str, str]): image key -> the generated caption; keys must match ``references``.

    Returns:
        dict with ``"BLEU-1"`` .. ``"BLEU-4"`` and ``"CIDEr"`` (floats; CIDEr on pycocoevalcap's 0-10 scale).
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    if set(references) != set(candidates):
        missing = sorted(set(references) ^ set(candidates))[:5]
        raise ValueError(f"references and candidates must cover the same images, differing on {missing}")
    if not candidates:
        raise ValueError("caption_metrics needs at least one image, got none")
    keys = sorted(candidates)
    gts = {key: [normalize_caption(text) for text in references[key]] for key in keys}
    res = {key: [normalize_caption(candidates[key]) or "<empty>"] for key in keys}
    if any(not refs for refs in gts.values()):
        raise ValueError("every image needs at least one reference caption")
    with contextlib.redirect_stdout(io.StringIO()):  # Bleu prints its ratio line
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        cider, _ = Cider().compute_score(gts, res)
    return {**{f"BLEU-{n}": float(score) for n, score in enumerate(bleu, start=1)}, "CIDEr": float(cider)}


def coco_detections(
    image_id: int,
    boxes: np.ndarray,
    scores: np.ndarray,
    category_ids: Sequence[int],
    masks: np.ndarray | None,
) -> list[dict[str, Any]]:
    """One image's detections in the COCO results format (boxes ``[x, y, w, h]``, masks as RLE with str counts).

    Args:
        image_id (int): the COCO image id.
        boxes (np.ndarray[N, 4] float): ``[x0, y0, x1, y1]`` pixels.
        scores (np.ndarray[N] float): confidences.
        category_ids (Sequence[int]): COCO category id of each detection.
        masks (np.ndarray[N, H, W] bool | None): binary masks; None for box-only results.
    """
    results = []
    for index, (box, score, category_id) in enumerate(zip(boxes, scores, category_ids)):
        x0, y0, x1, y1 = (float(value) for value in box)
        result = {
            "image_id": int(image_id),
            "category_id": int(category_id),
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "score": float(score),
        }
        if masks is not None:
            rle = mask_utils.encode(np.asfortranarray(masks[index].astype(np.uint8)))
            result["segmentation"] = {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}
        results.append(result)
    return results


def coco_instance_metrics(
    coco_gt: Any, detections: Sequence[dict[str, Any]], *, segm: bool = True, image_ids: Sequence[int] | None = None
) -> dict[str, float]:
    """COCOeval box (and mask) AP, AP50, AP75 of detections against a ground truth.

    Args:
        coco_gt (pycocotools.coco.COCO): the ground truth.
        detections (Sequence[dict]): COCO results (see :func:`coco_detections`); may be empty (all metrics 0).
        segm (bool, default True): also evaluate masks (every detection then needs ``"segmentation"``).
        image_ids (Sequence[int] | None, default None): score only these images (those that were predicted); None
            scores every image of the ground truth.

    Returns:
        dict with ``"bbox_AP"``, ``"bbox_AP50"``, ``"bbox_AP75"`` and, with ``segm``, the ``"segm_..."`` ones;
        in [0, 1], -1 where COCOeval has no ground truth to score against.
    """
    from pycocotools.cocoeval import COCOeval

    iou_types = ("bbox", "segm") if segm else ("bbox",)
    if not detections:
        return {f"{iou}_{name}": 0.0 for iou in iou_types for name in COCO_METRICS}
    metrics = {}
    with contextlib.redirect_stdout(io.StringIO()):  # COCO and COCOeval print progress lines
        coco_dt = coco_gt.loadRes(list(detections))
        for iou_type in iou_types:
            evaluator = COCOeval(coco_gt, coco_dt, iou_type)
            evaluator.params.imgIds = sorted(coco_gt.getImgIds() if image_ids is None else image_ids)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
            for index, name in enumerate(COCO_METRICS):
                metrics[f"{iou_type}_{name}"] = float(evaluator.stats[index])
    return metrics


# -- a pipeline on a data set folder -------------------------------------------------------------------------


def evaluate_captioner(
    captioner: Any, data_dir: str | Path, *, max_images: int | None = None, **call_options: Any
) -> dict[str, float]:
    """BLEU-1..4 and CIDEr of a :class:`~pipeline.captioning.CaptionPipeline` on a data set folder.

    Args:
        captioner (CaptionPipeline): e.g. ``pipeline.load_captioner("shapes")``.
        data_dir (str | Path): a folder with a caption file and an images folder.
        max_images (int | None, default None): evaluate on the first N images (sorted by name) only.
        **call_options: captioner call options, e.g. ``num_beams=3``.

    Returns:
        dict with ``"BLEU-1"`` .. ``"BLEU-4"``, ``"CIDEr"`` and ``"images"`` (how many were captioned).
    """
    captions_file, images_dir = find_caption_data(data_dir)
    references = read_captions(captions_file).captions
    names = sorted(references)[:max_images] if max_images else sorted(references)
    results = captioner([str(images_dir / name) for name in names], **call_options)
    candidates = {name: result["caption"] for name, result in zip(names, results)}
    return {**caption_metrics({name: references[name] for name in names}, candidates), "images": float(len(names))}


def evaluate_segmenter(
    segmenter: Any, data_dir: str | Path, *, max_images: int | None = None, threshold: float = 0.0
) -> dict[str, float]:
    """COCOeval box and mask AP of a :class:`~pipeline.segmentation.SegmentationPipeline` on a data set folder.

    Predicted labels are matched to the ground truth's categories by name.

    Args:
        segmenter (SegmentationPipeline): e.g. ``pipeline.load_segmenter("shapes")``.
        data_dir (str | Path): a folder with ``images/`` and ``instances.json``.
        max_images (int | None, default None): evaluate on the first N images (by id) only.
        threshold (float, default 0.0): the pipeline's score threshold; COCO AP wants every detection.

    Returns:
        dict with ``"bbox_AP"``, ``"bbox_AP50"``, ``"bbox_AP75"``, ``"segm_AP"``, ``"segm_AP50"``,
        ``"segm_AP75"`` and ``"images"``.
    """
    from pycocotools.coco import COCO

    root = Path(data_dir)
    annotations = root / "instances.json"
    if not annotations.is_file() or not (root / "images").is_dir():
        raise ValueError(f"data set folder {str(data_dir)!r} needs images/ and instances.json")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(annotations))
    category_of = {category["name"]: category["id"] for category in coco.loadCats(coco.getCatIds())}
    unknown = sorted(set(category_of) - set(segmenter.categories))
    if unknown:
        raise ValueError(f"the segmenter cannot predict the data set's categories {unknown}")
    image_ids = sorted(coco.getImgIds())[:max_images] if max_images else sorted(coco.getImgIds())
    paths = [str(root / "images" / coco.imgs[image_id]["file_name"]) for image_id in image_ids]
    detections = []
    for image_id, result in zip(image_ids, segmenter(paths, threshold=threshold, subtask="instance")):
        found = [obj for obj in result["instances"] if obj["label"] in category_of]
        detections += coco_detections(
            image_id,
            np.array([obj["box"] for obj in found], dtype=np.float64).reshape(-1, 4),
            np.array([obj["score"] for obj in found]),
            [category_of[obj["label"]] for obj in found],
            np.stack([np.asarray(obj["mask"]) > 127 for obj in found]) if found else None,
        )
    # Only the images predicted are scored: a cut (max_images) reaches the ground truth too.
    return {**coco_instance_metrics(coco, detections, image_ids=image_ids), "images": float(len(image_ids))}
