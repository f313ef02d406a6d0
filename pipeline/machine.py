"""What machine this is, for the reports of the batch job and the benchmark: CPU, cores, memory, GPU, the kernels
PyTorch runs with and the library versions.

>>> sorted(machine_info())[:3]
['avx2', 'avx512', 'bfloat16_used']
"""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path
from typing import Any

import torch

from .kernels import bfloat16_enabled, native_bfloat16


def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory, GPU and library versions, for the report."""
    import torchvision
    import transformers

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    flags = ""
    with contextlib.suppress(OSError):
        flags = Path("/proc/cpuinfo").read_text()
    memory_gb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        memory_gb = round(int(Path("/proc/meminfo").read_text().split()[1]) / 2**20, 1)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "avx2": " avx2" in flags,
        "avx512": " avx512f" in flags,
        # what PyTorch's kernels run with (ATEN_CPU_CAPABILITY=avx2 lowers it, to measure as on an AVX2-only CPU)
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "(not set: the CPU's best)"),
        "memory_gb": memory_gb,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch_threads": torch.get_num_threads(),
        "native_bfloat16": native_bfloat16(),
        "bfloat16_used": bfloat16_enabled("cpu"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "transformers": transformers.__version__,
        "platform": platform.platform(),
    }


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()] if hasattr(os, "getloadavg") else []
