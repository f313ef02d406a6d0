"""The named model choices and how each one loads.

Captioners load with transformers from a hub id (``Salesforce/blip-image-captioning-base``) or a local
``save_pretrained`` directory. Segmenters load from a torchvision weights enum (COCO weights, label names from
``weights.meta["categories"]``) or from a local fine-tuned checkpoint directory written by :func:`save_segmenter`
(``segmenter.json`` with the architecture and category names, plus ``model.safetensors``).

Any name that is not in the catalog is taken as a local directory or, for captioners, a hub id. Operators add their
own fine-tuned models with :func:`register_model` or the ``PIPELINE_FINETUNED_CAPTIONER`` and
``PIPELINE_FINETUNED_SEGMENTER`` environment variables (registered as ``finetuned``).

A model that is not on this machine fails within seconds, never after minutes of download retries: with
``HF_HUB_OFFLINE=1`` at once, otherwise after a short reachability check of the download host.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from .base import resolve_device
from .builders import ARCHITECTURES, build_maskrcnn
from .captioning import CaptionPipeline
from .segmentation import SegmentationPipeline
from .speed import SpeedProfile, apply_captioner_profile, apply_segmenter_profile

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SEGMENTER_CONFIG = "segmenter.json"
SEGMENTER_FORMAT = "maskrcnn-checkpoint/1"


class ModelUnavailableError(RuntimeError):
    """A catalog model cannot be loaded on this machine; the message names it and says what to do."""


@dataclass(frozen=True)
class ModelSpec:
    """One named choice.

    Attributes:
        name: the catalog name shown in the UI and accepted by the API and CLI.
        kind: ``"captioner"`` or ``"segmenter"``.
        source: a hub id, a local directory, or ``torchvision:<builder>`` for torchvision's COCO weights.
        description: one line for people choosing: quality and speed.
    """

    name: str
    kind: str
    source: str
    description: str


_BUILTIN = [
    ModelSpec(
        "blip-base",
        "captioner",
        "Salesforce/blip-image-captioning-base",
        "BLIP base (COCO captions, 224M parameters): good captions, about 2 s per image on 2 CPU cores",
    ),
    ModelSpec(
        "blip-large",
        "captioner",
        "Salesforce/blip-image-captioning-large",
        "BLIP large (470M parameters): the most detailed captions, about 3x slower than base",
    ),
    ModelSpec(
        "shapes",
        "captioner",
        str(WEIGHTS_DIR / "shapes-captioner"),
        "tiny BLIP trained on the synthetic shapes data set: offline demo, describes coloured shapes only",
    ),
    ModelSpec(
        "maskrcnn-v2",
        "segmenter",
        "torchvision:maskrcnn_resnet50_fpn_v2",
        "Mask R-CNN v2 (COCO, 80 classes, box 47.4 / mask 41.8 AP): the most accurate, slowest",
    ),
    ModelSpec(
        "maskrcnn-v1",
        "segmenter",
        "torchvision:maskrcnn_resnet50_fpn",
        "Mask R-CNN v1 (COCO, 80 classes, box 37.9 / mask 34.6 AP): 2.5x fewer FLOPs than v2",
    ),
    ModelSpec(
        "shapes",
        "segmenter",
        str(WEIGHTS_DIR / "shapes-segmenter"),
        "small Mask R-CNN trained on the synthetic shapes data set: offline demo, finds circles, squares, triangles",
    ),
]
_REGISTRY: dict[tuple[str, str], ModelSpec] = {(spec.kind, spec.name): spec for spec in _BUILTIN}
_KINDS = ("captioner", "segmenter")


def register_model(name: str, kind: str, source: str, description: str = "") -> ModelSpec:
    """Add (or replace) a named model, e.g. a fine-tuned BLIP directory from ``train/caption.py``.

    Args:
        name (str): the catalog name.
        kind (str): ``"captioner"`` or ``"segmenter"``.
        source (str): hub id or local directory (captioners), local checkpoint directory (segmenters).
        description (str, default ""): one line for the UI.
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    spec = ModelSpec(name, kind, str(source), description or f"fine-tuned {kind} from {source}")
    _REGISTRY[(kind, name)] = spec
    return spec


def _register_from_environment() -> None:
    for kind, variable in (
        ("captioner", "PIPELINE_FINETUNED_CAPTIONER"),
        ("segmenter", "PIPELINE_FINETUNED_SEGMENTER"),
    ):
        if os.environ.get(variable):
            register_model("finetuned", kind, os.environ[variable], f"fine-tuned {kind} set by {variable}")


_register_from_environment()


def list_models(kind: str) -> list[ModelSpec]:
    """The catalog's models of one kind, in display order."""
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    return [spec for (spec_kind, _), spec in _REGISTRY.items() if spec_kind == kind]


