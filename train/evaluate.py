"""Evaluate a catalog captioner, segmenter, stuff model or answerer on a data set folder and print its metrics.

The metrics are the training scripts' own (:mod:`pipeline.evaluation`): for a captioner BLEU-1..4, METEOR, ROUGE-L and
CIDEr against all reference captions of each image, and the gender misclassification rates (among images whose
references agree on a gender: the share of captions naming the other one, and the share naming none); COCOeval box and
mask AP, AP50, AP75 for a segmenter; for a stuff model, PQ, SQ and RQ of the fused panoptic view (``--segmenter``'s
things, the stuff model's stuff), over all categories, the things and the stuff apart. Caption scores are computed as
COCO's evaluation does, on the words of the PTB tokenizer, which runs on Java as METEOR does (``apt-get install
default-jre-headless``; ``--no_meteor`` leaves METEOR out, the tokenizer still needs Java). The model runs through the
app's pipelines (``pipeline.load_captioner`` / ``pipeline.load_segmenter``), so what is measured is what is served.

A data set folder holds an images folder and a caption file (``captions.txt``, ``Flickr8k.token.txt`` or
``results.csv``) for captioners, ``images/`` and ``instances.json`` (COCO) for segmenters, and also ``annotations/``
and ``labels.json`` for stuff models; a split written by ``train/shapes.py`` has them all (``--stuff`` for the last
two). Several captioners, comma-separated, are compared on the same images: one table of every caption score, the
gender rates and seconds per image, printed in Markdown and written with ``--json`` and ``--markdown``. Examples::

    python -m train.shapes --output_dir data/shapes-heldout --seed 1 --train 0 --val 0 --test 300
    python -m train.evaluate captioner shapes data/shapes-heldout/test --shapes --json captions.json
    python -m train.evaluate captioner blip-base,git-base,shapes data/shapes-heldout/test --markdown table.md
    python -m train.evaluate segmenter shapes data/shapes-heldout/test --json metrics.json
    python -m train.evaluate segmenter maskrcnn-v2 coco/val2017-folder --device cuda
    python -m train.shapes --output_dir data/shapes-stuff-heldout --stuff --seed 1 --train 0 --val 0 --test 100
    python -m train.evaluate stuff shapes data/shapes-stuff-heldout/test --segmenter shapes --threshold 0.5
    python -m train.evaluate answerer shapes data/shapes-heldout/test --question_types colour,shape

An answerer is scored on a VQAv2-layout folder (``questions.json``, ``annotations.json``, ``images/``; a
``train/shapes.py`` split has them) by the official VQA accuracy (:func:`pipeline.evaluation.vqa_scores`), over all
questions and per question and answer type; ``--max_images`` then counts questions.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.evaluation import (
    JavaUnavailableError,
    comparison_table,
    evaluate_captioner,
    evaluate_panoptic,
    evaluate_segmenter,
    require_java,
    start_meteor,
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "kind",
        choices=("captioner", "segmenter", "stuff", "answerer"),
        help="what to evaluate (stuff: the fused panoptic view's PQ; answerer: VQA accuracy on a VQAv2-layout folder)",
    )
    parser.add_argument(
        "model",
        help="catalog name (e.g. shapes), local directory, or hub id (captioners); several captioners, "
        "comma-separated, are compared in one table",
    )
    parser.add_argument(
        "data_dir",
        help="data set folder: a caption file (captions.txt, Flickr8k.token.txt or results.csv) and an images folder "
        "for a captioner; images/ and a COCO instances.json for a segmenter (a train.shapes split has both)",
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default auto)")
    parser.add_argument("--batch_size", type=int, default=8, help="images per forward pass (default 8)")
    parser.add_argument("--max_images", type=int, default=None, help="evaluate on the first N images only")
    parser.add_argument("--num_beams", type=int, default=1, help="captioner beam width (default 1, greedy)")
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="segmenter score threshold (default 0; 0.5 for a stuff model's panoptic view, as served)",
    )
    parser.add_argument("--segmenter", default="shapes", help="stuff: the segmenter of the things (default shapes)")
    parser.add_argument(
        "--no_meteor", action="store_true", help="captioner: leave METEOR out (the PTB tokenizer still needs Java)"
    )
    parser.add_argument(
        "--shapes",
        action="store_true",
        help="captioner on a shapes data set: also the shares of pictures whose caption names the right kinds with "
        "the right counts, and the right colours (train.shape_words)",
    )
    parser.add_argument(
        "--question_types",
        default=None,
        help="answerer: comma-separated question_type values to score (e.g. colour,shape); default: all",
    )
    parser.add_argument("--json", dest="json_path", help="also write the metrics to this JSON file")
    parser.add_argument("--markdown", help="captioners: also write the comparison table to this Markdown file")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or (args.max_images is not None and args.max_images < 1):
        parser.error("--batch_size and --max_images must be at least 1")
    if "," in args.model and args.kind != "captioner":
        parser.error("several models, comma-separated, are compared for captioners only")
    return args


def checks(args: argparse.Namespace) -> tuple:
    """The measures added to the caption scores: the shapes world's kinds, counts and colours with ``--shapes``."""
    from train.shape_words import shape_accuracy

    return (shape_accuracy,) if args.shapes else ()


