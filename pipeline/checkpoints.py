"""The segmenter checkpoint format: a directory that ``train/segment.py`` writes and ``load_segmenter`` reads.

A checkpoint directory holds ``segmenter.json`` (the format tag, the architecture of
:data:`pipeline.builders.ARCHITECTURES`, the backbone, the category names by class index and the ``MaskRCNN``
settings it was trained with) and ``model.safetensors`` (or a ``model.pt`` state dict). Saved files are readable by
everyone the umask allows, like every other output (safetensors itself writes them owner-only).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .builders import ARCHITECTURES, build_maskrcnn
from .hub import ModelUnavailableError

SEGMENTER_CONFIG = "segmenter.json"
SEGMENTER_FORMAT = "maskrcnn-checkpoint/1"


def make_readable(path: str | os.PathLike) -> None:
    """Give a file written owner-only (``0600``, as safetensors and ``tempfile`` do) the umask's usual mode."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def save_segmenter(
    model: torch.nn.Module,
    directory: str | os.PathLike,
    *,
    categories: list[str],
    architecture: str,
    backbone: str | None = None,
    model_kwargs: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Write a segmenter checkpoint directory that :func:`pipeline.load_segmenter` reads.

    Args:
        model (torch.nn.Module): the Mask R-CNN (unwrapped from DDP/accelerate).
        directory (str | os.PathLike): created if missing.
        categories (list[str]): label names by class index, index 0 the background.
        architecture (str): one of :data:`pipeline.builders.ARCHITECTURES`.
        backbone (str | None): the ResNet name for ``maskrcnn_fpn``.
        model_kwargs (dict | None): the ``MaskRCNN`` settings it was trained with (``min_size``, ...).
        extra (dict | None): anything else worth keeping (training step, metrics).

    Returns:
        Path: the directory.
    """
    from safetensors.torch import save_file

    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "format": SEGMENTER_FORMAT,
        "architecture": architecture,
        "backbone": backbone,
        "num_classes": len(categories),
        "categories": list(categories),
        "model_kwargs": dict(model_kwargs or {}),
        **(extra or {}),
    }
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"))
    make_readable(out / "model.safetensors")
    (out / SEGMENTER_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    return out


def load_segmenter_checkpoint(
    directory: str | os.PathLike, *, model_kwargs: dict | None = None, name: str | None = None
) -> tuple[torch.nn.Module, list[str]]:
    """Rebuild a Mask R-CNN from a checkpoint directory written by :func:`save_segmenter`.

    ``model.safetensors`` is preferred; a ``model.pt`` state dict is read with ``torch.load(weights_only=True)``.

    Returns:
        tuple ``(model, categories)``.

    Raises:
        ModelUnavailableError: the directory holds no checkpoint.
        ValueError: a checkpoint of another format.
    """
    root = Path(directory)
    label = f"segmenter {name or str(root)!r}"
    config_path = root / SEGMENTER_CONFIG
    if not config_path.is_file():
        raise ModelUnavailableError(
            f"{label}: {config_path} is missing; a segmenter directory is written by train/segment.py "
            "(pipeline.checkpoints.save_segmenter)",
            public=f"{label} is not installed on this server; choose another segmenter",
        )
    config = json.loads(config_path.read_text())
    if config.get("format") != SEGMENTER_FORMAT:
        raise ValueError(f"{label}: format must be {SEGMENTER_FORMAT!r}, got {config.get('format')!r}")
    settings = {**config.get("model_kwargs", {}), **(model_kwargs or {})}
    model = build_maskrcnn(
        config["architecture"],
        num_classes=int(config["num_classes"]),
        backbone=config.get("backbone") or "resnet18",
        **settings,
    )
    if (root / "model.safetensors").is_file():
        from safetensors.torch import load_file

        state = load_file(str(root / "model.safetensors"))
    elif (root / "model.pt").is_file():
        state = torch.load(root / "model.pt", map_location="cpu", weights_only=True)
    else:
        raise ModelUnavailableError(
            f"{label}: no model.safetensors or model.pt in {root}",
            public=f"{label} is not installed on this server; choose another segmenter",
        )
    model.load_state_dict(state)
    return model, list(config["categories"])
