"""Shared by both training scripts: start-up, the training loop, checkpoints and resuming, the schedule, the loss
check, and the final save with the record of the run."""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import re
import shlex
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from pipeline.model_card import CardFacts, write_model_card

from .hub import add_hub_arguments, check_hub_arguments, push_model, ready_to_push

CHECKPOINTS = "checkpoints"
PROGRESS = "progress.json"
SCHEDULES = ("cosine", "linear", "constant_with_warmup")
_STEP_DIR = re.compile(r"^step_(\d+)$")
#: Folder names that say which part of a data set a folder is, not which data set: the card names the one above.
_PART_NAMES = {"train", "training", "val", "valid", "validation", "test", "images", "annotations", "train2017"}


def start_run(args: Any) -> tuple[Any, Path]:
    """What both scripts do first: the CPU threads, the output folder, the ``Accelerator`` and the seed.

    Returns:
        tuple ``(accelerator, output_dir)``.

    With ``--push_to_hub``, the Hub is checked first (offline, no token, token refused: the run stops in seconds
    with what to do) and the repository id kept in ``args.hub_repo_id``.
    """
    args.hub_repo_id = ready_to_push(args) if args.push_to_hub else None
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    accelerator = build_accelerator(args, output_dir)
    from accelerate.utils import set_seed

    set_seed(args.seed)
    return accelerator, output_dir


def finish_run(
    accelerator: Any,
    args: Any,
    model: torch.nn.Module,
    progress: dict[str, Any],
    metrics: dict[str, float],
    *,
    save: Callable[[torch.nn.Module], None],
    plotted: Sequence[str],
    card: dict[str, Any],
) -> None:
    """What both scripts do last: on the main process, the final model (a CPU copy, float16 with
    ``--save_float16``) handed to ``save``, with its model card ``README.md``, ``history.json``, ``metrics.json``
    and ``history.png`` beside it in ``--output_dir``; then, with ``--push_to_hub``, the folder (less the resumable
    states) goes to the Hub; then the trackers end.

    Args:
        save (Callable): writes the final model in the format its loader reads (``save_pretrained``,
            :func:`pipeline.checkpoints.save_segmenter`).
        plotted (Sequence[str]): the metrics drawn by epoch in ``history.png``.
        card (dict): what the card says that differs by script: ``kind``, ``base_model``, ``data`` (Markdown
            lines), ``evaluated_on``, optionally ``dataset`` and ``extra_tags``
            (:class:`pipeline.model_card.CardFacts`); the figures, steps, command and licence come from the run.
    """
    if accelerator.is_main_process:
        final = copy.deepcopy(accelerator.unwrap_model(model)).cpu()
        save(final.half() if args.save_float16 else final)
        output_dir = Path(args.output_dir)
        facts = {**card, "dataset": args.dataset_name} if args.dataset_name else card
        write_model_card(
            output_dir,
            CardFacts(**facts, metrics=metrics, command=args.command, steps=progress["step"], license=args.license),
        )
        write_json(output_dir / "history.json", progress["history"])
        write_json(output_dir / "metrics.json", metrics)
        plot_history(progress["history"], output_dir / "history.png", tuple(plotted))
        if args.push_to_hub:
            url = push_model(output_dir, args.hub_repo_id, private=args.hub_private, command=args.command)
            accelerator.print(f"pushed the model and its card to {url}")
    accelerator.end_training()


def command_line(module: str, argv: Sequence[str] | None) -> str:
    """The command that ran this training, for its model card (``python -m train.caption ...``).

    >>> command_line("train.caption", ["--output_dir", "runs/my model"])
    "python -m train.caption --output_dir 'runs/my model'"
    """
    return shlex.join(["python", "-m", module, *(sys.argv[1:] if argv is None else argv)])


