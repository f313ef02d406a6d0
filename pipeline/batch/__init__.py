"""Bulk captioning and segmentation: ``python -m pipeline.batch INPUT --output DIR``.

Captions and segments every image of a folder, a glob, a list of paths, a COCO annotations JSON or a Hugging Face
data set (:mod:`pipeline.batch.inputs`) with the library's pipeline (:func:`pipeline.load_pipeline`, each half
batched), and writes outputs other tools read (:mod:`pipeline.batch.store`): ``captions.jsonl``, ``instances.json``
(COCO results), ``panoptic/`` + ``panoptic.json`` (COCO panoptic), ``errors.jsonl``, ``summary.json``, and with
``--references`` ``metrics.json`` (:mod:`pipeline.batch.scoring`). A rerun resumes; every write is atomic.

Engines (:mod:`pipeline.batch.engines`), all existing ones:

- local: DataLoader workers decode while the models run; ``accelerate launch --num_processes N -m pipeline.batch``
  splits the images across processes (``PartialState.split_between_processes``), each writes its own parts and the
  main process merges;
- ``--engine ray``: a Ray Data pipeline (decoding as tasks, the models in an actor pool), on a local Ray instance
  or a cluster (``--ray-address``).

``ray`` and ``datasets`` are imported only by the code paths that need them (``pip install ".[batch]"``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ..__main__ import call_options
from .inputs import ImageSource, Item, coco_categories, list_items
from .store import OutputStore

__all__ = ["ImageSource", "Item", "OutputStore", "list_items", "run_batch"]


def _category_table(args: argparse.Namespace) -> list[dict[str, Any]] | None:
    """The category ids written: the input COCO JSON's, else a COCO references file's, else None (label ids)."""
    candidates = [args.input] if args.input.lower().endswith(".json") else []
    candidates += [path for path in args.references or [] if str(path).lower().endswith(".json")]
    for path in candidates:
        if Path(path).is_file() and (categories := coco_categories(path)):
            return categories
    return None


def _model_settings(args: argparse.Namespace, device: str) -> dict[str, Any]:
    return {
        "captioner": args.captioner,
        "segmenter": args.segmenter,
        "stuff": args.stuff,
        "device": device,
        "batch_size": args.batch_size,
        "max_pixels": args.max_pixels,
        "profile": args.profile,
    }


def _still_to_do(items: list[Item], finished: dict[str, int], output: Path) -> list[Item]:
    for item in items:
        if item.key in finished and finished[item.key] != item.image_id:
            raise ValueError(
                f"the input changed since the first run into {output}: {item.file!r} was image "
                f"{finished[item.key]}, is now {item.image_id}; write to a new --output"
            )
    return [item for item in items if item.key not in finished]


def _analyse(
    args: argparse.Namespace,
    state: Any,
    device: str,
    source: ImageSource,
    todo: list[Item],
    store: OutputStore,
    category_of: dict[str, int] | None,
    options: dict[str, Any],
) -> float:
    """Run this process's share of ``todo`` on the chosen engine; returns when its models were ready."""
    from tqdm.auto import tqdm

    models = _model_settings(args, device)
    ready = [time.perf_counter()]

    def on_ready() -> None:
        ready[0] = time.perf_counter()

    with (
        state.split_between_processes(todo) as share,
        tqdm(total=len(share), unit="img", desc="images", disable=not state.is_main_process or args.quiet) as progress,
    ):
        common = {"progress": progress, "on_ready": on_ready}
        if args.engine == "ray":
            from .engines import run_ray

            ray_settings = {
                "address": args.ray_address,
                "actors": args.ray_actors,
                "cpus_per_actor": args.ray_cpus_per_actor,
                "gpus_per_actor": args.ray_gpus_per_actor,
            }
            run_ray(models, options, source, share, store, category_of, **ray_settings, **common)
        else:
            from .engines import run_local

            run_local(models, options, source, share, store, category_of, num_workers=args.num_workers, **common)
    return ready[0]


