"""Fine-tune a transformers semantic segmenter (the stuff model) with accelerate, with mIoU and pixel accuracy.

Any ``AutoModelForSemanticSegmentation`` (SegFormer, UperNet, DPT, ...) given by hub id or directory is fine-tuned
(``--model``; a head of another size is re-initialised for the data's classes), or a SegFormer is built from scratch
(``--init scratch``, its widths in ``--segformer_config``). Data is ADE20K's folder layout: ``images/<part>/*.jpg``
beside ``annotations/<part>/*.png`` where a pixel's value is its class index plus one and 0 is "other" (not scored),
given as ``--ade20k_dir ADEChallengeData2016`` (parts ``training`` and ``validation``, names from its
``objectInfo150.csv`` or ``objectInfo150.txt``, else the model's own), or as folders holding ``images/`` and
``annotations/`` (``--train_dir`` / ``--val_dir``, what ``train/shapes.py --stuff`` writes, names from their
``labels.json``, which also says which classes are stuff). The final model and its image processor go to
``--output_dir`` (``save_pretrained``; ``pipeline.load_stuff(<output_dir>)`` and the app load it), with
``metrics.json``, ``history.json``, ``history.png`` and a model card; resumable states go to
``<output_dir>/checkpoints/step_<N>`` (``--resume_from_checkpoint latest``).

On GPUs, e.g. SegFormer-b0 from its ImageNet encoder on ADE20K::

    accelerate launch --multi_gpu --num_processes 4 --mixed_precision fp16 -m train.stuff \\
        --ade20k_dir ADEChallengeData2016 --model nvidia/mit-b0 --image_size 512 \\
        --per_device_batch_size 8 --learning_rate 6e-5 --num_train_epochs 40 --output_dir runs/segformer-b0-ade

The offline ``shapes`` stuff model (committed as ``pipeline/weights/shapes-stuff``) was trained on a CPU with::

    python -m train.shapes --output_dir data/shapes-stuff --stuff --seed 0 --train 800 --val 60 --test 0
    python -m train.stuff --train_dir data/shapes-stuff/train --val_dir data/shapes-stuff/val --init scratch \\
        --segformer_config '{"hidden_sizes": [16, 32, 64, 96], "decoder_hidden_size": 64, "depths": [1, 1, 1, 1],
        "num_attention_heads": [1, 1, 2, 2]}' --image_size 128 --per_device_batch_size 16 --learning_rate 3e-3 \\
        --warmup_steps 20 --num_train_epochs 4 --output_dir pipeline/weights/shapes-stuff --save_float16
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

from pipeline.builders import build_segformer
from pipeline.stuff import stuff_labels
from train.common import (
    EpochSeeded,
    add_common_arguments,
    check_common_arguments,
    command_line,
    dataset_name,
    finish_run,
    fit,
    start_run,
)

INITS = ("pretrained", "scratch")
PLOTTED = ("mIoU", "pixel_accuracy")
#: The label a pixel gets when it is not scored ("other" in ADE20K, value 0 in the annotation files).
IGNORE = 255
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class SemanticFolder(EpochSeeded, Dataset):
    """Images and their class maps from ``images/`` and ``annotations/`` folders (ADE20K's convention).

    Args:
        images_dir, annotations_dir (str | Path): an image ``x.jpg`` (or ``.png``) pairs with ``x.png``.
        image_size (int): both are scaled to this square (bilinear / nearest).
        mean, std (Sequence[float]): the processor's normalisation.
        hflip (float, default 0.0): probability of a horizontal flip.
        seed (int, default 0): with the epoch and the index, decides each flip.

    Returns (per item):
        tuple ``(pixel_values, labels)``: FloatTensor[3, S, S] normalised; Int64Tensor[S, S], the class index, or
        :data:`IGNORE` where the annotation is 0.
    """

    def __init__(self, images_dir, annotations_dir, *, image_size: int, mean, std, hflip: float = 0.0, seed: int = 0):
        images_dir, annotations_dir = Path(images_dir), Path(annotations_dir)
        for folder in (images_dir, annotations_dir):
            if not folder.is_dir():
                raise ValueError(f"folder {str(folder)!r} does not exist")
        if not 0.0 <= hflip <= 1.0:
            raise ValueError(f"hflip must be a probability between 0 and 1, got {hflip!r}")
        self.pairs = [
            (path, annotations_dir / f"{path.stem}.png")
            for path in sorted(images_dir.iterdir())
            if path.suffix.lower() in IMAGE_SUFFIXES and (annotations_dir / f"{path.stem}.png").is_file()
        ]
        if not self.pairs:
            raise ValueError(f"no image in {str(images_dir)!r} has an annotation in {str(annotations_dir)!r}")
        self.image_size, self.hflip, self.seed = image_size, hflip, seed
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, annotation_path = self.pairs[index]
        size = (self.image_size, self.image_size)
        image = Image.open(image_path).convert("RGB").resize(size, Image.Resampling.BILINEAR)
        annotation = Image.open(annotation_path).resize(size, Image.Resampling.NEAREST)
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0)
        labels = torch.from_numpy(np.asarray(annotation, dtype=np.int64)) - 1
        labels[labels < 0] = IGNORE
        with self.random_state(index):
            flip = bool(self.hflip and torch.rand(()) < self.hflip)
        if flip:
            pixels, labels = pixels.flip(-1), labels.flip(-1)
        return (pixels - self.mean) / self.std, labels


def collate(batch: list) -> dict[str, torch.Tensor]:
    pixels, labels = zip(*batch)
    return {"pixel_values": torch.stack(pixels), "labels": torch.stack(labels)}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data = parser.add_argument_group("data")
    data.add_argument("--ade20k_dir", help="ADEChallengeData2016 root: images/ and annotations/ of training and "
                      "validation")  # fmt: skip
    data.add_argument("--train_dir", help="folder with images/, annotations/ and labels.json (train/shapes.py)")
    data.add_argument("--val_dir", help="validation folder of the same layout")
    data.add_argument("--image_size", type=int, default=512, help="square input size in pixels (default 512)")
    data.add_argument("--hflip", type=float, default=0.5, help="horizontal flip probability (default 0.5)")
    model = parser.add_argument_group("model")
    model.add_argument("--model", default="nvidia/mit-b0", help="hub id or directory of the model to fine-tune")
    model.add_argument("--init", default="pretrained", choices=INITS, help="pretrained: --model's weights; "
                       "scratch: a random SegFormer of --segformer_config")  # fmt: skip
    model.add_argument("--segformer_config", default="{}", help="JSON of SegformerConfig widths for --init scratch "
                       "(none: SegFormer-b0's)")  # fmt: skip
    add_common_arguments(parser)
    parser.set_defaults(learning_rate=6e-5, per_device_batch_size=8)
    args = parser.parse_args(argv)
    check_common_arguments(parser, args)
    args.command = command_line("train.stuff", argv)
    if bool(args.ade20k_dir) == bool(args.train_dir):
        parser.error("give --ade20k_dir, or --train_dir (and optionally --val_dir), not both")
    if args.ade20k_dir:
        root = Path(args.ade20k_dir)
        args.train_parts = (root / "images" / "training", root / "annotations" / "training")
        args.val_parts = (root / "images" / "validation", root / "annotations" / "validation")
    else:
        args.train_parts = (Path(args.train_dir) / "images", Path(args.train_dir) / "annotations")
        args.val_parts = (Path(args.val_dir) / "images", Path(args.val_dir) / "annotations") if args.val_dir else None
    if args.image_size < 32:
        parser.error(f"--image_size must be at least 32 pixels, got {args.image_size}")
    try:
        args.segformer_config = json.loads(args.segformer_config)
    except json.JSONDecodeError as error:
        parser.error(f"--segformer_config must be a JSON object, got {args.segformer_config!r} ({error})")
    if not isinstance(args.segformer_config, dict):
        parser.error(f"--segformer_config must be a JSON object, got {args.segformer_config!r}")
    return args


def read_labels(args: argparse.Namespace) -> tuple[list[str] | None, list[str] | None]:
    """The class names and the stuff among them: ``labels.json`` beside the training folder, or ADE20K's
    ``objectInfo150`` table (its ``Name`` column, the first name of each); (None, None) keeps the model's own."""
    root = Path(args.train_dir or args.ade20k_dir)
    if (root / "labels.json").is_file():
        table = json.loads((root / "labels.json").read_text())
        return list(table["labels"]), list(table.get("stuff", table["labels"]))
    for name, separator in (("objectInfo150.csv", ","), ("objectInfo150.txt", "\t")):
        if (root / name).is_file():
            rows = [line.split(separator) for line in (root / name).read_text().splitlines() if line.strip()]
            names = [row[-1].strip().strip('"').split(";")[0].split(",")[0].strip() for row in rows[1:]]
            return names, None
    return None, None


def build_model(args: argparse.Namespace, labels: list[str] | None, stuff: list[str] | None) -> tuple[Any, Any]:
    """The model to train and its image processor (sized to ``--image_size``)."""
    from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

    if args.init == "scratch":
        if labels is None:
            raise ValueError("--init scratch needs the class names: a labels.json or an objectInfo150 table")
        return build_segformer(labels, stuff_labels=stuff, image_size=args.image_size, **args.segformer_config)
    options: dict[str, Any] = {}
    if labels is not None:
        options = {"id2label": dict(enumerate(labels)), "label2id": {n: i for i, n in enumerate(labels)},
                   "num_labels": len(labels), "ignore_mismatched_sizes": True}  # fmt: skip
    model = AutoModelForSemanticSegmentation.from_pretrained(args.model, **options)
    if stuff is not None:
        model.config.stuff_labels = list(stuff)
    processor = AutoImageProcessor.from_pretrained(args.model)
    processor.size = {"height": args.image_size, "width": args.image_size}
    return model, processor


def segmentation_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The model's own cross-entropy (its ``semantic_loss_ignore_index`` is :data:`IGNORE`)."""
    return model(pixel_values=batch["pixel_values"], labels=batch["labels"]).loss


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: Any, accelerator: Any, num_classes: int) -> dict[str, float]:
    """Mean IoU over the classes that occur (in the annotations or the predictions) and pixel accuracy, from one
    confusion matrix summed over every process."""
    model.eval()
    confusion = torch.zeros((num_classes, num_classes), dtype=torch.int64, device=accelerator.device)
    for batch in loader:
        logits = model(pixel_values=batch["pixel_values"]).logits
        labels = batch["labels"]
        logits = torch.nn.functional.interpolate(logits.float(), size=labels.shape[-2:], mode="bilinear")
        predicted = logits.argmax(dim=1)
        scored = labels != IGNORE
        pairs = labels[scored] * num_classes + predicted[scored]
        confusion += torch.bincount(pairs, minlength=num_classes**2).reshape(num_classes, num_classes)
    confusion = accelerator.reduce(confusion, reduction="sum").double()
    true_positive = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - true_positive
    present = union > 0
    return {
        "mIoU": float((true_positive[present] / union[present]).mean()) if present.any() else 0.0,
        "pixel_accuracy": float(true_positive.sum() / confusion.sum().clamp(min=1)),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    accelerator, output_dir = start_run(args)
    labels, stuff = read_labels(args)
    try:
        model, processor = build_model(args, labels, stuff)
        norm = {"image_size": args.image_size, "mean": processor.image_mean, "std": processor.image_std}
        train_set = SemanticFolder(*args.train_parts, hflip=args.hflip, seed=args.seed, **norm)
        val_set = SemanticFolder(*args.val_parts, **norm) if args.val_parts else None
    except (ValueError, OSError) as error:  # a data or model problem is one line, not a traceback
        raise SystemExit(f"error: {error}") from None
    num_classes = int(model.config.num_labels)
    loader_options = {"batch_size": args.per_device_batch_size, "collate_fn": collate, "num_workers": args.num_workers}
    generator = torch.Generator().manual_seed(args.seed)  # see train/segment.py: a resumed run's order stays
    train_loader = DataLoader(train_set, shuffle=True, generator=generator, **loader_options)
    val_loader = DataLoader(val_set, shuffle=False, **loader_options) if val_set is not None else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    model, progress, metrics = fit(
        accelerator, args, output_dir, model, optimizer, train_loader, val_loader, train_set,
        compute_loss=segmentation_loss,
        evaluate=lambda model, loader: evaluate(model, loader, accelerator, num_classes),
        tracker="stuff",
        describe=lambda steps: f"{len(train_set)} training images, {num_classes} classes, {steps} steps",
    )  # fmt: skip

    def save(final: torch.nn.Module) -> None:
        final.save_pretrained(output_dir)
        processor.save_pretrained(output_dir)

    base = "a random SegFormer (trained from scratch)" if args.init == "scratch" else args.model
    names = list(accelerator.unwrap_model(model).config.id2label.values())
    kept = stuff_labels(dict(enumerate(names)), stuff)
    card = {
        "kind": "stuff",
        "base_model": base,
        "dataset": dataset_name(args.train_parts[0].parent),
        "evaluated_on": f"{len(val_set) if val_set else 0} validation images (mIoU and pixel accuracy)",
        "data": [
            f"- training: {len(train_set)} images at {args.image_size} px, {num_classes} classes",
            f"- validation: {len(val_set) if val_set else 0} images",
            f"- stuff (kept by the pipeline): {', '.join(kept.values())}",
            f"- augmentation: horizontal flip {args.hflip}",
        ],
        "extra_tags": ["semantic-segmentation", "stuff"],
    }
    finish_run(accelerator, args, model, progress, metrics, save=save, plotted=PLOTTED, card=card)
    return metrics


if __name__ == "__main__":
    main()