def dataset_name(folder: str | os.PathLike) -> str:
    """The data set's name for the card: the folder's own, or its parent's when the folder is a part of one.

    >>> dataset_name("data/shapes/train"), dataset_name("coco/annotations"), dataset_name("flickr8k")
    ('shapes', 'coco', 'flickr8k')
    """
    path = Path(folder).resolve()
    while path.name.lower() in _PART_NAMES and path.parent != path:
        path = path.parent
    return path.name or "local data"


def build_accelerator(args: Any, project_dir: str | os.PathLike) -> Any:
    """An ``Accelerator`` from the common flags (``--cpu``, ``--mixed_precision``, ``--gradient_accumulation_steps``).

    A seedable sampler makes each epoch's order a function of ``(seed, epoch)``: a resumed run sees the same batches.
    """
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration

    return Accelerator(
        cpu=args.cpu,
        mixed_precision=args.mixed_precision,  # None: take accelerate launch's setting
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
        project_config=ProjectConfiguration(project_dir=str(project_dir)),
        log_with=args.report_to,
    )


def add_common_arguments(parser: Any) -> None:
    """The flags both scripts take: optimisation, schedule, checkpoints, precision, threads, the Hub and the card."""
    parser.add_argument("--output_dir", required=True, help="where checkpoints, history, plot and the model go")
    parser.add_argument("--num_train_epochs", type=int, default=3, help="epochs (default 3)")
    parser.add_argument(
        "--max_train_steps", type=int, default=None, help="stop after this many optimizer steps (smoke runs)"
    )
    parser.add_argument("--per_device_batch_size", type=int, default=8, help="images per device per step (default 8)")
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1, help="batches per optimizer step")
    parser.add_argument("--learning_rate", type=float, default=5e-5, help="peak AdamW learning rate")
    parser.add_argument("--weight_decay", type=float, default=0.01, help="AdamW weight decay (default 0.01)")
    parser.add_argument("--lr_scheduler", default="cosine", choices=SCHEDULES, help="decay after warm-up")
    parser.add_argument("--warmup_steps", type=int, default=0, help="linear warm-up optimizer steps (default 0)")
    parser.add_argument("--max_grad_norm", type=float, default=1.0, help="gradient clipping norm; 0 disables it")
    parser.add_argument(
        "--mixed_precision",
        default=None,
        choices=("no", "fp16", "bf16"),
        help="autocast precision; default: accelerate launch's setting, else no",
    )
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is visible")
    parser.add_argument("--seed", type=int, default=0, help="random seed of weights, order and augmentation")
    parser.add_argument("--num_workers", type=int, default=0, help="data loader worker processes (default 0)")
    parser.add_argument("--torch_threads", type=int, default=None, help="torch.set_num_threads on the CPU")
    parser.add_argument("--save_float16", action="store_true", help="store the final weights as float16 (half size)")
    parser.add_argument(
        "--checkpointing_steps",
        type=int,
        default=None,
        help="save a resumable state every N optimizer steps (default: at the end of every epoch)",
    )
    parser.add_argument("--checkpoints_total_limit", type=int, default=2, help="keep the newest N states (default 2)")
    parser.add_argument(
        "--resume_from_checkpoint",
        default=None,
        help="'latest' (the newest state in <output_dir>/checkpoints; a first run with none starts from step 0) or "
        "the path of a saved state",
    )
    parser.add_argument("--logging_steps", type=int, default=10, help="record the loss every N steps (default 10)")
    parser.add_argument(
        "--report_to", default=None, help="accelerate tracker (tensorboard, wandb, ...); default: none"
    )
    add_hub_arguments(parser)


