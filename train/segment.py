"""Fine-tune a torchvision Mask R-CNN on a COCO-format data set, with COCOeval box and mask AP every epoch.

A data set is an images folder and a COCO instances JSON (polygons or RLE). ``num_classes`` is the number of
categories plus the background; category ids map to contiguous labels in id order and their names are saved with
the checkpoint. Crowd regions and degenerate boxes (under 1 pixel wide or high) are dropped; images without objects
are kept as negatives. The model starts from torchvision's COCO weights with new box and mask predictors
(``--init coco``) or from scratch (``--init scratch``, e.g. a small ResNet-18 FPN). The final model goes to
``--output_dir`` as ``segmenter.json`` + ``model.safetensors`` (:func:`pipeline.checkpoints.save_segmenter`), which
``pipeline.load_segmenter(<output_dir>)`` and the app load; ``metrics.json``, ``history.json`` and ``history.png``
sit beside it, resumable states in ``<output_dir>/checkpoints/step_<N>``.

Launch from the repository root (``-m``, so that ``train`` and ``pipeline`` import) on one or many GPUs
(``accelerate config`` once, or flags as below); COCO-style data, e.g. COCO 2017::

    accelerate launch --multi_gpu --num_processes 4 --mixed_precision fp16 -m train.segment \\
        --train_images coco/train2017 --train_annotations coco/annotations/instances_train2017.json \\
        --val_images coco/val2017 --val_annotations coco/annotations/instances_val2017.json \\
        --model maskrcnn_resnet50_fpn_v2 --init coco --per_device_batch_size 4 --learning_rate 1e-4 \\
        --warmup_steps 500 --num_train_epochs 12 --output_dir runs/maskrcnn-finetuned

A folder laid out as ``<dir>/images`` + ``<dir>/instances.json`` (what ``train/shapes.py`` writes) can be given as
``--train_dir`` / ``--val_dir``. On a CPU, plain ``python -m train.segment ...`` works (add ``--cpu`` to ignore a GPU).
The offline ``shapes`` segmenter is trained from scratch by ``python -m train.make_shapes_models`` (its
``SEGMENT_ARGS`` and ``SEGMENTER_KWARGS`` hold the exact flags): a ResNet-18 cut after stage 2 with trainable
BatchNorm (FrozenBatchNorm2d, right for pretrained weights, leaves a random backbone unnormalised), a 64-channel FPN
and heads, anchors of 16-64 px for 128 px images, AdamW at 2e-3 with 50 warm-up steps and cosine decay over 500 steps
of 8 images, float16 storage (under 4 MB).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.functional import pil_to_tensor

from pipeline.builders import ARCHITECTURES, build_maskrcnn
from pipeline.checkpoints import save_segmenter
from pipeline.evaluation import coco_detections, coco_instance_metrics
from pipeline.hub import ModelUnavailableError, require_torchvision_weights
from train.common import (
    EpochSeeded,
    add_common_arguments,
    check_common_arguments,
    command_line,
    dataset_name,
    finish_run,
    fit,
    present_images,
    start_run,
)

INITS = ("coco", "scratch")
PLOTTED = ("bbox_AP", "bbox_AP50", "segm_AP", "segm_AP50")


class CocoInstances(EpochSeeded, Dataset):
    """Images and instance targets from a COCO instances JSON, in torchvision's detection format.

    Args:
        images_dir (str | Path): folder of the files named by ``images[].file_name``.
        annotations (str | Path): the COCO instances JSON.
        hflip (float, default 0.0): probability of a horizontal flip (image, masks and boxes together).
        seed (int, default 0): with the epoch (``set_epoch``) and the index, decides each flip.

    Returns (per item):
        tuple ``(image, target)``: ``image`` (FloatTensor[3, H, W] in [0, 1]); ``target`` a dict with ``"boxes"``
        (FloatTensor[N, 4] x0, y0, x1, y1), ``"labels"`` (Int64Tensor[N], 1..K), ``"masks"`` (UInt8Tensor[N, H, W])
        and ``"image_id"`` (int, the COCO id).
    """

    def __init__(self, images_dir: str | Path, annotations: str | Path, *, hflip: float = 0.0, seed: int = 0):
        import contextlib
        import io

        from pycocotools.coco import COCO

        if not Path(annotations).is_file():
            raise ValueError(f"annotations file {str(annotations)!r} does not exist")
        if not Path(images_dir).is_dir():
            raise ValueError(f"images folder {str(images_dir)!r} does not exist")
        if not 0.0 <= hflip <= 1.0:
            raise ValueError(f"hflip must be a probability between 0 and 1, got {hflip!r}")
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco = COCO(str(annotations))
        self.images_dir = Path(images_dir)
        self.hflip = hflip
        self.seed = seed
        ids = sorted(self.coco.getImgIds())
        names = [self.coco.imgs[i]["file_name"] for i in ids]
        present, self.missing_note = present_images(names, self.images_dir, str(annotations))
        #: The images that are there (missing ones are skipped, and left out of the evaluation's ground truth too).
        self.image_ids = [i for i, name in zip(ids, names) if name in set(present)]
        self.category_ids = sorted(self.coco.getCatIds())
        if not self.category_ids:
            raise ValueError(f"annotations file {str(annotations)!r} declares no categories")
        self.label_of = {category_id: index + 1 for index, category_id in enumerate(self.category_ids)}
        self.categories = ["__background__"] + [self.coco.cats[i]["name"] for i in self.category_ids]

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        image_id = self.image_ids[index]
        info = self.coco.imgs[image_id]
        image = pil_to_tensor(Image.open(self.images_dir / info["file_name"]).convert("RGB")).float().div_(255.0)
        height, width = image.shape[1:]
        boxes, labels, masks = [], [], []
        for annotation in self.coco.imgToAnns.get(image_id, []):
            x, y, w, h = annotation["bbox"]
            if annotation.get("iscrowd", 0) or w < 1 or h < 1:
                continue
            boxes.append([x, y, x + w, y + h])
            labels.append(self.label_of[annotation["category_id"]])
            masks.append(self.coco.annToMask(annotation))
        target = {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "masks": torch.from_numpy(np.stack(masks))
            if masks
            else torch.zeros((0, height, width), dtype=torch.uint8),
            "image_id": image_id,
        }
        with self.random_state(index):
            flip = bool(self.hflip and torch.rand(()) < self.hflip)
        if flip:
            image = image.flip(-1)
            target["masks"] = target["masks"].flip(-1)
            target["boxes"][:, [0, 2]] = width - target["boxes"][:, [2, 0]]
        return image, target


def collate(batch: list) -> tuple[list, list]:
    """Detection batches are lists: images differ in size and targets in length."""
    images, targets = zip(*batch)
    return list(images), list(targets)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data = parser.add_argument_group("data")
    data.add_argument("--train_dir", help="folder with images/ and instances.json (instead of the next two)")
    data.add_argument("--train_images", help="training images folder")
    data.add_argument("--train_annotations", help="training COCO instances JSON")
    data.add_argument("--val_dir", help="folder with images/ and instances.json (instead of the next two)")
    data.add_argument("--val_images", help="validation images folder")
    data.add_argument("--val_annotations", help="validation COCO instances JSON")
    data.add_argument("--hflip", type=float, default=0.5, help="horizontal flip probability (default 0.5)")
    model = parser.add_argument_group("model")
    model.add_argument("--model", default="maskrcnn_resnet50_fpn_v2", choices=ARCHITECTURES, help="architecture")
    model.add_argument(
        "--init", default="coco", choices=INITS, help="coco: torchvision COCO weights, new predictors; scratch: random"
    )
    model.add_argument("--backbone", default="resnet18", help="ResNet of --model maskrcnn_fpn (default resnet18)")
    model.add_argument(
        "--model_kwargs",
        default="{}",
        help="JSON of MaskRCNN / build_maskrcnn settings saved with the model, e.g. '{\"min_size\": 512}'",
    )
    model.add_argument("--eval_threshold", type=float, default=0.0, help="drop detections below this score in eval")
    add_common_arguments(parser)
    parser.set_defaults(learning_rate=1e-4, weight_decay=1e-4, per_device_batch_size=4)
    args = parser.parse_args(argv)
    check_common_arguments(parser, args)
    args.command = command_line("train.segment", argv)
    for split in ("train", "val"):
        folder = getattr(args, f"{split}_dir")
        if folder:
            setattr(args, f"{split}_images", str(Path(folder) / "images"))
            setattr(args, f"{split}_annotations", str(Path(folder) / "instances.json"))
    if not (args.train_images and args.train_annotations):
        parser.error("give --train_dir, or both --train_images and --train_annotations")
    if bool(args.val_images) != bool(args.val_annotations):
        parser.error("give both --val_images and --val_annotations, or --val_dir, or neither")
    raw = args.model_kwargs
    try:
        args.model_kwargs = json.loads(raw)
    except json.JSONDecodeError as error:
        parser.error(f"--model_kwargs must be a JSON object, got {raw!r} ({error})")
    if not isinstance(args.model_kwargs, dict):
        parser.error(f"--model_kwargs must be a JSON object, got {raw!r}")
    if args.init == "coco" and args.model == "maskrcnn_fpn":
        parser.error(
            "--init coco needs a COCO architecture (maskrcnn_resnet50_fpn[_v2]); maskrcnn_fpn trains from scratch"
        )
    return args


def build_model(args: argparse.Namespace, num_classes: int) -> torch.nn.Module:
    """The model to train: COCO weights with new predictors for ``num_classes``, or a random one.

    ``--init coco`` reads torchvision's COCO weights from ``$TORCH_HOME/hub/checkpoints/`` (downloading them there
    the first time); when they are neither there nor downloadable it stops within seconds with a message that names
    the file and where to put it (:func:`pipeline.hub.require_torchvision_weights`).
    """
    if args.init == "scratch":
        return build_maskrcnn(args.model, num_classes=num_classes, backbone=args.backbone, **args.model_kwargs)
    from torchvision.models import detection
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
    from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor

    weights = require_torchvision_weights(f"--init coco --model {args.model}", args.model)
    model = getattr(detection, args.model)(weights=weights, **args.model_kwargs)
    box_features = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(box_features, num_classes)
    mask_features = model.roi_heads.mask_predictor.conv5_mask.in_channels
    model.roi_heads.mask_predictor = MaskRCNNPredictor(mask_features, 256, num_classes)
    return model


def detection_loss(model: torch.nn.Module, batch: tuple[Any, Any]) -> torch.Tensor:
    """Mask R-CNN's summed losses (RPN, box, mask) of one batch of images and targets."""
    images, targets = batch
    return sum(model(images, targets).values())