def run_batch(args: argparse.Namespace) -> int:
    """Run a batch job with the parsed flags of ``python -m pipeline.batch``; returns the exit code.

    Under ``accelerate launch`` every process runs this: the images still to do are split between them, and the
    main process merges the outputs, scores them and prints the summary.

    Returns:
        0, or 1 when any image could not be read (see ``errors.jsonl``).
    """
    import torch
    from accelerate import PartialState

    from ..machine import machine_info

    # Without a GPU (or with --device cpu, or accelerate's --cpu) the processes of accelerate launch / torchrun
    # share the work over gloo on the CPU; PartialState only does that when told it runs on the CPU.
    on_cpu = args.device == "cpu" or not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU") == "True"
    state = PartialState(cpu=on_cpu)
    if args.engine == "ray" and state.num_processes > 1:
        raise ValueError("--engine ray runs on one driver process; do not start it with accelerate launch")
    device = str(state.device) if args.device == "auto" and state.num_processes > 1 else args.device
    started, clock = time.strftime("%Y-%m-%dT%H:%M:%S%z"), time.perf_counter()
    source, items = list_items(
        args.input,
        images_root=args.images_root,
        split=args.split,
        image_column=args.image_column,
        limit=args.limit,
        exclude=args.output,
    )
    if args.references:  # caption references are scored on Java: say so before the run, not after it
        from .scoring import check_references

        check_references(args.references)
    categories = _category_table(args)
    category_of = None if categories is None else {category["name"]: category["id"] for category in categories}
    options = call_options(args)
    store = OutputStore(args.output, rank=state.process_index)
    run = {"captioner": args.captioner, "segmenter": args.segmenter, "profile": args.profile, "options": options}
    if args.stuff != "none":  # a run without stuff matches the runs written before stuff models existed
        run["stuff"] = args.stuff
    if state.is_main_process:
        store.prepare({**run, "categories": categories})
    state.wait_for_everyone()
    todo = _still_to_do(items, store.finished(), Path(args.output))
    state.wait_for_everyone()  # every process has read the same finished set before any writes more
    ready = _analyse(args, state, device, source, todo, store, category_of, options)
    state.wait_for_everyone()
    if not state.is_main_process:
        return 0
    end = time.perf_counter()
    analysing = end - ready  # from the models' loading to the last process done
    summary = store.merge(
        categories,
        {
            "input": args.input,
            "engine": args.engine,
            "processes": state.num_processes,
            "images_listed": len(items),
            "images_skipped": len(items) - len(todo),
            "images_this_run": len(todo),
            "elapsed_s": round(end - clock, 3),
            "analysis_s": round(analysing, 3),
            "images_per_second": round(len(todo) / analysing, 4) if todo and analysing > 0 else None,
            "models": {"captioner": args.captioner, "segmenter": args.segmenter, "stuff": args.stuff},
            "profile": args.profile,
            "options": options,
            "batch_size": args.batch_size,
            "num_workers": args.num_workers,
            "machine": machine_info(),
            "started": started,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )
    if args.references:
        from .scoring import score

        records = [record for record in store.records() if "error" not in record]
        metrics = score(args.references, records, store.panoptic)
        (Path(args.output) / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    _report(summary, args, metrics if args.references else None)
    return 1 if summary["counts"]["errors"] else 0


def _report(summary: dict[str, Any], args: argparse.Namespace, metrics: dict[str, Any] | None) -> None:
    counts = summary["counts"]
    rate = summary["images_per_second"]
    print(
        f"{counts['images']} images captioned and segmented ({summary['images_this_run']} this run"
        + (f", {rate:.2f} images/s" if rate else "")
        + f", {summary['images_skipped']} already done), {counts['instances']} instances, "
        f"{counts['errors']} errors -> {args.output}"
    )
    for kind, scores in (metrics or {}).items():
        shown = ", ".join(f"{key} {value:.4f}" for key, value in scores.items() if isinstance(value, float))
        print(f"{kind}: {shown}")
    if counts["errors"]:
        with contextlib.suppress(OSError):
            first = (Path(args.output) / "errors.jsonl").read_text(encoding="utf-8").splitlines()[0]
            print(f"errors in {Path(args.output) / 'errors.jsonl'}, e.g. {json.loads(first)['file']}", file=sys.stderr)