def check_common_arguments(parser: Any, args: Any) -> None:
    """Sanity checks of the common flags; ``parser.error`` names the bad value."""
    positive = ("num_train_epochs", "per_device_batch_size", "gradient_accumulation_steps", "logging_steps")
    for name in positive:
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    for name in ("max_train_steps", "checkpointing_steps", "torch_threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if not args.learning_rate > 0:
        parser.error(f"--learning_rate must be positive, got {args.learning_rate}")
    if args.warmup_steps < 0 or args.weight_decay < 0 or args.max_grad_norm < 0:
        parser.error("--warmup_steps, --weight_decay and --max_grad_norm must not be negative")
    if args.checkpoints_total_limit < 1:
        parser.error(f"--checkpoints_total_limit must be at least 1, got {args.checkpoints_total_limit}")
    check_hub_arguments(parser, args)


def build_scheduler(optimizer: torch.optim.Optimizer, args: Any, max_train_steps: int, num_processes: int) -> Any:
    """Warm-up then cosine or linear decay over ``max_train_steps`` optimizer steps.

    The scheduler accelerate prepares steps once per process at every optimizer step, hence the factor.
    """
    from transformers import get_scheduler

    return get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.warmup_steps * num_processes,
        num_training_steps=max_train_steps * num_processes,
    )


def resolve_checkpoint(output_dir: str | os.PathLike, resume: str) -> Path | None:
    """The state directory that ``--resume_from_checkpoint`` names: ``"latest"`` or a path.

    ``"latest"`` with no saved state yet (a first run) gives None: the run starts from step 0, as accelerate's
    examples do, so that one command line serves the first run and every restart. A path must be a saved state.
    """
    if resume == "latest":
        states = _saved_states(Path(output_dir))
        return states[-1] if states else None
    path = Path(resume)
    if not (path / PROGRESS).is_file():
        raise ValueError(f"--resume_from_checkpoint {resume!r} is not a state saved by this script (no {PROGRESS})")
    return path


def _saved_states(output_dir: Path) -> list[Path]:
    root = output_dir / CHECKPOINTS
    found = [p for p in root.glob("step_*") if _STEP_DIR.match(p.name) and (p / PROGRESS).is_file()]
    return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))


def save_checkpoint(accelerator: Any, output_dir: str | os.PathLike, progress: dict[str, Any], limit: int) -> Path:
    """``accelerator.save_state`` to ``<output_dir>/checkpoints/step_<N>`` with the progress and history.

    Args:
        progress (dict): at least ``"step"``; written as ``progress.json`` last, so a state without it is incomplete.
        limit (int): older states beyond the newest ``limit`` are deleted.
    """
    path = Path(output_dir) / CHECKPOINTS / f"step_{progress['step']}"
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        (path / PROGRESS).write_text(json.dumps(progress, indent=1))
        for old in _saved_states(Path(output_dir))[:-limit]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return path


def load_checkpoint(accelerator: Any, path: Path) -> dict[str, Any]:
    """Restore a state saved by :func:`save_checkpoint` (model, optimizer, scheduler, RNGs); returns its progress."""
    accelerator.load_state(str(path))
    return json.loads((path / PROGRESS).read_text())


def check_finite(loss: float, step: int, output_dir: str | os.PathLike) -> None:
    """Stop with a clear message on a NaN or infinite loss instead of training on garbage; say what was saved."""
    if math.isfinite(loss):
        return
    states = _saved_states(Path(output_dir))
    if states:
        saved = (
            f"the newest saved state is {states[-1]} (step {_STEP_DIR.match(states[-1].name).group(1)}): "
            "resume from it with --resume_from_checkpoint latest"
        )
    else:
        saved = "no state was saved before this step (states are saved every --checkpointing_steps, else per epoch)"
    raise FloatingPointError(
        f"the training loss is {loss} at optimizer step {step}: stopping. Lower --learning_rate, raise "
        f"--warmup_steps, or use --mixed_precision bf16 instead of fp16; {saved}"
    )


