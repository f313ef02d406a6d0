"""What the project's own captioner formats (``attention-lstm``, ``clip-prefix``) share: a directory with
``config.json`` and ``model.safetensors`` beside the processor's files, and the output of a training forward."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import torch

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"


class CaptionOutput(NamedTuple):
    """A training forward's result: the loss (None without labels) and the logits."""

    loss: torch.Tensor | None
    logits: torch.Tensor


def read_model_config(directory: str | Path, family: str) -> dict[str, Any]:
    """The saved ``config.json`` of a ``family`` directory, once both of its files are there.

    Raises:
        OSError: ``config.json`` or ``model.safetensors`` missing (named, with what the directory should hold).
    """
    directory = Path(directory)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (directory / name).is_file():
            raise OSError(f"{directory / name} does not exist: {family} directory holds {name}")
    return json.loads((directory / CONFIG_FILE).read_text())