def get_spec(name_or_path: str, kind: str) -> ModelSpec:
    """The catalog entry for a name, or an ad-hoc entry for a local directory (or, for captioners, a hub id)."""
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    if (kind, name_or_path) in _REGISTRY:
        return _REGISTRY[(kind, name_or_path)]
    if Path(name_or_path).is_dir() or (kind == "captioner" and _looks_like_hub_id(name_or_path)):
        return ModelSpec(str(name_or_path), kind, str(name_or_path), f"{kind} from {name_or_path}")
    names = [spec.name for spec in list_models(kind)]
    accepted = "a local directory or a hub id" if kind == "captioner" else "a local checkpoint directory"
    raise ValueError(f"unknown {kind} {name_or_path!r}: choose one of {names}, or give {accepted}")


def availability(name_or_path: str, kind: str) -> tuple[bool, str]:
    """Whether a model can be loaded here without a download, and if not why; never touches the network.

    Returns:
        tuple ``(available, reason)``; ``reason`` is empty when available.
    """
    try:
        spec = get_spec(name_or_path, kind)
    except ValueError as error:
        return False, str(error)
    if spec.source.startswith("torchvision:"):
        path = _torchvision_checkpoint(spec.source)
        return (True, "") if path.is_file() else (False, f"weights not downloaded ({path} is missing)")
    if Path(spec.source).is_dir() or Path(spec.source).is_absolute():
        return (True, "") if Path(spec.source).is_dir() else (False, f"directory {spec.source} is missing")
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(spec.source, "config.json")
    return (True, "") if isinstance(cached, str) else (False, f"{spec.source} is not in the Hugging Face cache")


# -- captioners --------------------------------------------------------------------------------------------------


