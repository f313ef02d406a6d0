"""The named model choices and how each one loads.

Captioners load with transformers from a hub id (``Salesforce/blip-image-captioning-base``) or a local
``save_pretrained`` directory, of any caption family (:mod:`pipeline.captioning`: BLIP, GIT, ViT-GPT2 and other
``VisionEncoderDecoderModel`` or ``AutoModelForImageTextToText`` models), or from a directory of the project's own
attention-lstm or clip-prefix captioners (:mod:`pipeline.attention_lstm`, :mod:`pipeline.clip_prefix`). Answerers
(visual question answering, :mod:`pipeline.answering`) load the same way, as
``AutoModelForVisualQuestionAnswering`` (BLIP VQA). Segmenters
load from a torchvision weights enum (COCO weights, label names from ``weights.meta["categories"]``) or from a
fine-tuned checkpoint directory (:mod:`pipeline.checkpoints`). Stuff models (sky, grass, water, ...) are any
transformers ``AutoModelForSemanticSegmentation`` from a hub id or a local directory (:mod:`pipeline.stuff`);
``"none"`` means no stuff model. Where the weights come from, and the fast failure when they are not here, is
:mod:`pipeline.hub`.

Any name that is not in the catalog is taken as a local directory or, for captioners, stuff models and answerers, a
hub id: the library trusts its caller. A served app accepts only the names in its menus (:mod:`pipeline.serve.menus`).
Operators add their own fine-tuned models with :func:`register_model` or the ``PIPELINE_FINETUNED_CAPTIONER``,
``PIPELINE_FINETUNED_SEGMENTER`` and ``PIPELINE_FINETUNED_STUFF`` environment variables (registered as
``finetuned``).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .base import resolve_device
from .captioning import CaptionPipeline, load_caption_model
from .checkpoints import load_segmenter_checkpoint
from .hub import (
    ModelUnavailableError,
    hub_cached,
    prepare_hub_download,
    require_torchvision_weights,
    torchvision_checkpoint,
)
from .kernels import fuse_blip_attention
from .segmentation import SegmentationPipeline
from .speed import SpeedProfile, apply_captioner_profile, apply_segmenter_profile, get_profile
from .stuff import StuffPipeline

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
KINDS = ("captioner", "segmenter", "stuff", "answerer")
#: The kinds that load with transformers, from a directory or a hub id (segmenters load from torchvision or a
#: checkpoint directory only).
HUB_KINDS = ("captioner", "stuff", "answerer")
#: The stuff choice that turns stuff off: the views then hold the segmenter's things only.
NO_STUFF = "none"
#: Held while a model is built and its weights read: transformers 5 builds a model on the "meta" device through
#: process-wide patches, so two models built at once in two threads get each other's meta tensors ("Tensor.item()
#: cannot be called on meta tensors", or weights silently left random). One build at a time, whatever the thread.
MODEL_BUILD_LOCK = threading.RLock()
#: A stuff model's square input side in the fast profiles, when its processor's is larger.
FAST_STUFF_SIDE = 384
#: The models a server starts on when it is not told otherwise: the first of each kind that loads here.
PREFERRED = {
    "captioner": ("blip-base", "shapes"),
    "segmenter": ("maskrcnn-v2", "shapes"),
    "stuff": ("segformer-b0-ade", "shapes"),
    "answerer": ("blip-vqa-base", "shapes"),
}


@dataclass(frozen=True)
class ModelSpec:
    """One named choice.

    Attributes:
        name: the catalog name shown in the UI and accepted by the API and CLI.
        kind: one of :data:`KINDS`.
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
        "BLIP base (COCO captions, 224M parameters): good captions, the fastest BLIP",
    ),
    ModelSpec(
        "blip-large",
        "captioner",
        "Salesforce/blip-image-captioning-large",
        "BLIP large (470M parameters): the most detailed captions, slower than base",
    ),
    ModelSpec(
        "git-base",
        "captioner",
        "microsoft/git-base-coco",
        "GIT base (COCO, 177M parameters, CIDEr 131.4 on COCO Karpathy test by its authors): 224 px input and a "
        "6-layer decoder, lighter than BLIP base",
    ),
    ModelSpec(
        "vit-gpt2",
        "captioner",
        "nlpconnect/vit-gpt2-image-captioning",
        "ViT-GPT2 (ViT-base encoder, GPT-2 decoder, COCO 2017, 239M parameters; its card publishes no scores): "
        "224 px input, a 12-layer decoder, no prompts",
    ),
    ModelSpec(
        "shapes",
        "captioner",
        str(WEIGHTS_DIR / "shapes-captioner"),
        "tiny BLIP trained on the synthetic shapes data set: offline demo, describes coloured shapes only",
    ),
    ModelSpec(
        "shapes-lstm",
        "captioner",
        str(WEIGHTS_DIR / "shapes-lstm"),
        "small CNN + LSTM with soft attention (Show, Attend and Tell) trained on the synthetic shapes data set: "
        "offline demo, describes coloured shapes only; no released checkpoint for photos (train one with "
        "train.caption --architecture attention-lstm)",
    ),
    ModelSpec(
        "shapes-clip-prefix",
        "captioner",
        str(WEIGHTS_DIR / "shapes-clip-prefix"),
        # The menus show what follows the first ": ", so none comes before the part a visitor reads.
        "small CLIP prefix captioner (ClipCap, a CLIP vision encoder, an MLP to a GPT-2 prefix, GPT-2) trained from "
        "scratch on the synthetic shapes data set: offline demo, describes coloured shapes only",
    ),
    ModelSpec(
        "shapes-git",
        "captioner",
        str(WEIGHTS_DIR / "shapes-git"),
        "tiny GIT trained from scratch on the synthetic shapes data set: offline demo of git-base's layout (a CLIP "
        "ViT whose image tokens lead a 3-layer text decoder), describes coloured shapes only",
    ),
    ModelSpec(
        "shapes-vit-gpt2",
        "captioner",
        str(WEIGHTS_DIR / "shapes-vit-gpt2"),
        "tiny ViT-GPT2 trained from scratch on the synthetic shapes data set: offline demo of vit-gpt2's layout (a "
        "ViT encoder, a 3-layer GPT-2 decoder attending to it), describes coloured shapes only",
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
    ModelSpec(
        "segformer-b0-ade",
        "stuff",
        "nvidia/segformer-b0-finetuned-ade-512-512",
        "SegFormer-b0 (ADE20K, 150 classes of which 52 are stuff: sky, grass, water, sea, sand, road, wall, ...; "
        "3.7M parameters, 37.4 mIoU by its authors; NVIDIA's research licence): the stuff around the objects",
    ),
    ModelSpec(
        "shapes",
        "stuff",
        str(WEIGHTS_DIR / "shapes-stuff"),
        "tiny SegFormer trained on the shapes data set's stuff backgrounds: offline demo, finds sky, grass, water, "
        "sand, wall",
    ),
    ModelSpec(
        "blip-vqa-base",
        "answerer",
        "Salesforce/blip-vqa-base",
        "BLIP VQA base (VQAv2, 385M parameters): short answers to questions about a photo (colours, activities)",
    ),
    ModelSpec(
        "shapes",
        "answerer",
        str(WEIGHTS_DIR / "shapes-answerer"),
        "tiny BLIP VQA trained on the synthetic shapes data set: offline demo, answers about coloured shapes only",
    ),
]
_REGISTRY: dict[tuple[str, str], ModelSpec] = {(spec.kind, spec.name): spec for spec in _BUILTIN}


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def register_model(name: str, kind: str, source: str, description: str = "") -> ModelSpec:
    """Add (or replace) a named model, e.g. a fine-tuned BLIP directory from ``train/caption.py``.

    Args:
        name (str): the catalog name.
        kind (str): one of :data:`KINDS`.
        source (str): hub id or local directory (captioners, stuff, answerers), local checkpoint directory
            (segmenters).
        description (str, default ""): one line for the UI.
    """
    _check_kind(kind)
    spec = ModelSpec(name, kind, str(source), description or f"fine-tuned {kind} from {source}")
    _REGISTRY[(kind, name)] = spec
    return spec


