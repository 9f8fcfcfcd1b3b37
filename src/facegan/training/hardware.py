"""What this machine's CPU can do for training: bf16 matrix units (AVX512-BF16: Intel Cooper Lake+,
AMD Zen 4+; AMX-BF16: Sapphire Rapids+). There ``bf16-mixed`` with channels-last trains 1.3-1.5x faster
than float32 (the overlay ``configs/cpu_bf16.yaml``; the CPU recipes stay float32); elsewhere PyTorch
emulates bf16, slower than float32, and the CLI warns. Check with :func:`cpu_has_bf16`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # the /proc/cpuinfo and lscpu names


def cpu_has_bf16() -> bool:
    """Whether the CPU multiplies bf16 natively (AVX512-BF16 or AMX): PyTorch's CPU feature detection
    (private, but on every OS), or where this PyTorch lacks it the flags of ``/proc/cpuinfo``."""
    names = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    probes = [getattr(torch.cpu, name, None) for name in names]
    if all(callable(probe) for probe in probes):
        return any(bool(probe()) for probe in probes if callable(probe))
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return any(flag in flags for flag in BF16_FLAGS)


def trains_on_cpu(accelerator: Any) -> bool:
    """Whether a Trainer ``accelerator`` setting means the CPU (``"auto"``/``None``: no GPU here)."""
    if accelerator in ("auto", None):
        return not torch.cuda.is_available() and not torch.backends.mps.is_available()
    return accelerator == "cpu"
