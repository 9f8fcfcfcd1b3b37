"""What this machine's CPU can do for training: bf16 matrix units.

CPUs with AVX512-BF16 (Intel Cooper Lake+, AMD Zen 4+) or AMX-BF16 (Intel Sapphire Rapids+) multiply
bf16 natively; there ``bf16-mixed`` with channels-last trains 1.3-1.5x faster than float32
(``configs/small_data.yaml``, in the README). The CPU recipes stay float32, as they also run where
bf16 is emulated; the overlay ``configs/cpu_bf16.yaml`` turns both on.
Elsewhere PyTorch emulates bf16, expected slower than float32: the CLI warns (fix: ``--trainer.precision
32-true``). Check with ``lscpu | grep -o -w 'avx512_bf16\\|amx_bf16'`` or :func:`cpu_has_bf16`.
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
    if accelerator == "cpu":
        return True
    if accelerator not in ("auto", None):
        return False
    mps = getattr(torch.backends, "mps", None)
    return not torch.cuda.is_available() and not (mps is not None and mps.is_available())