def load_captioner(
    name_or_path: str = "blip-base",
    *,
    device: str = "auto",
    dtype: Any = None,
    profile: str | SpeedProfile = "full",
    **kwargs: Any,
):
    """Load a captioner by catalog name, local directory or hub id.

    Args:
        name_or_path (str, default "blip-base"): see :func:`list_models` (``"captioner"``).
        device (str, default "auto"): ``"cpu"``, ``"cuda"`` or ``"auto"``.
        dtype (torch.dtype | None, default None): e.g. ``torch.float16`` on a GPU; None keeps float32.
        profile (str | SpeedProfile, default "full"): ``"full"`` or ``"fast"`` (int8 text decoder and, on CPUs with
            native bfloat16, a bfloat16 vision encoder), see :mod:`pipeline.speed`.
        **kwargs: :class:`~pipeline.captioning.CaptionPipeline` options (``batch_size``, ``max_pixels``).

    Returns:
        CaptionPipeline

    Raises:
        ValueError: an unknown name.
        ModelUnavailableError: the model is not on this machine and cannot be downloaded now.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    spec = get_spec(name_or_path, "captioner")
    local = Path(spec.source).is_dir()
    if not local and Path(spec.source).is_absolute():
        raise ModelUnavailableError(
            f"captioner {spec.name!r}: its directory {spec.source} does not exist; "
            "train it with the command in train/README or README.md, or pass another captioner"
        )
    options: dict[str, Any] = {}
    if not local:
        options["local_files_only"] = _prepare_hub_download(spec)
    try:
        processor = AutoProcessor.from_pretrained(spec.source, **options)
        model = AutoModelForImageTextToText.from_pretrained(spec.source, dtype=dtype or torch.float32, **options)
    except OSError as error:
        raise ModelUnavailableError(
            f"captioner {spec.name!r} could not be loaded from {spec.source}: {error}"
        ) from None
    model = apply_captioner_profile(model, profile, device=resolve_device(device))
    return CaptionPipeline(model, processor, name=spec.name, device=device, **kwargs)


def _looks_like_hub_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "/", "~"))


def _offline() -> bool:
    from huggingface_hub import is_offline_mode

    flag = os.environ.get("HF_HUB_OFFLINE", "") or os.environ.get("TRANSFORMERS_OFFLINE", "")
    return is_offline_mode() or flag.upper() in ("1", "ON", "YES", "TRUE")


def _prepare_hub_download(spec: ModelSpec) -> bool:
    """Return ``local_files_only`` for a hub model, or fail fast when it is neither cached nor downloadable."""
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(spec.source, "config.json"), str):
        return True
    advice = (
        f"download it where there is network (`hf download {spec.source}`) and copy the Hugging Face cache here, "
        "or pass a local directory, or choose the offline 'shapes' model"
    )
    if _offline():
        raise ModelUnavailableError(
            f"captioner {spec.name!r} ({spec.source}) is not in the local Hugging Face cache and HF_HUB_OFFLINE "
            f"is set: {advice}"
        )
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    if not _reachable(host):
        raise ModelUnavailableError(
            f"captioner {spec.name!r} ({spec.source}) is not in the local Hugging Face cache and {host} cannot be "
            f"reached: {advice}"
        )
    return False


def _reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
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


# -- segmenters --------------------------------------------------------------------------------------------------


def load_segmenter(
    name_or_path: str = "maskrcnn-v2",
    *,
    device: str = "auto",
    model_kwargs: dict | None = None,
    profile: str | SpeedProfile = "full",
    **kwargs,
):
    """Load a segmenter by catalog name or fine-tuned checkpoint directory.

    Args:
        name_or_path (str, default "maskrcnn-v2"): see :func:`list_models` (``"segmenter"``).
        device (str, default "auto"): ``"cpu"``, ``"cuda"`` or ``"auto"``.
        model_kwargs (dict | None, default None): ``MaskRCNN`` inference settings that override the checkpoint's,
            e.g. ``{"min_size": 512, "rpn_post_nms_top_n_test": 300}``.
        profile (str | SpeedProfile, default "full"): ``"full"`` keeps the model's settings; ``"fast"`` caps its input
            size and region proposals, see :mod:`pipeline.speed`; ``model_kwargs`` win over the profile.
        **kwargs: :class:`~pipeline.segmentation.SegmentationPipeline` options (``batch_size``, ``max_pixels``).

    Returns:
        SegmentationPipeline

    Raises:
        ValueError: an unknown name, or a checkpoint of an unknown format.
        ModelUnavailableError: the weights are not on this machine and cannot be downloaded now.
    """
    spec = get_spec(name_or_path, "segmenter")
    if spec.source.startswith("torchvision:"):
        model, categories = _load_torchvision_segmenter(spec, model_kwargs or {})
    else:
        model, categories = load_segmenter_checkpoint(spec.source, model_kwargs=model_kwargs, name=spec.name)
    model = apply_segmenter_profile(model, profile, keep=tuple(model_kwargs or {}), device=resolve_device(device))
    return SegmentationPipeline(model, categories, name=spec.name, device=device, **kwargs)


def _torchvision_weights(source: str):
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_V2_Weights, MaskRCNN_ResNet50_FPN_Weights

    builder = source.split(":", 1)[1]
    weights = {
        "maskrcnn_resnet50_fpn_v2": MaskRCNN_ResNet50_FPN_V2_Weights.DEFAULT,
        "maskrcnn_resnet50_fpn": MaskRCNN_ResNet50_FPN_Weights.DEFAULT,
    }[builder]
    return builder, weights


def _torchvision_checkpoint(source: str) -> Path:
    """Where torchvision keeps the downloaded weights file of a ``torchvision:<builder>`` source."""
    _, weights = _torchvision_weights(source)
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def _load_torchvision_segmenter(spec: ModelSpec, model_kwargs: dict) -> tuple[torch.nn.Module, list[str]]:
    from torchvision.models import detection

    builder, weights = _torchvision_weights(spec.source)
    checkpoint = _torchvision_checkpoint(spec.source)
    if not checkpoint.is_file():
        host = urlparse(weights.url).hostname or ""
        advice = f"download {weights.url} where there is network and put it at {checkpoint}, or choose 'shapes'"
        if _offline():
            raise ModelUnavailableError(
                f"segmenter {spec.name!r}: its weights are not on this machine and HF_HUB_OFFLINE is set: {advice}"
            )
        if not _reachable(host):
            raise ModelUnavailableError(
                f"segmenter {spec.name!r}: its weights are not on this machine and {host} cannot be reached: {advice}"
            )
    model = getattr(detection, builder)(weights=weights, weights_backbone=None, **model_kwargs)
    return model, list(weights.meta["categories"])


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
    """Write a segmenter checkpoint directory that :func:`load_segmenter` reads.

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
    (out / SEGMENTER_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    return out


def load_segmenter_checkpoint(
    directory: str | os.PathLike, *, model_kwargs: dict | None = None, name: str | None = None
) -> tuple[torch.nn.Module, list[str]]:
    """Rebuild a Mask R-CNN from a checkpoint directory written by :func:`save_segmenter`.

    ``model.safetensors`` is preferred; a ``model.pt`` state dict is read with ``torch.load(weights_only=True)``.

    Returns:
        tuple ``(model, categories)``.
    """
    root = Path(directory)
    label = name or str(root)
    config_path = root / SEGMENTER_CONFIG
    if not config_path.is_file():
        raise ModelUnavailableError(
            f"segmenter {label!r}: {config_path} is missing; a segmenter directory is written by train/segment.py "
            "(pipeline.catalog.save_segmenter)"
        )
    config = json.loads(config_path.read_text())
    if config.get("format") != SEGMENTER_FORMAT:
        raise ValueError(f"segmenter {label!r}: format must be {SEGMENTER_FORMAT!r}, got {config.get('format')!r}")
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
        raise ModelUnavailableError(f"segmenter {label!r}: no model.safetensors or model.pt in {root}")
    model.load_state_dict(state)
    return model, list(config["categories"])