def unregister_model(name: str, kind: str) -> None:
    """Remove a named model (a built-in one too); unknown names are ignored."""
    _check_kind(kind)
    _REGISTRY.pop((kind, name), None)


@contextlib.contextmanager
def registered_models(specs: Sequence[ModelSpec]) -> Iterator[list[ModelSpec]]:
    """Register models for the duration of a block; afterwards the catalog is exactly as before.

    >>> with registered_models([ModelSpec("mine", "segmenter", "/models/mine", "my segmenter")]):
    ...     "mine" in [spec.name for spec in list_models("segmenter")]
    True
    >>> "mine" in [spec.name for spec in list_models("segmenter")]
    False
    """
    saved = dict(_REGISTRY)
    try:
        yield [register_model(spec.name, spec.kind, spec.source, spec.description) for spec in specs]
    finally:
        _REGISTRY.clear()
        _REGISTRY.update(saved)


def _register_from_environment() -> None:
    for kind, variable in (
        ("captioner", "PIPELINE_FINETUNED_CAPTIONER"),
        ("segmenter", "PIPELINE_FINETUNED_SEGMENTER"),
        ("stuff", "PIPELINE_FINETUNED_STUFF"),
    ):
        if os.environ.get(variable):
            register_model("finetuned", kind, os.environ[variable], f"fine-tuned {kind} set by {variable}")


