"""Evaluate a catalog captioner or segmenter on a data set folder and print its metrics.

The metrics are the training scripts' own (:mod:`train.metrics`): BLEU-1..4 and CIDEr for a captioner, against all
reference captions of each image; COCOeval box and mask AP, AP50, AP75 for a segmenter. The model runs through the
app's pipelines (``pipeline.load_captioner`` / ``pipeline.load_segmenter``), so what is measured is what is served.

A data set folder holds an images folder and a caption file (``captions.txt``, ``Flickr8k.token.txt`` or
``results.csv``) for captioners, ``images/`` and ``instances.json`` (COCO) for segmenters; a split written by
``train/shapes.py`` has both. Examples::

    python -m train.shapes --output_dir /tmp/shapes-heldout --seed 1 --train 0 --val 0 --test 300
    python -m train.evaluate captioner shapes /tmp/shapes-heldout/test
    python -m train.evaluate segmenter shapes /tmp/shapes-heldout/test --json metrics.json
    python -m train.evaluate segmenter maskrcnn-v2 coco/val2017-folder --device cuda
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from train.caption import find_caption_data, read_captions
from train.metrics import caption_metrics, coco_detections, coco_instance_metrics

KINDS = ("captioner", "segmenter")


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
    if max_images:
        # COCOeval scores only the images given to it, so the cut must reach the ground truth too.
        coco.dataset["images"] = [coco.imgs[i] for i in image_ids]
        coco.dataset["annotations"] = [a for a in coco.dataset["annotations"] if a["image_id"] in set(image_ids)]
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
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
    return {**coco_instance_metrics(coco, detections), "images": float(len(image_ids))}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=KINDS, help="what to evaluate")
    parser.add_argument("model", help="catalog name (e.g. shapes), local directory, or hub id (captioners)")
    parser.add_argument("data_dir", help="data set folder (see above)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default auto)")
    parser.add_argument("--batch_size", type=int, default=8, help="images per forward pass (default 8)")
    parser.add_argument("--max_images", type=int, default=None, help="evaluate on the first N images only")
    parser.add_argument("--num_beams", type=int, default=1, help="captioner beam width (default 1, greedy)")
    parser.add_argument("--threshold", type=float, default=0.0, help="segmenter score threshold (default 0)")
    parser.add_argument("--json", dest="json_path", help="also write the metrics to this JSON file")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or (args.max_images is not None and args.max_images < 1):
        parser.error("--batch_size and --max_images must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    from pipeline import load_captioner, load_segmenter

    args = parse_args(argv)
    if args.kind == "captioner":
        model = load_captioner(args.model, device=args.device, batch_size=args.batch_size)
        metrics = evaluate_captioner(model, args.data_dir, max_images=args.max_images, num_beams=args.num_beams)
    else:
        model = load_segmenter(args.model, device=args.device, batch_size=args.batch_size)
        metrics = evaluate_segmenter(model, args.data_dir, max_images=args.max_images, threshold=args.threshold)
    for name, value in metrics.items():
        print(f"{name:>10}  {value:.4f}" if name != "images" else f"{name:>10}  {int(value)}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics


if __name__ == "__main__":
    main()
