"""Command line: caption and segment images, print a summary, write the JSON form.

python -m pipeline street.jpg cat.png --captioner blip-base --segmenter maskrcnn-v2 --json results.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from .catalog import ModelUnavailableError, list_models
from .images import DEFAULT_MAX_PIXELS
from .jsonform import to_json
from .speed import PROFILES


def add_model_arguments(parser: argparse.ArgumentParser, *, batch_size: int = 1) -> argparse.ArgumentParser:
    """Add the model and option flags shared by ``python -m pipeline`` and ``python -m pipeline.batch``.

    Args:
        parser (argparse.ArgumentParser): the parser to extend.
        batch_size (int, default 1): the default of ``--batch-size``.

    Returns:
        argparse.ArgumentParser: the same parser (``--captioner``, ``--segmenter``, ``--device``, ``--profile``,
        ``--threshold``, ``--max-new-tokens``, ``--num-beams``, ``--prompt``, ``--batch-size``, ``--max-pixels``).

    >>> add_model_arguments(argparse.ArgumentParser()).parse_args([]).num_beams
    1
    """
    captioners = ", ".join(spec.name for spec in list_models("captioner"))
    segmenters = ", ".join(spec.name for spec in list_models("segmenter"))
    parser.add_argument(
        "--captioner", default="blip-base", help=f"{captioners}, a local directory or a hub id (default blip-base)"
    )
    parser.add_argument(
        "--segmenter", default="maskrcnn-v2", help=f"{segmenters} or a checkpoint directory (default maskrcnn-v2)"
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default auto)")
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="full",
        help="speed profile: full = the models' own outputs, fast = about 5x faster on CPU (default full)",
    )
    parser.add_argument("--threshold", type=float, default=0.5, help="score threshold for objects (default 0.5)")
    parser.add_argument("--max-new-tokens", type=int, default=30, help="longest caption in tokens (default 30)")
    parser.add_argument("--num-beams", type=int, default=1, help="1 = greedy search, more = beam search (default 1)")
    parser.add_argument("--prompt", default=None, help='conditional caption prompt, e.g. "a picture of"')
    parser.add_argument(
        "--batch-size", type=int, default=batch_size, help=f"images per forward pass (default {batch_size})"
    )
    parser.add_argument(
        "--max-pixels", type=int, default=None, help=f"refuse larger images (default {DEFAULT_MAX_PIXELS:,})"
    )
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline", description="Caption images and outline every object in them."
    )
    parser.add_argument("images", nargs="+", help="image files (any format Pillow reads)")
    add_model_arguments(parser)
    parser.add_argument("--json", type=Path, default=None, help="write the results here (masks as COCO RLE)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from transformers.utils import logging as transformers_logging

    from .combined import load_pipeline

    transformers_logging.disable_progress_bar()  # keep stdout/stderr to the results and errors

    try:
        pipe = load_pipeline(
            args.captioner,
            args.segmenter,
            device=args.device,
            batch_size=args.batch_size,
            max_pixels=args.max_pixels,
            profile=args.profile,
        )
    except (ModelUnavailableError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    options = {"threshold": args.threshold, "max_new_tokens": args.max_new_tokens, "num_beams": args.num_beams}
    if args.prompt:
        options["prompt"] = args.prompt
    records, failures = [], 0
    for path in args.images:
        try:
            result = pipe(path, **options)
        except ValueError as error:
            failures += 1
            print(f"{path}: error: {error}", file=sys.stderr)
            records.append({"image": path, "error": str(error)})
            continue
        counts = Counter(instance["label"] for instance in result["instances"])
        objects = ", ".join(f"{n} {label}" for label, n in counts.most_common()) or "no objects"
        timings = result["timings_ms"]
        print(f"{path}: {result['caption']}")
        print(
            f"  {objects} (caption {timings['caption']:.0f} ms, segment {timings['segment']:.0f} ms, "
            f"total {timings['total']:.0f} ms)"
        )
        records.append({"image": path, **to_json(result)})
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(records, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