@torch.no_grad()
def predict_coco(
    model: torch.nn.Module, loader: Any, label_to_category: Sequence[int], accelerator: Any, threshold: float = 0.0
) -> list[dict[str, Any]]:
    """Run the model over ``loader`` and return every process's detections in the COCO results format."""
    model.eval()
    per_image = []
    for images, targets in loader:
        for output, target in zip(model(images), targets):
            keep = output["scores"] >= threshold
            per_image.append(
                coco_detections(
                    target["image_id"],
                    output["boxes"][keep].float().cpu().numpy(),
                    output["scores"][keep].float().cpu().numpy(),
                    [label_to_category[int(label)] for label in output["labels"][keep]],
                    (output["masks"][keep, 0] > 0.5).cpu().numpy(),
                )
            )
    gathered = accelerator.gather_for_metrics(per_image, use_gather_object=True)
    return [detection for image in gathered for detection in image]


def evaluate(
    model: torch.nn.Module, loader: Any, dataset: CocoInstances, accelerator: Any, threshold: float = 0.0
) -> dict[str, float]:
    """COCOeval box and mask AP, AP50, AP75 of ``model`` on ``dataset`` (:mod:`pipeline.evaluation`)."""
    label_to_category = [0, *dataset.category_ids]
    detections = predict_coco(model, loader, label_to_category, accelerator, threshold)
    return coco_instance_metrics(dataset.coco, detections, image_ids=dataset.image_ids)


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    accelerator, output_dir = start_run(args)

    # -- data
    try:
        train_set = CocoInstances(args.train_images, args.train_annotations, hflip=args.hflip, seed=args.seed)
        val_set = CocoInstances(args.val_images, args.val_annotations) if args.val_images else None
    except ValueError as error:  # a data set problem is one line, not a traceback
        raise SystemExit(f"error: {error}") from None
    for note in (train_set.missing_note, val_set.missing_note if val_set else ""):
        if note:
            accelerator.print(note)
    if val_set is not None and val_set.categories != train_set.categories:
        raise ValueError(f"validation categories {val_set.categories} differ from training's {train_set.categories}")
    loader_options = {"batch_size": args.per_device_batch_size, "collate_fn": collate, "num_workers": args.num_workers}
    # A loader generator of its own: DataLoader draws each iterator's base seed from it instead of from the global
    # RNG, which a resumed run restores and must not see moved by re-creating the iterator.
    generator = torch.Generator().manual_seed(args.seed)
    train_loader = DataLoader(train_set, shuffle=True, generator=generator, **loader_options)
    val_loader = DataLoader(val_set, shuffle=False, **loader_options) if val_set is not None else None

    # -- model, optimizer, schedule
    try:
        model = build_model(args, num_classes=len(train_set.categories))
    except ModelUnavailableError as error:
        raise SystemExit(f"error: {error}") from None
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=args.learning_rate, weight_decay=args.weight_decay)
    model, progress, metrics = fit(
        accelerator,
        args,
        output_dir,
        model,
        optimizer,
        train_loader,
        val_loader,
        train_set,
        compute_loss=detection_loss,
        evaluate=lambda model, loader: evaluate(model, loader, val_set, accelerator, args.eval_threshold),
        tracker="segment",
        describe=lambda steps: (
            f"{len(train_set)} training images, {len(train_set.categories) - 1} categories, {steps} steps"
        ),
    )

    # -- the model the catalog loads, and the record of the run
    def save(final: torch.nn.Module) -> None:
        save_segmenter(
            final,
            output_dir,
            categories=train_set.categories,
            architecture=args.model,
            backbone=args.backbone if args.model == "maskrcnn_fpn" else None,
            model_kwargs=args.model_kwargs,
            extra={"step": progress["step"], "metrics": metrics},
        )

    base = "random weights (trained from scratch)" if args.init == "scratch" else "torchvision's COCO weights"
    architecture = f"{args.model} ({args.backbone})" if args.model == "maskrcnn_fpn" else args.model
    categories = ", ".join(train_set.categories[1:])
    card = {
        "kind": "segmenter",
        "base_model": f"torchvision {architecture} with {base}",
        "dataset": dataset_name(Path(args.train_annotations).parent),
        "evaluated_on": f"{len(val_set) if val_set else 0} validation images (COCO metrics, pycocotools)",
        "data": [
            f"- training: COCO instances JSON `{Path(args.train_annotations).name}`, {len(train_set)} images",
            f"- validation: {len(val_set) if val_set else 0} images",
            f"- {len(train_set.categories) - 1} categories: {categories}",
            f"- augmentation: horizontal flip {args.hflip}",
        ],
        "extra_tags": ["instance-segmentation", "mask-rcnn", "torchvision"],
    }
    finish_run(accelerator, args, model, progress, metrics, save=save, plotted=PLOTTED, card=card)
    return metrics


if __name__ == "__main__":
    main()
