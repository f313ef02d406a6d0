"""``python -m pipeline.batch INPUT --output DIR``: caption and segment many images, resumably (see the package).

Examples::

    python -m pipeline.batch photos/ --output out/ --captioner blip-base --segmenter maskrcnn-v2
    python -m pipeline.batch coco/annotations/instances_val2017.json --images-root coco/val2017 --output out/ \\
        --threshold 0 --references coco/annotations/instances_val2017.json
    accelerate launch --num_processes 4 -m pipeline.batch photos/ --output out/
    python -m pipeline.batch photos/ --output out/ --engine ray --ray-address auto
"""

from __future__ import annotations

import argparse
import sys

from ..__main__ import add_model_arguments


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.batch",
        description="Caption and segment every image of a folder, glob, path list, COCO JSON or data set.",
    )
    parser.add_argument(
        "input",
        help="a folder (recursive), a glob, a text file of paths, a COCO annotations JSON, a datasets save_to_disk "
        "folder, hf:imagefolder:DIR or hf:NAME (a hub data set)",
    )
    parser.add_argument("--output", required=True, help="output folder; a rerun into it resumes")
    # full by default: int8 decoding quantizes each batch's activations together, so a fast caption would depend on
    # the other images of its batch; full gives each image the same result however the job is cut.
    add_model_arguments(parser, batch_size=8, profile="full")
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader workers decoding images (default 2)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images of the input")
    parser.add_argument(
        "--images-root", default=None, help="where the relative paths of a COCO JSON or a path list start"
    )
    parser.add_argument("--split", default="train", help="data set split (default train)")
    parser.add_argument("--image-column", default=None, help="data set image column (default: the first Image one)")
    parser.add_argument(
        "--references",
        action="append",
        default=[],
        metavar="FILE",
        help="score the run against COCO instances, COCO captions, Flickr captions or COCO panoptic references "
        "into metrics.json (repeatable)",
    )
    parser.add_argument("--engine", choices=("local", "ray"), default="local", help="local (default) or ray")
    parser.add_argument(
        "--ray-address", default=None, help="Ray cluster to join (auto, ray://HOST:10001); default: a local Ray"
    )
    parser.add_argument("--ray-actors", type=int, default=1, help="Ray: model copies, one per actor (default 1)")
    parser.add_argument("--ray-cpus-per-actor", type=float, default=1.0, help="Ray: CPUs per actor (default 1)")
    parser.add_argument("--ray-gpus-per-actor", type=float, default=0.0, help="Ray: GPUs per actor (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    for name in ("batch_size", "ray_actors"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.num_workers < 0:
        parser.error(f"--num-workers must be 0 or more, got {args.num_workers}")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be at least 1, got {args.limit}")
    return args


def main(argv: list[str] | None = None) -> int:
    from ..evaluation import JavaUnavailableError
    from ..hub import ModelUnavailableError
    from . import run_batch

    args = parse_args(argv)
    try:
        return run_batch(args)
    except (ModelUnavailableError, JavaUnavailableError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"interrupted: the images finished so far are saved in {args.output}; run the same command to resume",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
