"""Scoring a finished batch run against references (``--references FILE``, repeatable) into ``metrics.json``.

The kind of a references file is read from its content:

- COCO instances (``annotations`` with ``bbox`` / ``segmentation``): COCOeval box and mask AP, AP50, AP75
  (:func:`pipeline.evaluation.coco_instance_metrics`);
- COCO captions (``annotations`` with ``caption``) or a Flickr caption file (``captions.txt``,
  ``Flickr8k.token.txt``, ``results.csv``, :mod:`pipeline.caption_files`): BLEU-1..4, METEOR, ROUGE-L, CIDEr (Java)
  (:func:`pipeline.evaluation.caption_metrics`);
- COCO panoptic (``annotations`` with ``segments_info``; PNGs in the folder named like the JSON without
  ``.json``, as ``panopticapi`` has it): PQ, SQ, RQ (:func:`pipeline.evaluation.panoptic_quality`).

Records are matched to reference images by file name (the whole relative name, else the base name); only matched
images are scored, the ground truth cut to them as :func:`pipeline.evaluation.evaluate_segmenter` does.
Predicted labels are matched to the references' categories by name.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from ..caption_files import read_captions
from ..evaluation import caption_metrics, coco_instance_metrics, panoptic_quality, require_java, rgb_to_id

REFERENCE_KINDS = ("coco_instances", "coco_captions", "flickr_captions", "coco_panoptic")


def reference_kind(path: str | Path) -> str:
    """Which of :data:`REFERENCE_KINDS` a references file is, from its content."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"references file {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        read_captions(path)  # raises ValueError naming the layouts when it is none of them
        return "flickr_captions"
    annotations = data.get("annotations") if isinstance(data, dict) else None
    if not isinstance(annotations, list) or not isinstance(data.get("images"), list):
        raise ValueError(f"references file {str(path)!r} is JSON but not COCO: it needs 'images' and 'annotations'")
    first = annotations[0] if annotations else {}
    if "segments_info" in first:
        return "coco_panoptic"
    if "caption" in first:
        return "coco_captions"
    return "coco_instances"


class _FileMatcher:
    """Reference file names -> reference keys, matched by the whole relative name, else by the base name."""

    def __init__(self, names: Mapping[str, Any]):
        self.exact = dict(names)
        self.base: dict[str, Any] = {}
        for name, key in names.items():
            self.base.setdefault(PurePosixPath(name).name, key)

    def __call__(self, file: str) -> Any:
        if file in self.exact:
            return self.exact[file]
        return self.base.get(PurePosixPath(file).name)


def check_references(references: Iterable[str | Path]) -> None:
    """Before a run: every references file is of a known kind, and caption ones can be scored here.

    Raises:
        ValueError: a file that is missing or of no known kind (the message names it).
        JavaUnavailableError: caption references with no Java (BLEU, ROUGE-L and CIDEr are computed on the PTB
            tokenizer's words and METEOR by its jar, both Java, as COCO's caption evaluation does).
    """
    kinds = [reference_kind(path) for path in references]
    if any(kind in ("coco_captions", "flickr_captions") for kind in kinds):
        require_java()


def score(references: Iterable[str | Path], records: list[dict[str, Any]], panoptic_dir: Path) -> dict[str, Any]:
    """Metrics of the successful ``records`` against each references file, keyed by its kind.

    Returns:
        dict kind -> ``{"references": path, "images": scored, "unmatched": records without a reference, ...}``.
    """
    metrics: dict[str, Any] = {}
    for path in references:
        kind = reference_kind(path)
        scorer = {
            "coco_instances": _score_instances,
            "coco_captions": _score_coco_captions,
            "flickr_captions": _score_flickr_captions,
            "coco_panoptic": _score_panoptic,
        }[kind]
        metrics[kind] = {"references": str(path), **scorer(Path(path), records, panoptic_dir)}
    return metrics


def _matched(records: list[dict[str, Any]], match: _FileMatcher) -> tuple[list[tuple[Any, dict]], int]:
    pairs = [(match(record["file"]), record) for record in records]
    found = [(key, record) for key, record in pairs if key is not None]
    return found, len(pairs) - len(found)


def _score_instances(path: Path, records: list[dict[str, Any]], panoptic_dir: Path) -> dict[str, Any]:
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(path))
    pairs, unmatched = _matched(records, _FileMatcher({image["file_name"]: i for i, image in coco.imgs.items()}))
    if not pairs:
        raise ValueError(f"no image of the run is in the references {str(path)!r}")
    category_of = {category["name"]: category["id"] for category in coco.loadCats(coco.getCatIds())}
    image_ids = {image_id for image_id, _ in pairs}
    if image_ids != set(coco.getImgIds()):  # COCOeval scores the images it is given: cut the ground truth too
        coco.dataset["images"] = [coco.imgs[i] for i in sorted(image_ids)]
        coco.dataset["annotations"] = [a for a in coco.dataset["annotations"] if a["image_id"] in image_ids]
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
    detections = [
        {
            "image_id": image_id,
            "category_id": category_of[instance["label"]],
            "bbox": instance["bbox"],
            "score": instance["score"],
            "segmentation": instance["segmentation"],
        }
        for image_id, record in sorted(pairs, key=lambda pair: pair[0])
        for instance in record["instances"]
        if instance["label"] in category_of
    ]
    return {"images": len(pairs), "unmatched": unmatched, **coco_instance_metrics(coco, detections)}