_register_from_environment()


def list_models(kind: str) -> list[ModelSpec]:
    """The catalog's models of one kind, in display order."""
    _check_kind(kind)
    return [spec for (spec_kind, _), spec in _REGISTRY.items() if spec_kind == kind]


def get_spec(name_or_path: str, kind: str) -> ModelSpec:
    """The catalog entry for a name, or an ad-hoc entry for a local directory (or, for captioners, a hub id)."""
    _check_kind(kind)
    if (kind, name_or_path) in _REGISTRY:
        return _REGISTRY[(kind, name_or_path)]
    if Path(name_or_path).is_dir() or (kind in HUB_KINDS and looks_like_hub_id(name_or_path)):
        return ModelSpec(str(name_or_path), kind, str(name_or_path), f"{kind} from {name_or_path}")
    names = [spec.name for spec in list_models(kind)]
    accepted = "a local directory or a hub id" if kind in HUB_KINDS else "a local checkpoint directory"
    raise ValueError(f"unknown {kind} {name_or_path!r}: choose one of {names}, or give {accepted}")


def availability(name_or_path: str, kind: str) -> tuple[bool, str]:
    """Whether a model can be loaded here without a download, and if not why; never touches the network.

    Returns:
        tuple ``(available, reason)``; ``reason`` is empty when available, and names no path of this machine (it is
        shown in the app's page).
    """
    if kind == "stuff" and name_or_path == NO_STUFF:
        return True, ""
    try:
        spec = get_spec(name_or_path, kind)
    except ValueError as error:
        return False, str(error)
    if spec.source.startswith("torchvision:"):
        found = torchvision_checkpoint(spec.source.split(":", 1)[1]).is_file()
        return (True, "") if found else (False, "its weights are not downloaded on this machine")
    if Path(spec.source).is_dir() or Path(spec.source).is_absolute():
        return (True, "") if Path(spec.source).is_dir() else (False, "its model directory is missing")
    return (True, "") if hub_cached(spec.source) else (False, f"{spec.source} is not in the Hugging Face cache")


def best_available(kind: str, names: Sequence[str], requested: str | None = None) -> str | None:
    """The model a server starts on: the first of the requested one, the :data:`PREFERRED` ones and the offered
    ones that loads here; when none does, the requested one (or the first offered) so that the page can say why.

    >>> best_available("captioner", [], None) is None
    True
    """
    candidates = [requested] if requested else []
    candidates += [name for name in [*PREFERRED[kind], *names] if name in names]
    for name in candidates:
        if availability(name, kind)[0]:
            return name
    return requested or (names[0] if names else None)


def looks_like_hub_id(text: str) -> bool:
    """``owner/name`` with neither part empty, not a relative or absolute path.

    >>> looks_like_hub_id("Salesforce/blip-image-captioning-base"), looks_like_hub_id("../etc")
    (True, False)
    """
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "/", "~"))


# -- captioners --------------------------------------------------------------------------------------------------


