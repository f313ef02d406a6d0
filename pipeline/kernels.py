"""CPU kernels the speed profiles use: bfloat16 stages, parallel region pooling, probes and thread limits.

- :func:`native_bfloat16` / :func:`bfloat16_enabled`: whether this CPU computes bfloat16 in hardware, and whether
  the profiles' bfloat16 stages run (``PIPELINE_BFLOAT16=auto|1|0``);
- :class:`BFloat16Stage`: a module run under CPU bfloat16 autocast that hands float32 on;
- :class:`ParallelRoIPool`: torchvision's region pooling over the boxes in parallel chunks, bit for bit the same;
- :func:`limit_intraop_threads`: a thread's own share of the intra-op threads;
- :func:`fuse_blip_attention`: BLIP's vision attention through PyTorch's fused attention kernel.
"""

from __future__ import annotations

import copy
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from .env import env_choice


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
    choice = env_choice("PIPELINE_BFLOAT16", ("auto", "1", "0"), "auto")
    return native_bfloat16() if choice == "auto" else choice == "1"


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


def fuse_blip_attention(model: torch.nn.Module) -> int:
    """Run every BLIP vision attention layer in ``model`` (a BLIP captioner or question answerer) through PyTorch's
    fused ``scaled_dot_product_attention``, in place; returns how many layers changed (0 for other models).

    transformers computes BLIP's vision attention the eager way only (matrix product, scale, softmax, matrix
    product), writing a 577 x 577 score tensor per head and layer at 384 px and reading it three times; the fused
    kernel computes the same softmax attention in one pass. The weights, their names in a state dict and the
    quantization and bfloat16 that the speed profiles apply are unchanged; outputs agree within float rounding
    (``tests/test_speed.py``). Asking the model for its attention weights (``output_attentions=True``) gives None for
    these layers.
    """
    try:
        from transformers.models.blip.modeling_blip import BlipAttention

        from .blip_attention import FusedBlipAttention
    except ImportError:  # a transformers without BLIP
        return 0
    count = 0
    for module in model.modules():
        if type(module) is BlipAttention:
            module.__class__ = FusedBlipAttention
            count += 1
    return count