def _caption_scores(references: Mapping[str, list[str]], records: list[dict[str, Any]]) -> dict[str, Any]:
    pairs, unmatched = _matched(records, _FileMatcher({name: name for name in references}))
    if not pairs:
        raise ValueError("no image of the run has reference captions")
    candidates = {name: record["caption"] for name, record in pairs}
    scores = caption_metrics({name: references[name] for name in candidates}, candidates)
    return {"images": len(candidates), "unmatched": unmatched, **scores}


def _score_coco_captions(path: Path, records: list[dict[str, Any]], panoptic_dir: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    name_of = {image["id"]: image["file_name"] for image in data["images"]}
    references: dict[str, list[str]] = {}
    for annotation in data["annotations"]:
        references.setdefault(name_of[annotation["image_id"]], []).append(annotation["caption"])
    return _caption_scores(references, records)


def _score_flickr_captions(path: Path, records: list[dict[str, Any]], panoptic_dir: Path) -> dict[str, Any]:
    return _caption_scores(read_captions(path).captions, records)


def _score_panoptic(path: Path, records: list[dict[str, Any]], panoptic_dir: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    gt_folder = path.with_suffix("")
    if not gt_folder.is_dir():
        raise ValueError(f"panoptic references {str(path)!r} need their PNGs in the folder {str(gt_folder)!r}")
    by_id = {annotation["image_id"]: annotation for annotation in data["annotations"]}
    names = {image["file_name"]: image["id"] for image in data["images"] if image["id"] in by_id}
    pairs, unmatched = _matched(records, _FileMatcher(names))
    if not pairs:
        raise ValueError(f"no image of the run is in the panoptic references {str(path)!r}")
    category_of = {category["name"]: category["id"] for category in data["categories"]}
    isthing = {category["id"]: bool(category.get("isthing", 1)) for category in data["categories"]}

    def images():
        for image_id, record in pairs:
            annotation = by_id[image_id]
            gt_map = rgb_to_id(np.asarray(Image.open(gt_folder / annotation["file_name"]).convert("RGB")))
            pred_map = rgb_to_id(np.asarray(Image.open(panoptic_dir / record["panoptic_png"]).convert("RGB")))
            # predicted segments of categories the references lack are left unlabeled
            known = [
                dict(s, category_id=category_of[s["label"]]) for s in record["segments"] if s["label"] in category_of
            ]
            pred_map = np.where(np.isin(pred_map, [s["id"] for s in known]), pred_map, 0)
            yield gt_map, annotation["segments_info"], pred_map, known

    return {"images": len(pairs), "unmatched": unmatched, **panoptic_quality(images(), isthing)}
