"""Speed profiles: what the pipelines may trade for latency, and the settings the live view runs with.

A profile is applied once, when a model loads (``load_pipeline(..., profile="fast")``,
``load_segmenter(..., profile=...)``, ``load_captioner(..., profile=...)``):

- ``"full"`` returns what the models called the plain way return (BLIP ``generate``, then torchvision Mask R-CNN with
  its default inference settings): the same captions, the same instances within float tolerance. On CPU it stores
  Mask R-CNN's convolution weights channels-last (the same arithmetic in another memory order; boxes agree to about
  0.001 px), and it runs the caption and the segmentation at the same time
  (:class:`~pipeline.combined.ImageAnalysisPipeline`).
- ``"fast"`` (the CPU default for the app and CPU Spaces) caps the Mask R-CNN input size and the number of region
  proposals that reach the box head (the box head on 1000 proposals costs v2 2.5-3 s on 2 CPU cores at any input
  size), runs BLIP's text decoder ``Linear`` layers in int8 (dynamic quantization, CPU only) and, on a CPU with
  native bfloat16 (AMX or AVX512-BF16), Mask R-CNN's convolution stages and BLIP's vision encoder in bfloat16.
- ``"live"`` is ``"fast"`` at 288 px for webcam frames (which :mod:`pipeline.stream` first shrinks to 480 px);
  :func:`segmenter_view` gives the live view a segmenter with these settings that shares the loaded weights.

Segmenter settings are caps, never raises: a fine-tuned checkpoint trained at 256 px keeps 256 px under ``"fast"``.
Caller-given ``model_kwargs`` win over the profile. ``PIPELINE_BFLOAT16=auto|1|0`` decides the bfloat16 stages.

Measured with ``python -m pipeline.bench`` (full-size random-weight models, 2 CPU cores with AMX; README has the
table). Kept: channels-last (v2 at 800 px 7.5 -> 5.8 s alone), bfloat16 stages (Mask R-CNN about 2x, the BLIP vision
encoder 1.4x over int8), fewer proposals (300 before NMS per level, 100 after), 384 px for photos and 288 px for
the live view (320 px gave 1.7-1.9 frames/s, 288 px 2.2-2.7), int8 text decoder (bfloat16 decoding was 1.2x slower)
and the two halves at once; for the live view, the caption thread on half the intra-op threads. Dropped: one
intra-op thread per half for photos (1.1x slower than both sharing two). Not tried: OpenVINO (it installs from PyPI;
on this CPU PyTorch's own AMX bfloat16 kernels already run matrix products at 550-620 GFLOP/s against 175 in float32)
and a static KV cache for BLIP.

>>> get_profile("fast").segmenter["rpn_post_nms_top_n_test"]
100
>>> get_profile("full").is_identity
True
"""

from __future__ import annotations

import copy
import os
import threading
import warnings
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import torch
from torchvision.ops import MultiScaleRoIAlign

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
    "about 5x faster on CPU: Mask R-CNN at 384 px with 100 proposals, int8 BLIP decoder, bfloat16 where native",
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
}


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


def native_bfloat16() -> bool:
    """True when this CPU computes bfloat16 in hardware (AMX tiles or AVX512-BF16), as PyTorch detects it."""
    try:
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except (AttributeError, RuntimeError):  # private helpers: absent in some builds
        return False


def bfloat16_enabled(device: torch.device | str = "cpu") -> bool:
    """Whether a profile's bfloat16 stages run on ``device``.

    ``PIPELINE_BFLOAT16`` decides: ``auto`` (the default) means on a CPU with native bfloat16 only; ``1`` forces it on
    any CPU (correct, but emulated bfloat16 is slower than float32); ``0`` turns it off. Never on a GPU: this CPU
    autocast is the only precision change the project has measured.
    """
    if torch.device(device).type != "cpu":
        return False
    choice = os.environ.get("PIPELINE_BFLOAT16", "auto").strip().lower()
    if choice in {"1", "true", "yes", "on"}:
        return True
    if choice in {"0", "false", "no", "off"}:
        return False
    if choice != "auto":
        raise ValueError(f"PIPELINE_BFLOAT16 must be auto, 1 or 0, got {choice!r}")
    return native_bfloat16()


def _as_float32(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, dict):  # OrderedDict of FPN levels, transformers' ModelOutput
        converted = copy.copy(value)
        for key, item in value.items():
            converted[key] = _as_float32(item)
        return converted
    if isinstance(value, (list, tuple)):
        return type(value)(_as_float32(item) for item in value)
    return value