def load_captioner(
    name_or_path: str = "blip-base",
    *,
    device: str = "auto",
    dtype: Any = None,
    profile: str | SpeedProfile = "full",
    **kwargs: Any,
):
    """Load a captioner by catalog name, local directory or hub id: BLIP, GIT, a ``VisionEncoderDecoderModel``
    (ViT-GPT2) or another ``AutoModelForImageTextToText`` generator (:func:`pipeline.captioning.load_caption_model`).

    Args:
        name_or_path (str, default "blip-base"): see :func:`list_models` (``"captioner"``).
        device (str, default "auto"): ``"cpu"``, ``"cuda"`` or ``"auto"``.
        dtype (torch.dtype | None, default None): e.g. ``torch.float16`` on a GPU; None keeps float32.
        profile (str | SpeedProfile, default "full"): ``"full"`` or ``"fast"`` (int8 text decoder and, on CPUs with
            native bfloat16, a bfloat16 vision encoder; what applies to which family:
            :func:`pipeline.speed.apply_captioner_profile`).
        **kwargs: :class:`~pipeline.captioning.CaptionPipeline` options (``batch_size``, ``max_pixels``).

    Returns:
        CaptionPipeline

    Raises:
        ValueError: an unknown name.
        ModelUnavailableError: the model is not on this machine and cannot be downloaded now.
    """
    spec = get_spec(name_or_path, "captioner")
    model, processor = _load_transformers(spec, load_caption_model, dtype=dtype)
    model = apply_captioner_profile(model, profile, device=resolve_device(device))
    return CaptionPipeline(model, processor, name=spec.name, device=device, **kwargs)


def _load_transformers(spec: ModelSpec, load: Any, **options: Any) -> tuple[Any, Any]:
    """A captioner's or answerer's model and processor from its directory or hub id, with the fast failure of a
    model that is not here (:mod:`pipeline.hub`)."""
    local = Path(spec.source).is_dir()
    label = f"{spec.kind} {spec.name!r}"
    if not local and Path(spec.source).is_absolute():
        raise ModelUnavailableError(
            f"{label}: its directory {spec.source} does not exist; "
            f"train it with the command in train/README or README.md, or pass another {spec.kind}",
            public=f"{label} is not installed on this server; choose another {spec.kind}",
        )
    if not local:
        options["local_files_only"] = prepare_hub_download(label, spec.source)
    try:
        with MODEL_BUILD_LOCK:
            model, processor = load(spec.source, **options)
    except OSError as error:
        raise ModelUnavailableError(
            f"{label} could not be loaded from {spec.source}: {error}",
            public=f"{label} could not be loaded on this server; choose another {spec.kind}",
        ) from None
    fuse_blip_attention(model)  # the same outputs, a fifth less time for BLIP's vision encoder
    return model, processor


# -- answerers ---------------------------------------------------------------------------------------------------


def load_answer_model(source: str | Path, *, dtype: Any = None, **options: Any) -> tuple[Any, Any]:
    """The model and processor of a visual question-answering directory or hub id (``BlipForQuestionAnswering``
    through ``AutoModelForVisualQuestionAnswering``), the model in eval mode on the CPU.

    Raises:
        OSError: files missing or not downloadable.
    """
    from transformers import AutoModelForVisualQuestionAnswering, AutoProcessor

    processor = AutoProcessor.from_pretrained(source, **options)
    model = AutoModelForVisualQuestionAnswering.from_pretrained(source, dtype=dtype or torch.float32, **options)
    return model.eval(), processor


def load_answerer(name_or_path: str = "blip-vqa-base", *, device: str = "auto", dtype: Any = None, **kwargs: Any):
    """Load a question answerer by catalog name, local directory or hub id (BLIP VQA).

    Args:
        name_or_path (str, default "blip-vqa-base"): see :func:`list_models` (``"answerer"``).
        device (str, default "auto"): ``"cpu"``, ``"cuda"`` or ``"auto"``.
        dtype (torch.dtype | None, default None): e.g. ``torch.float16`` on a GPU; None keeps float32.
        **kwargs: :class:`~pipeline.answering.AnswerPipeline` options (``batch_size``, ``max_pixels``).

    Returns:
        AnswerPipeline

    Raises:
        ValueError: an unknown name.
        ModelUnavailableError: the model is not on this machine and cannot be downloaded now.

    >>> load_answerer("no-such-answerer")
    Traceback (most recent call last):
    ...
    ValueError: unknown answerer 'no-such-answerer': choose one of ['blip-vqa-base', 'shapes'], or give a local \
directory or a hub id
    """
    from .answering import AnswerPipeline

    spec = get_spec(name_or_path, "answerer")
    model, processor = _load_transformers(spec, load_answer_model, dtype=dtype)
    return AnswerPipeline(model, processor, name=spec.name, device=device, **kwargs)


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
    with MODEL_BUILD_LOCK:
        if spec.source.startswith("torchvision:"):
            model, categories = _load_torchvision_segmenter(spec, model_kwargs or {})
        else:
            model, categories = load_segmenter_checkpoint(spec.source, model_kwargs=model_kwargs, name=spec.name)
    model = apply_segmenter_profile(model, profile, keep=tuple(model_kwargs or {}), device=resolve_device(device))
    return SegmentationPipeline(model, categories, name=spec.name, device=device, **kwargs)


