"""Where released weights come from, and failing fast when they are not here.

Two sources of released weights: the Hugging Face hub (BLIP and other transformers captioners, read from the
Hugging Face cache) and torchvision's download site (the COCO Mask R-CNN weights, read from
``$TORCH_HOME/hub/checkpoints/`` under the file name of the weights' URL). A model that is not on this machine fails
within seconds, never after minutes of download retries: with ``HF_HUB_OFFLINE=1`` at once, otherwise after a
3-second reachability check of the download host.

Errors carry two messages: ``str(error)`` for the operator (it may name files on this machine) and ``error.public``
for the clients of a served app (the what and the what-to-do, never a path).
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from .env import env_flag


class ModelUnavailableError(RuntimeError):
    """A model cannot be loaded on this machine; the message names it and says what to do.

    Args:
        message (str): for the operator; may name files and folders of this machine.
        public (str | None, default None): the same without any path, for clients of a served app; None when
            ``message`` names none.
    """

    def __init__(self, message: str, *, public: str | None = None):
        super().__init__(message)
        self.public = public if public is not None else message


def offline() -> bool:
    """Whether downloads are switched off (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``)."""
    from huggingface_hub import is_offline_mode

    return is_offline_mode() or env_flag("HF_HUB_OFFLINE") or env_flag("TRANSFORMERS_OFFLINE")


def reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """A TCP connect within ``timeout`` seconds, DNS included (resolution runs in a thread so it cannot hang)."""
    outcome: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome.append(True)
        except OSError:
            outcome.append(False)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    return bool(outcome and outcome[0])


# -- the Hugging Face hub ----------------------------------------------------------------------------------------


def hub_cached(repo_id: str) -> bool:
    """Whether a hub model is in the local Hugging Face cache (its ``config.json`` is)."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def prepare_hub_download(label: str, repo_id: str) -> bool:
    """``local_files_only`` for loading a hub model, or fail fast when it is neither cached nor downloadable.

    Args:
        label (str): how the model is named in messages, e.g. ``"captioner 'blip-base'"``.
        repo_id (str): the hub id.

    Returns:
        bool: True when the model is cached (load it from there), False when it may be downloaded.

    Raises:
        ModelUnavailableError: not cached, and downloads are off or the hub cannot be reached.
    """
    from huggingface_hub import constants

    if hub_cached(repo_id):
        return True
    advice = (
        f"download it where there is network (`hf download {repo_id}`) and copy the Hugging Face cache here, "
        "or choose the offline 'shapes' model"
    )
    why = _why_not_downloadable(urlparse(constants.ENDPOINT).hostname or "huggingface.co")
    if why is None:
        return False
    return _raise(
        f"{label} ({repo_id}) is not in the local Hugging Face cache and {why}: {advice}",
        f"{label} is not installed on this server and cannot be downloaded now; choose another model",
    )


# -- torchvision's COCO weights ------------------------------------------------------------------------------------


def torchvision_weights(builder: str) -> Any:
    """The default (COCO) weights enum member of a torchvision detection builder, e.g. ``maskrcnn_resnet50_fpn_v2``.

    >>> torchvision_weights("maskrcnn_resnet50_fpn").meta["categories"][1]
    'person'
    """
    from torchvision.models import get_model_weights

    try:
        return get_model_weights(builder).DEFAULT
    except ValueError:
        raise ValueError(f"torchvision has no weights for {builder!r}") from None


def torchvision_checkpoint(builder: str) -> Path:
    """Where torchvision keeps the downloaded weights file of a builder's default weights."""
    weights = torchvision_weights(builder)
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def require_torchvision_weights(label: str, builder: str) -> Any:
    """The builder's default weights, after checking within seconds that they are here or can be downloaded.

    Raises:
        ModelUnavailableError: the file is not in ``$TORCH_HOME/hub/checkpoints/`` and downloads are off or the
            download host cannot be reached; the operator's message names the file and where to put it.
    """
    weights = torchvision_weights(builder)
    checkpoint = torchvision_checkpoint(builder)
    if checkpoint.is_file():
        return weights
    why = _why_not_downloadable(urlparse(weights.url).hostname or "")
    if why is None:
        return weights
    return _raise(
        f"{label}: its weights are not on this machine and {why}: download {weights.url} where there is network "
        f"and put it at {checkpoint} (or set TORCH_HOME), or choose the offline 'shapes' model",
        f"{label}: its weights are not installed on this server and cannot be downloaded now; choose another model",
    )


def _why_not_downloadable(host: str) -> str | None:
    """None when a download from ``host`` may be tried now, else why not."""
    if offline():
        return "HF_HUB_OFFLINE is set"
    return None if reachable(host) else f"{host} cannot be reached"


def _raise(message: str, public: str) -> Any:
    raise ModelUnavailableError(message, public=public)
