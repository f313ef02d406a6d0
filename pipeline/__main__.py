"""Command line: caption and segment images, print each description, write the JSON form.

python -m pipeline street.jpg cat.png --captioner blip-base --segmenter maskrcnn-v2 --json results.json
python -m pipeline street.jpg --captioner blip-base,git-base,vit-gpt2   # the captions side by side, each timed
python -m pipeline street.jpg --ask "How many people are there?" --ask "What colour is the car?"
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from .answering import answer_question, check_question
from .captioning import CAPTION_OPTIONS
from .catalog import ModelUnavailableError, list_models
from .describe import DESCRIBE_OPTIONS, count_objects
from .images import DEFAULT_MAX_PIXELS, ImageTooLargeError, load_image
from .jsonform import to_json
from .options import add_option_flags
from .segmentation import SEGMENT_OPTIONS
from .speed import PROFILES, default_profile

#: The pipelines' public call options a command line offers, each a flag (``--max-new-tokens``) in its bounded form;
#: all but ``subtask``: the commands write every view (the batch job's COCO panoptic files need them).
FLAG_OPTIONS = tuple(
    option
    for option in (*SEGMENT_OPTIONS, *CAPTION_OPTIONS, *DESCRIBE_OPTIONS)
    if option.public and option.name != "subtask"
)


def add_model_arguments(
    parser: argparse.ArgumentParser, *, batch_size: int = 1, profile: str | None = None
) -> argparse.ArgumentParser:
    """Add the model and option flags shared by ``python -m pipeline`` and ``python -m pipeline.batch``.

    Args:
        parser (argparse.ArgumentParser): the parser to extend.
        batch_size (int, default 1): the default of ``--batch-size``.
        profile (str | None, default None): the default of ``--profile``; None is the app's
            (:func:`pipeline.speed.default_profile` of ``--device``), resolved by the command.

    Returns:
        argparse.ArgumentParser: the same parser (``--captioner``, ``--segmenter``, ``--stuff``, ``--device``,
        ``--profile``, ``--threshold``, ``--max-new-tokens``, ``--num-beams``, ``--prompt``, ``--batch-size``,
        ``--max-pixels``).

    >>> add_model_arguments(argparse.ArgumentParser()).parse_args([]).num_beams
    1
    """
    captioners = ", ".join(spec.name for spec in list_models("captioner"))
    segmenters = ", ".join(spec.name for spec in list_models("segmenter"))
    parser.add_argument(
        "--captioner",
        default="blip-base",
        help=f"{captioners}, a local directory or a hub id (default blip-base); several, comma-separated, are "
        "compared: each caption with its time",
    )
    parser.add_argument(
        "--segmenter", default="maskrcnn-v2", help=f"{segmenters} or a checkpoint directory (default maskrcnn-v2)"
    )
    stuff = ", ".join(spec.name for spec in list_models("stuff"))
    parser.add_argument(
        "--stuff",
        default="none",
        help=f"stuff model for sky, grass, water, ... around the objects: {stuff}, a directory or a hub id, or "
        "none (default none)",
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default auto)")
    default = "Default: fast on a CPU, full on a GPU, as the app" if profile is None else f"Default: {profile}"
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default=profile,
        help="speed profile: full = the models' own outputs; fast = several times faster on CPU (smaller Mask R-CNN "
        f"input, fewer proposals, int8 caption decoder); live = fast at webcam-frame size (288 px). {default}",
    )
    # Every option flag is derived from its pipeline's declaration, with the bounds the app's endpoints check too.
    add_option_flags(parser, FLAG_OPTIONS)
    parser.add_argument(
        "--batch-size", type=int, default=batch_size, help=f"images per forward pass (default {batch_size})"
    )
    parser.add_argument(
        "--max-pixels", type=int, default=None, help=f"refuse larger images (default {DEFAULT_MAX_PIXELS:,})"
    )
    return parser


def call_options(args: argparse.Namespace, options: tuple = FLAG_OPTIONS) -> dict[str, Any]:
    """The pipeline call options of parsed flags: one per declared option (:data:`FLAG_OPTIONS`)."""
    return {option.name: getattr(args, option.name) for option in options}


def question_flag(text: str) -> str:
    """``--ask``'s type: the question, stripped, at most 200 characters and not empty."""
    try:
        return check_question(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline", description="Caption images and outline every object in them."
    )
    parser.add_argument("images", nargs="+", help="image files (any format Pillow reads)")
    add_model_arguments(parser)
    answerers = ", ".join(spec.name for spec in list_models("answerer"))
    parser.add_argument(
        "--ask",
        action="append",
        type=question_flag,
        default=[],
        metavar="QUESTION",
        help="a question about each image (repeatable; at most 200 characters): how many, is there and where "
        "questions about the segmenter's labels are answered from its objects, the others by --answerer",
    )
    parser.add_argument(
        "--answerer",
        default="blip-vqa-base",
        help=f"the question answerer of --ask: {answerers}, a local directory, a hub id, or none (the objects "
        "only); loaded only with --ask (default blip-vqa-base)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here (masks as COCO RLE)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from transformers.utils import logging as transformers_logging

    from .combined import load_pipeline

    transformers_logging.disable_progress_bar()  # keep stdout/stderr to the results and errors

    args.profile = args.profile or default_profile(args.device)
    captioners = [name.strip() for name in args.captioner.split(",") if name.strip()]
    if len(captioners) > 1:
        return compare(args, captioners)
    try:
        pipe = load_pipeline(
            args.captioner,
            args.segmenter,
            device=args.device,
            batch_size=args.batch_size,
            max_pixels=args.max_pixels,
            profile=args.profile,
            stuff=args.stuff,
            answerer=args.answerer if args.ask and args.answerer != "none" else None,
        )
    except (ModelUnavailableError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    options = call_options(args)
    records, failures = [], 0
    for path in args.images:
        try:
            image = load_image(path, max_pixels=args.max_pixels)
            result = pipe(image, **options)
            answers = [answer(pipe, question, image, result) for question in args.ask]
        except ValueError as error:
            message = str(error)
            if isinstance(error, ImageTooLargeError):  # name this command's own flag, not the library's argument
                message = error.describe("the --max-pixels limit" if args.max_pixels else "raise it with --max-pixels")
            failures += 1
            print(f"{path}: error: {message}", file=sys.stderr)
            records.append({"image": path, "error": message})
            continue
        timings, found = result["timings_ms"], len(result["instances"])
        print(f"{path}: {result['description']}")
        print(
            f"  {found} object{'' if found == 1 else 's'} (caption {timings['caption']:.0f} ms, "
            f"segment {timings['segment']:.0f} ms, total {timings['total']:.0f} ms)"
        )
        for said in answers:
            print(f"  Q: {said['question']}\n  A: {said['sentence']} ({said['source'] or 'no answerer'})")
        records.append({"image": path, **to_json(result), **({"answers": answers} if answers else {})})
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(records, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 1 if failures else 0


def answer(pipe: Any, question: str, image: Any, result: dict[str, Any]) -> dict[str, Any]:
    """One ``--ask`` question about an analysed image: from its objects, or by the pipeline's answerer."""
    labels = getattr(pipe.segmenter, "categories", None)
    return answer_question(question, image, result["instances"], labels=labels, answerer=pipe.answerer)


def compare(args: argparse.Namespace, captioners: list[str]) -> int:
    """``--captioner a,b,c``: every image captioned by each captioner (side by side, each timed), segmented once.

    A captioner that cannot be loaded or fails gives its error in its row; the exit code is then 1, as for an image
    that cannot be read.
    """
    from .catalog import load_captioner, load_segmenter
    from .compare import compare_captioners, format_comparison, load_once
    from .images import load_image

    common = {"device": args.device, "batch_size": args.batch_size, "max_pixels": args.max_pixels}
    try:
        segmenter = load_segmenter(args.segmenter, profile=args.profile, **common)
    except (ModelUnavailableError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    loaders = {
        name: load_once(lambda name=name: load_captioner(name, profile=args.profile, **common)) for name in captioners
    }
    options = call_options(args, tuple(option for option in FLAG_OPTIONS if option in CAPTION_OPTIONS))
    records, failures = [], 0
    for path in args.images:
        start = time.perf_counter()
        try:
            image = load_image(path, max_pixels=args.max_pixels)
        except ValueError as error:
            failures += 1
            print(f"{path}: error: {error}", file=sys.stderr)
            records.append({"image": path, "error": str(error)})
            continue
        rows = compare_captioners(image, loaders, **options)
        tick = time.perf_counter()
        segments = segmenter(image, threshold=args.threshold)
        segment_ms = (time.perf_counter() - tick) * 1000.0
        failures += any(row["error"] for row in rows)
        objects = count_objects(segments["instances"])
        total_ms = (time.perf_counter() - start) * 1000.0
        print(f"{path}:")
        for line in format_comparison(rows):
            print(f"  {line}")
        print(f"  {objects} (segment {segment_ms:.0f} ms, total {total_ms:.0f} ms)")
        records.append(
            {
                "image": path,
                "captions": rows,
                **to_json(segments),
                "models": {"captioners": captioners, "segmenter": segmenter.name},
                "timings_ms": {"segment": segment_ms, "total": total_ms},
            }
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(records, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