def train_one_epoch(
    model: torch.nn.Module,
    loader: Any,
    compute_loss: Callable[[torch.nn.Module, Any], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    accelerator: Any,
    args: Any,
    progress: dict[str, Any],
    max_train_steps: int,
    bar: Any,
) -> None:
    """One pass over ``loader`` (already cut to resume), updating ``progress["step"]`` and its loss history.

    ``compute_loss(model, batch)`` returns the scalar loss of one batch; everything else (accumulation, clipping,
    the schedule, the non-finite stop, logging and checkpoints) is the same for both training scripts.
    """
    model.train()
    running: list[float] = []
    for batch in loader:
        with accelerator.accumulate(model):
            loss = compute_loss(model, batch)
            accelerator.backward(loss)
            if accelerator.sync_gradients and args.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        running.append(loss.item())
        if not accelerator.sync_gradients:
            continue
        progress["step"] += 1
        check_finite(running[-1], progress["step"], args.output_dir)
        bar.update(1)
        if progress["step"] % args.logging_steps == 0 or progress["step"] == max_train_steps:
            row = {"step": progress["step"], "loss": float(np.mean(running)), "lr": scheduler.get_last_lr()[0]}
            progress["history"]["steps"].append(row)
            bar.set_postfix(loss=f"{row['loss']:.3f}")
            accelerator.log({"train_loss": row["loss"], "lr": row["lr"]}, step=progress["step"])
            running = []
        if args.checkpointing_steps and progress["step"] % args.checkpointing_steps == 0:
            save_checkpoint(accelerator, args.output_dir, progress, args.checkpoints_total_limit)
        if progress["step"] >= max_train_steps:
            break


def fit(
    accelerator: Any,
    args: Any,
    output_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    train_loader: Any,
    val_loader: Any | None,
    train_set: Any,
    *,
    compute_loss: Callable[[torch.nn.Module, Any], torch.Tensor],
    evaluate: Callable[[torch.nn.Module, Any], dict[str, float]],
    tracker: str,
    describe: Callable[[int], str],
) -> tuple[torch.nn.Module, dict[str, Any], dict[str, float]]:
    """Prepare, resume and train for the run's steps, evaluating and checkpointing every epoch.

    Both scripts' ``main()`` build their data, model and optimizer, then hand over here.

    Args:
        accelerator (accelerate.Accelerator): from :func:`build_accelerator`.
        args (argparse.Namespace): the parsed common arguments.
        output_dir (Path): where checkpoints go.
        model, optimizer, train_loader: not yet prepared.
        val_loader (DataLoader | None): not yet prepared; None skips evaluation.
        train_set (Dataset): has ``set_epoch(epoch)`` (per-epoch augmentation seeds).
        compute_loss (Callable): ``compute_loss(model, batch)`` -> the scalar loss of one batch.
        evaluate (Callable): ``evaluate(model, val_loader)`` -> metrics.
        tracker (str): the experiment tracker's project name.
        describe (Callable): ``describe(max_train_steps)`` -> the one-line summary printed before training.

    Returns:
        tuple ``(model, progress, metrics)``: the prepared model, ``{"step", "history"}`` and the last metrics.
    """
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    if val_loader is not None:
        val_loader = accelerator.prepare(val_loader)
    steps_per_epoch = math.ceil(len(train_loader) / args.gradient_accumulation_steps)
    max_train_steps = args.max_train_steps or args.num_train_epochs * steps_per_epoch
    num_epochs = math.ceil(max_train_steps / steps_per_epoch)
    scheduler = accelerator.prepare(build_scheduler(optimizer, args, max_train_steps, accelerator.num_processes))
    if args.report_to:
        accelerator.init_trackers(tracker, config={k: str(v) for k, v in vars(args).items()})

    progress: dict[str, Any] = {"step": 0, "history": {"steps": [], "epochs": []}}
    state = resolve_checkpoint(output_dir, args.resume_from_checkpoint) if args.resume_from_checkpoint else None
    if state is not None:
        progress = load_checkpoint(accelerator, state)
        accelerator.print(f"resumed from {state} at step {progress['step']}")
    elif args.resume_from_checkpoint:
        accelerator.print(
            f"--resume_from_checkpoint latest: no saved state in {output_dir / CHECKPOINTS} yet, so "
            "this run starts from step 0"
        )

    accelerator.print(describe(max_train_steps))
    bar = tqdm(total=max_train_steps, initial=progress["step"], disable=not accelerator.is_local_main_process)
    metrics: dict[str, float] = {}
    for epoch in range(progress["step"] // steps_per_epoch, num_epochs):
        if progress["step"] >= max_train_steps:
            break
        train_loader.set_epoch(epoch)
        train_set.set_epoch(epoch)
        done_in_epoch = progress["step"] - epoch * steps_per_epoch
        loader = accelerator.skip_first_batches(train_loader, done_in_epoch * args.gradient_accumulation_steps)
        train_one_epoch(
            model, loader, compute_loss, optimizer, scheduler, accelerator, args, progress, max_train_steps, bar
        )
        if val_loader is not None:
            metrics = evaluate(model, val_loader)
            progress["history"]["epochs"].append({"epoch": epoch + 1, "step": progress["step"], **metrics})
            accelerator.log(metrics, step=progress["step"])
            accelerator.print(f"epoch {epoch + 1}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        if not args.checkpointing_steps:
            save_checkpoint(accelerator, output_dir, progress, args.checkpoints_total_limit)
    bar.close()
    return model, progress, metrics


def plot_history(
    history: dict[str, list[dict[str, float]]], path: str | os.PathLike, metrics: tuple[str, ...]
) -> Path:
    """Save a PNG: the training loss by step on the left, the evaluation metrics by epoch on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    steps = history.get("steps", [])
    left.plot([row["step"] for row in steps], [row["loss"] for row in steps], color="tab:blue")
    left.set(xlabel="optimizer step", ylabel="training loss", title="loss")
    left.grid(alpha=0.3)
    epochs = history.get("epochs", [])
    for name in metrics:
        points = [(row["epoch"], row[name]) for row in epochs if name in row]
        if points:
            right.plot(*zip(*points), marker="o", label=name)
    right.set(xlabel="epoch", title="evaluation")
    right.grid(alpha=0.3)
    if epochs:
        right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)


def present_images(names: Sequence[str], images_dir: str | os.PathLike, what: str) -> tuple[list[str], str]:
    """The image names whose files are in ``images_dir``, and a line about the missing ones ("" when none is).

    Checked before training, so that a partly extracted data set costs a line, not a crash hours into a run.

    Raises:
        ValueError: not one of the images is there.
    """
    folder = Path(images_dir)
    present = [name for name in names if (folder / name).is_file()]
    missing = [name for name in names if name not in set(present)] if len(present) < len(names) else []
    if names and not present:
        raise ValueError(f"{what}: none of the {len(names)} images is in {str(folder)!r} (e.g. {names[0]!r})")
    if not missing:
        return present, ""
    shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
    return present, f"{what}: {len(missing)} of {len(names)} images are not in {folder} and are skipped: {shown}"


def write_json(path: str | os.PathLike, content: Any) -> None:
    Path(path).write_text(json.dumps(content, indent=1) + "\n")


@contextlib.contextmanager
def item_random_state(seed: int, epoch: int, index: int) -> Iterator[None]:
    """Seed torch's global RNG from ``(seed, epoch, index)`` inside the block, and restore it afterwards.

    Augmentation then depends on the item and the epoch only, not on how far the global RNG has moved: accelerate's
    data loader reads one batch ahead, so draws made while loading would land on the wrong side of a saved state
    and a resumed run would not repeat the batches it skipped to.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed((seed * 1_000_003 + epoch) * 1_000_003 + index)
        yield


class EpochSeeded:
    """Mixin for data sets that augment: ``set_epoch`` before each epoch, ``random_state(index)`` around each draw."""

    seed: int = 0
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def random_state(self, index: int) -> contextlib.AbstractContextManager:
        return item_random_state(self.seed, self.epoch, index)
