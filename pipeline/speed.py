"""Speed profiles: what the pipelines may trade for latency, and the settings the live view runs with.

A profile is applied once, when a model loads (``load_pipeline(..., profile="fast")``,
``load_segmenter(..., profile=...)``, ``load_captioner(..., profile=...)``):

- ``"full"`` returns what the models called the plain way return (BLIP ``generate``, then torchvision Mask R-CNN with
  its default inference settings): the same captions, the same instances within float tolerance. On CPU it stores
  Mask R-CNN's convolution weights channels-last (the same arithmetic in another memory order) and pools the
  regions on all cores (:class:`~pipeline.kernels.ParallelRoIPool`); the caption and the segmentation run at the
  same time (:class:`~pipeline.combined.ImageAnalysisPipeline`). Every profile runs BLIP's vision attention through
  PyTorch's fused attention kernel (:func:`~pipeline.kernels.fuse_blip_attention`, when the catalog loads a BLIP).
- ``"fast"`` (the CPU default of the app, the CLI and CPU Spaces) caps the Mask R-CNN input size and the number of
  region proposals that reach the box head (the box head's cost grows with the proposals, whatever the input
  size), runs BLIP's text decoder ``Linear`` layers in int8 (dynamic quantization, CPU only) and, on a CPU with
  native bfloat16 (AMX or AVX512-BF16), Mask R-CNN's convolution stages and BLIP's vision encoder in bfloat16.
- ``"live"`` is ``"fast"`` at 288 px for webcam frames (which :mod:`pipeline.stream` first shrinks to 480 px);
  :func:`segmenter_view` gives the live view a segmenter with these settings that shares the loaded weights.
  ``"live-small"`` (224 px, 50 proposals) is what the live view runs on a CPU without native bfloat16
  (:func:`live_profile`), where a key frame at 288 px took long enough for outlines to trail moving objects.

Segmenter settings are caps, never raises: a fine-tuned checkpoint trained at 256 px keeps 256 px under ``"fast"``.
Caller-given ``model_kwargs`` win over the profile. ``PIPELINE_BFLOAT16=auto|1|0`` decides the bfloat16 stages.
What each lever gave, measured with ``python space/benchmark/bench.py``, is in space/benchmark/README.md.

>>> get_profile("fast").segmenter["rpn_post_nms_top_n_test"]
100
>>> get_profile("full").is_identity
True
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import torch
from torchvision.ops import MultiScaleRoIAlign

from .captioning import caption_family
from .kernels import BFloat16Stage, ParallelRoIPool, bfloat16_enabled

#: The Mask R-CNN inference settings a profile may cap, and where torchvision keeps each one on a built model.
SEGMENTER_SETTINGS = ("min_size", "max_size", "rpn_pre_nms_top_n_test", "rpn_post_nms_top_n_test")


@dataclass(frozen=True)
class SpeedProfile:
    """One named trade of accuracy for speed.

    Attributes:
        name (str): ``"full"``, ``"fast"``, ``"live"`` or your own.
        description (str): one line for people choosing.
        segmenter (Mapping[str, int]): caps on the Mask R-CNN inference settings of :data:`SEGMENTER_SETTINGS`.
        quantize_captioner (bool, default False): int8 dynamic quantization of the captioner's ``torch.nn.Linear``
            layers (weights int8, activations quantized per call); applied on CPU only.
        bfloat16 (bool, default False): run Mask R-CNN's convolution stages (backbone and FPN, RPN head, box head,
            mask head) in bfloat16 autocast, box decoding, NMS and mask pasting staying float32; and the captioner's
            vision encoder with bfloat16 weights (its text decoder keeps ``quantize_captioner``'s int8). Applied only
            on a CPU with native bfloat16 (AMX or AVX512-BF16, see :func:`bfloat16_enabled`), where it is 1.4-3x
            faster; elsewhere bfloat16 is emulated and slower.
    """

    name: str
    description: str
    segmenter: Mapping[str, int] = field(default_factory=dict)
    quantize_captioner: bool = False
    bfloat16: bool = False

    def __post_init__(self) -> None:
        unknown = sorted(set(self.segmenter) - set(SEGMENTER_SETTINGS))
        if unknown:
            raise ValueError(f"segmenter settings must be among {SEGMENTER_SETTINGS}, got {unknown}")
        for key, value in self.segmenter.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"segmenter setting {key} must be a positive integer, got {value!r}")
        object.__setattr__(self, "segmenter", MappingProxyType(dict(self.segmenter)))

    @property
    def is_identity(self) -> bool:
        """True when the profile changes nothing (outputs equal the plain models')."""
        return not self.segmenter and not self.quantize_captioner and not self.bfloat16


_FAST = SpeedProfile(
    "fast",
    "faster on CPU (figures in space/benchmark/README.md): Mask R-CNN at 384 px with 100 proposals, int8 BLIP "
    "decoder, bfloat16 where native",
    segmenter={"min_size": 384, "max_size": 512, "rpn_pre_nms_top_n_test": 300, "rpn_post_nms_top_n_test": 100},
    quantize_captioner=True,
    bfloat16=True,
)

PROFILES: dict[str, SpeedProfile] = {
    "full": SpeedProfile("full", "full quality: the models' own settings, caption and segmentation concurrently"),
    "fast": _FAST,
    "live": replace(
        _FAST,
        name="live",
        description="webcam frames (shrunk to 480 px by the live view): the fast profile with Mask R-CNN at 288 px",
        segmenter={**_FAST.segmenter, "min_size": 288, "max_size": 432},
    ),
    "live-small": replace(
        _FAST,
        name="live-small",
        description="webcam frames on a CPU without native bfloat16: the live profile at 224 px with 50 proposals",
        segmenter={**_FAST.segmenter, "min_size": 224, "max_size": 336, "rpn_post_nms_top_n_test": 50},
    ),
}


def default_profile(device: str | torch.device | None = "auto") -> str:
    """The speed profile a server or the command line runs by default: ``"fast"`` on a CPU, ``"full"`` on a GPU.

    The library's loaders keep ``"full"`` as their default (the models' own outputs); the app, the CLI and the Space
    ask this function, so that all three run the same profile on the same machine.

    Args:
        device (str | torch.device | None, default "auto"): where the models run; ``"auto"`` or None is a GPU when one
            is visible (on ZeroGPU the app places the models on ``"cuda"``).

    >>> default_profile("cpu"), default_profile("cuda")
    ('fast', 'full')
    """
    if device is None or str(device) == "auto":
        return "full" if torch.cuda.is_available() else "fast"
    return "full" if torch.device(device).type == "cuda" else "fast"


def live_profile(device: str | torch.device = "cpu") -> str:
    """The profile of the live view's key frames on ``device``: ``"live"``, or ``"live-small"`` on a CPU whose
    profile runs without bfloat16 (no native bfloat16, or ``PIPELINE_BFLOAT16=0``).

    Without bfloat16 a key frame at 288 px took about 1.1 s on 2 cores beside the caption, and outlines carried
    that long trail objects that move or come into view (space/benchmark/README.md, the live view); 224 px with half
    the proposals costs about two thirds of the arithmetic.

    >>> live_profile("cuda")
    'live'
    """
    return "live-small" if torch.device(device).type == "cpu" and not bfloat16_enabled(device) else "live"


def get_profile(profile: str | SpeedProfile | None) -> SpeedProfile:
    """The :class:`SpeedProfile` for a name (``None`` is ``"full"``); a profile object is returned as it is."""
    if profile is None:
        return PROFILES["full"]
    if isinstance(profile, SpeedProfile):
        return profile
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {sorted(PROFILES)} or a SpeedProfile, got {profile!r}")
    return PROFILES[profile]


# -- segmenter ---------------------------------------------------------------------------------------------------


def segmenter_settings(model: torch.nn.Module) -> dict[str, int]:
    """The inference settings of a built torchvision Mask R-CNN, keyed as in :data:`SEGMENTER_SETTINGS`."""
    return {
        "min_size": int(max(model.transform.min_size)),
        "max_size": int(model.transform.max_size),
        "rpn_pre_nms_top_n_test": int(model.rpn._pre_nms_top_n["testing"]),
        "rpn_post_nms_top_n_test": int(model.rpn._post_nms_top_n["testing"]),
    }


#: Mask R-CNN's convolution stages, which :attr:`SpeedProfile.bfloat16` runs in bfloat16.
BFLOAT16_STAGES = ("backbone", "rpn.head", "roi_heads.box_head", "roi_heads.mask_head")


def _set_submodule(model: torch.nn.Module, path: str, module: torch.nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)


def apply_segmenter_profile(
    model: torch.nn.Module,
    profile: str | SpeedProfile | None,
    *,
    keep: tuple[str, ...] = (),
    device: torch.device | str = "cpu",
) -> torch.nn.Module:
    """Apply a profile to a built Mask R-CNN, in place.

    On CPU every profile, ``"full"`` included, stores the convolution weights channels-last (the same arithmetic in
    another memory order, so boxes agree with the plain model's to a small fraction of a pixel; the figures are in
    space/benchmark/README.md) and pools the regions with :class:`ParallelRoIPool` (the same numbers, on all
    cores). Then the profile's caps apply to the inference settings, and its bfloat16 stages where
    :func:`bfloat16_enabled`.

    Args:
        model (torchvision.models.detection.MaskRCNN): the detector.
        profile (str | SpeedProfile | None): see :func:`get_profile`.
        keep (tuple[str, ...], default ()): settings the caller chose explicitly (``model_kwargs``), left alone.
        device (torch.device | str, default "cpu"): where the model will run.

    Returns:
        torch.nn.Module: the same model.
    """
    chosen = get_profile(profile)
    if torch.device(device).type == "cpu":
        model.to(memory_format=torch.channels_last)
        for name in ("box_roi_pool", "mask_roi_pool"):
            pool = getattr(model.roi_heads, name, None)
            if isinstance(pool, MultiScaleRoIAlign):
                setattr(model.roi_heads, name, ParallelRoIPool(pool))
    current = segmenter_settings(model)
    capped = {key: min(value, current[key]) for key, value in chosen.segmenter.items() if key not in keep}
    if "min_size" in capped:
        model.transform.min_size = (capped["min_size"],)
    if "max_size" in capped:
        model.transform.max_size = capped["max_size"]
    if "rpn_pre_nms_top_n_test" in capped:
        model.rpn._pre_nms_top_n["testing"] = capped["rpn_pre_nms_top_n_test"]
    if "rpn_post_nms_top_n_test" in capped:
        model.rpn._post_nms_top_n["testing"] = capped["rpn_post_nms_top_n_test"]
    if chosen.bfloat16 and bfloat16_enabled(device):
        for path in BFLOAT16_STAGES:
            stage = model.get_submodule(path)
            if not isinstance(stage, BFloat16Stage):
                _set_submodule(model, path, BFloat16Stage(stage))
    return model


def segmenter_precision(model: torch.nn.Module) -> str:
    """``"bfloat16"`` when a Mask R-CNN runs its convolution stages in bfloat16, else ``"float32"``."""
    return "bfloat16" if isinstance(model.backbone, BFloat16Stage) else "float32"


# -- captioner ---------------------------------------------------------------------------------------------------


#: Where each caption family (:data:`pipeline.captioning.FAMILIES`) keeps its vision encoder: the part
#: :attr:`SpeedProfile.bfloat16` stores and runs in bfloat16. Other families have none that the profile knows.
VISION_ENCODERS = {
    "blip": "vision_model",
    "git": "git.image_encoder",
    "vision-encoder-decoder": "encoder",
    "clip-prefix": "vision",
}


def captioner_vision_encoder(model: torch.nn.Module) -> str | None:
    """The submodule path of a captioner's vision encoder (see :data:`VISION_ENCODERS`), None when unknown."""
    path = VISION_ENCODERS.get(caption_family(model))
    if path is None and isinstance(getattr(model, "vision_model", None), torch.nn.Module):
        path = "vision_model"  # the usual name among other image-text-to-text models
    return path


def apply_captioner_profile(
    model: torch.nn.Module, profile: str | SpeedProfile | None, *, device: torch.device | str = "cpu"
) -> torch.nn.Module:
    """Apply a profile to a captioner before it is placed: int8 ``Linear`` layers and a bfloat16 vision encoder on CPU.

    What applies where, by caption family:

    - bfloat16 (:attr:`SpeedProfile.bfloat16`, on a CPU with native bfloat16): the vision encoder of
      :data:`VISION_ENCODERS`: BLIP's ``vision_model``, GIT's ``git.image_encoder`` (its CLIP ViT; the projection and
      the text decoder stay out) and a VisionEncoderDecoderModel's ``encoder`` (ViT). Another image-text-to-text
      model gets it only if it has a ``vision_model``; otherwise bfloat16 does not apply.
    - int8 (:attr:`SpeedProfile.quantize_captioner`): every ``torch.nn.Linear`` outside the bfloat16 encoder, in
      every family. GPT-2 (the ViT-GPT2 decoder) builds its attention and MLP from transformers' ``Conv1D`` (a
      ``Linear`` with its weight transposed); these are turned into ``Linear`` layers of the same weights first, so
      that the decoder is int8 too, not only its ``lm_head``.
    - Neither applies off the CPU, nor to weights that are not float32 (``dtype=torch.float16``): PyTorch's dynamic
      int8 kernels are CPU kernels taking float32 activations.

    Args:
        model (transformers.PreTrainedModel): a captioner in float32 on the CPU (any family).
        profile (str | SpeedProfile | None): see :func:`get_profile`.
        device (torch.device | str, default "cpu"): where the model will run.

    Returns:
        torch.nn.Module: the model, changed in place, or as it was.
    """
    chosen = get_profile(profile)
    if torch.device(device).type != "cpu" or next(model.parameters()).dtype != torch.float32:
        return model  # int8 dynamic kernels are CPU kernels taking float32 activations
    model.eval()
    path = captioner_vision_encoder(model)
    if chosen.bfloat16 and path is not None and bfloat16_enabled(device):
        vision = model.get_submodule(path)
        if not isinstance(vision, BFloat16Stage):
            _set_submodule(model, path, BFloat16Stage(vision.to(torch.bfloat16)))
    if chosen.quantize_captioner:
        _conv1d_as_linear(model)
        with warnings.catch_warnings():
            # torch.ao.quantization is deprecated in favour of torchao, which is not a dependency; the kernels remain.
            warnings.simplefilter("ignore")
            _quantize_linear_layers(model)
    return model


def _conv1d_as_linear(model: torch.nn.Module) -> None:
    """Replace transformers' ``Conv1D`` layers (GPT-2's ``x @ weight + bias``) by ``Linear`` layers, same weights."""
    from transformers.pytorch_utils import Conv1D

    for name, module in list(model.named_modules()):
        if isinstance(module, Conv1D):
            linear = torch.nn.Linear(module.weight.shape[0], module.nf, device=module.weight.device)
            with torch.no_grad():
                linear.weight.copy_(module.weight.t())
                linear.bias.copy_(module.bias)
            _set_submodule(model, name, linear)


def _quantize_linear_layers(module: torch.nn.Module) -> None:
    """Dynamic int8 for every ``Linear`` in ``module`` except inside a :class:`BFloat16Stage`, in place (a copy would
    materialise a memory-mapped checkpoint's weights)."""
    for name, child in module.named_children():
        if isinstance(child, BFloat16Stage):
            continue
        if any(isinstance(inner, BFloat16Stage) for inner in child.modules()):
            _quantize_linear_layers(child)  # e.g. GIT's `git`, which holds the bfloat16 image encoder
        elif isinstance(child, torch.nn.Linear):  # a leaf: quantize_dynamic replaces children, so give it a parent
            wrapper = torch.nn.Sequential(child)
            torch.ao.quantization.quantize_dynamic(wrapper, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
            setattr(module, name, wrapper[0])
        else:
            torch.ao.quantization.quantize_dynamic(child, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


# -- live view ---------------------------------------------------------------------------------------------------


def segmenter_view(segmenter: Any, profile: str | SpeedProfile | None) -> Any:
    """A copy of a :class:`~pipeline.segmentation.SegmentationPipeline` running a profile's settings, weights shared.

    This is what the live view needs: the app loads each model once (full quality for still images) and gives
    :class:`~pipeline.stream.LiveStream` ``segmenter_view(segmenter, "live")`` as its segmenter, with no second copy
    of the weights. The original pipeline keeps its settings.

    Args:
        segmenter (SegmentationPipeline): a pipeline around a torchvision ``MaskRCNN``.
        profile (str | SpeedProfile | None): see :func:`get_profile`.

    Returns:
        SegmentationPipeline: a new pipeline object sharing the model's submodules and weights.
    """
    model = segmenter.model
    view = copy.copy(model)
    view._modules = dict(model._modules)  # new module tables: the submodules replaced below stay private
    view.transform = copy.copy(model.transform)
    view.rpn = copy.copy(model.rpn)
    view.rpn._modules = dict(model.rpn._modules)
    view.rpn._pre_nms_top_n = dict(model.rpn._pre_nms_top_n)
    view.rpn._post_nms_top_n = dict(model.rpn._post_nms_top_n)
    view.roi_heads = copy.copy(model.roi_heads)
    view.roi_heads._modules = dict(model.roi_heads._modules)
    apply_segmenter_profile(view, profile, device=segmenter.device)
    pipeline = copy.copy(segmenter)
    pipeline.model = view
    return pipeline


def profile_summary(profile: str | SpeedProfile | None) -> dict[str, Any]:
    """A JSON-ready description of a profile (benchmark reports, the app's model info)."""
    chosen = get_profile(profile)
    return {
        "name": chosen.name,
        "description": chosen.description,
        "segmenter": dict(chosen.segmenter),
        "quantize_captioner": chosen.quantize_captioner,
        "bfloat16": chosen.bfloat16,
    }