def _load_torchvision_segmenter(spec: ModelSpec, model_kwargs: dict) -> tuple[torch.nn.Module, list[str]]:
    from torchvision.models import detection

    builder = spec.source.split(":", 1)[1]
    weights = require_torchvision_weights(f"segmenter {spec.name!r}", builder)
    model = getattr(detection, builder)(weights=weights, weights_backbone=None, **model_kwargs)
    return model, list(weights.meta["categories"])


# -- stuff models ------------------------------------------------------------------------------------------------


def load_stuff(
    name_or_path: str = "segformer-b0-ade",
    *,
    device: str = "auto",
    profile: str | SpeedProfile = "full",
    **kwargs: Any,
) -> StuffPipeline:
    """Load a stuff model (any transformers ``AutoModelForSemanticSegmentation``) by catalog name, directory or hub
    id.

    Args:
        name_or_path (str, default "segformer-b0-ade"): see :func:`list_models` (``"stuff"``).
        device (str, default "auto"): ``"cpu"``, ``"cuda"`` or ``"auto"``.
        profile (str | SpeedProfile, default "full"): ``"full"`` runs the model at its processor's input size;
            another profile (``"fast"``, ``"live"``) at most :data:`FAST_STUFF_SIDE` pixels square (SegFormer-b0's
            512 px costs 1.8 times as much).
        **kwargs: :class:`~pipeline.stuff.StuffPipeline` options (``batch_size``, ``max_pixels``).

    Returns:
        StuffPipeline

    Raises:
        ValueError: an unknown name, ``"none"``, or a model that names no stuff class.
        ModelUnavailableError: the model is not on this machine and cannot be downloaded now.

    >>> load_stuff("shapes", device="cpu").categories
    ['grass', 'sand', 'sky', 'wall', 'water']
    """
    from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

    fast = not get_profile(profile).is_identity  # a wrong name fails here as in the other loaders
    if name_or_path == NO_STUFF:
        raise ValueError(f"stuff model {NO_STUFF!r} means no stuff model: pass None instead of loading it")
    spec = get_spec(name_or_path, "stuff")
    label = f"stuff model {spec.name!r}"
    local = Path(spec.source).is_dir()
    if not local and Path(spec.source).is_absolute():
        raise ModelUnavailableError(
            f"{label}: its directory {spec.source} does not exist; train it with train/stuff.py (train/README.md), "
            "or pass another stuff model",
            public=f"{label} is not installed on this server; choose another stuff model or none",
        )
    options: dict[str, Any] = {} if local else {"local_files_only": prepare_hub_download(label, spec.source)}
    try:
        with MODEL_BUILD_LOCK:
            # float32 whatever the weights are stored in (the shapes model is saved as float16, which CPUs run slowly)
            model = AutoModelForSemanticSegmentation.from_pretrained(spec.source, dtype=torch.float32, **options)
            processor = AutoImageProcessor.from_pretrained(spec.source, **options)
    except OSError as error:
        raise ModelUnavailableError(
            f"{label} could not be loaded from {spec.source}: {error}",
            public=f"{label} could not be loaded on this server; choose another stuff model or none",
        ) from None
    size = getattr(processor, "size", None)
    if fast and size is not None and getattr(size, "height", None) and size.height > FAST_STUFF_SIDE:
        processor.size = {"height": FAST_STUFF_SIDE, "width": FAST_STUFF_SIDE}
    return StuffPipeline(model, processor, name=spec.name, device=device, **kwargs)