class BFloat16Stage(torch.nn.Module):
    """Runs a module under CPU bfloat16 autocast and hands float32 tensors on, so what follows stays float32.

    A segmenter's stages keep their float32 weights (autocast casts them per call, which for Mask R-CNN costs no more
    than bfloat16 copies and lets a :func:`segmenter_view` share them with a float32 segmenter); the captioner's
    vision encoder, which nothing shares, is stored in bfloat16 (a ViT's many ``Linear`` weights cost 30% to cast).
    """

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.inner = module

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return _as_float32(self.inner(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:  # e.g. backbone.out_channels
            return getattr(super().__getattr__("inner"), name)


class ParallelRoIPool(torch.nn.Module):
    """torchvision's ``MultiScaleRoIAlign`` over the boxes in parallel chunks: the same numbers, on all the cores.

    torchvision's CPU RoIAlign kernel runs on one thread; for Mask R-CNN's 1000 proposals at 800 px that is 0.6-0.9 s
    of one core while the other waits. Each box is pooled independently of the others, so splitting the boxes into one
    chunk per intra-op thread (the kernel releases the GIL) and concatenating the chunks back in order returns
    exactly the same tensor (tested bit for bit), in half the time on 2 cores. The feature maps are made contiguous
    once first: channels-last features would otherwise be converted by every chunk.

    Args:
        pool (torchvision.ops.MultiScaleRoIAlign): the pooler to run.
        min_boxes (int, default 64): below this many boxes the pooler runs as it is.
    """

    _executor: ThreadPoolExecutor | None = None
    _executor_lock = threading.Lock()

    def __init__(self, pool: torch.nn.Module, min_boxes: int = 64):
        super().__init__()
        self.inner = pool
        self.min_boxes = min_boxes

    @classmethod
    def _pool(cls) -> ThreadPoolExecutor:
        with cls._executor_lock:
            if cls._executor is None:
                cls._executor = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="roi-align")
            return cls._executor

    def forward(
        self, features: dict[str, torch.Tensor], boxes: list[torch.Tensor], image_shapes: list
    ) -> torch.Tensor:
        parts = torch.get_num_threads()
        on_cpu = all(not value.is_cuda for value in features.values())
        if parts < 2 or sum(len(b) for b in boxes) < self.min_boxes or not on_cpu:
            return self.inner(features, boxes, image_shapes)
        features = type(features)((key, value.contiguous()) for key, value in features.items())
        chunks = [list(torch.tensor_split(b, parts)) for b in boxes]  # chunks[image][part]
        grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()  # both are per thread

        def pool(part: list[torch.Tensor]) -> torch.Tensor:
            with torch.inference_mode(inference), torch.set_grad_enabled(grad):
                return self.inner(features, part, image_shapes)

        images = range(len(boxes))
        jobs = [self._pool().submit(pool, [chunks[i][j] for i in images]) for j in range(parts)]
        # part j's rows are image 0's chunk j, then image 1's, ...; put them back as image 0's chunks 0..parts-1, ...
        pieces = [job.result().split([len(chunks[i][j]) for i in images]) for j, job in enumerate(jobs)]
        return torch.cat([pieces[j][i] for i in images for j in range(parts)])


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
    another memory order: boxes agree with the plain model's to about 0.002 px; 1.3x faster for v2 at 800 px on 2
    cores) and pools the regions with :class:`ParallelRoIPool` (the same numbers, on all cores). Then the profile's
    caps apply to the inference settings, and its bfloat16 stages where :func:`bfloat16_enabled`.

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


def apply_captioner_profile(
    model: torch.nn.Module, profile: str | SpeedProfile | None, *, device: torch.device | str = "cpu"
) -> torch.nn.Module:
    """Apply a profile to a captioner before it is placed: int8 ``Linear`` layers and a bfloat16 vision encoder on CPU.

    Args:
        model (transformers.PreTrainedModel): e.g. ``BlipForConditionalGeneration``, in float32 on the CPU.
        profile (str | SpeedProfile | None): see :func:`get_profile`.
        device (torch.device | str, default "cpu"): where the model will run; quantization is skipped off CPU
            (PyTorch's dynamic int8 kernels are CPU kernels).

    Returns:
        torch.nn.Module: the model, quantized or as it was.
    """
    chosen = get_profile(profile)
    if torch.device(device).type != "cpu" or next(model.parameters()).dtype != torch.float32:
        return model  # int8 dynamic kernels are CPU kernels taking float32 activations
    model.eval()
    vision = getattr(model, "vision_model", None)
    if chosen.bfloat16 and isinstance(vision, torch.nn.Module) and bfloat16_enabled(device):
        model.vision_model = BFloat16Stage(vision.to(torch.bfloat16))
    if chosen.quantize_captioner:
        with warnings.catch_warnings():
            # torch.ao.quantization is deprecated in favour of torchao, which is not a dependency; the kernels remain.
            warnings.simplefilter("ignore")
            for child in model.children():  # in place: a copy would materialise a memory-mapped checkpoint's weights
                if not isinstance(child, BFloat16Stage):
                    torch.ao.quantization.quantize_dynamic(child, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    return model


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


def limit_intraop_threads(count: int) -> None:
    """Give the calling thread ``count`` intra-op threads and leave every other thread's count as it was.

    ``torch.set_num_threads`` sets both the calling thread's OpenMP team size and the process default that threads
    created later start with; this sets the first and puts the default back from a short-lived helper thread. The
    live view's caption thread runs with it, so captions and frames split the cores instead of oversubscribing them.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    default = torch.get_num_threads()
    torch.set_num_threads(count)
    if default != count:
        helper = threading.Thread(target=torch.set_num_threads, args=(default,), name="restore-intraop-threads")
        helper.start()
        helper.join()


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