def compare(args: argparse.Namespace, names: list[str]) -> dict[str, dict[str, float]]:
    """Every captioner of ``names`` on the same images: ``{name: figures}``, printed (and written) as one table."""
    from pipeline import load_captioner

    rows = {}
    for name in names:
        model = load_captioner(name, device=args.device, batch_size=args.batch_size)
        rows[name] = evaluate_captioner(
            model,
            args.data_dir,
            max_images=args.max_images,
            meteor=not args.no_meteor,
            checks=checks(args),
            num_beams=args.num_beams,
        )
        del model  # one captioner in memory at a time
    table = comparison_table(rows)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(rows, indent=1) + "\n")
    return rows


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from pipeline import load_captioner, load_segmenter, load_stuff

    args = parse_args(argv)
    if args.kind == "captioner":
        names = [name.strip() for name in args.model.split(",") if name.strip()]
        try:
            require_java()  # the PTB tokenizer and METEOR: fail now without Java, not after the captioning
            if not args.no_meteor:
                start_meteor()  # its JVM loads while the model does
            if len(names) > 1:
                return compare(args, names)
            model = load_captioner(args.model, device=args.device, batch_size=args.batch_size)
            metrics = evaluate_captioner(
                model,
                args.data_dir,
                max_images=args.max_images,
                meteor=not args.no_meteor,
                checks=checks(args),
                num_beams=args.num_beams,
            )
        except JavaUnavailableError as error:
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(2) from None
    elif args.kind == "answerer":
        from pipeline import load_answerer
        from pipeline.evaluation import evaluate_answerer

        model = load_answerer(args.model, device=args.device, batch_size=args.batch_size)
        types = [kind.strip() for kind in (args.question_types or "").split(",") if kind.strip()] or None
        metrics = evaluate_answerer(model, args.data_dir, question_types=types, max_questions=args.max_images)
    elif args.kind == "stuff":
        segmenter = load_segmenter(args.segmenter, device=args.device, batch_size=args.batch_size)
        stuff = load_stuff(args.model, device=args.device, batch_size=args.batch_size)
        threshold = 0.5 if args.threshold is None else args.threshold
        metrics = evaluate_panoptic(segmenter, stuff, args.data_dir, max_images=args.max_images, threshold=threshold)
    else:
        model = load_segmenter(args.model, device=args.device, batch_size=args.batch_size)
        threshold = args.threshold or 0.0
        metrics = evaluate_segmenter(model, args.data_dir, max_images=args.max_images, threshold=threshold)
    for name, value in metrics.items():
        whole = name in ("images", "gender_images", "pictures", "questions") or name.startswith("categories")
        print(f"{name:>18}  {int(value)}" if whole else f"{name:>18}  {value:.4f}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics


if __name__ == "__main__":
    main()
