"""What this machine's CPU can do for training: bf16 matrix units.

CPUs with AVX512-BF16 (Intel Cooper Lake and later, AMD Zen 4 and later) or AMX-BF16 (Intel Sapphire
Rapids and later) multiply bf16 natively; there ``bf16-mixed`` autocast with channels-last batches trains
faster than float32 (1.3-1.5x for ``configs/small_data.yaml`` on an AVX512-BF16 CPU, in the README).
The CPU recipes stay float32, since they also run where bf16 is emulated; the overlay
``configs/cpu_bf16.yaml`` turns both on. Elsewhere PyTorch emulates bf16, which is expected to be
slower than float32: the CLI warns, and ``--trainer.precision 32-true`` is the fix. Check a machine with
``lscpu | grep -o -w 'avx512_bf16\\|amx_bf16'`` (Linux) or
``python -c "from facegan.training.hardware import cpu_has_bf16; print(cpu_has_bf16())"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # the /proc/cpuinfo and lscpu names


def cpu_has_bf16() -> bool:
    """Whether the CPU multiplies bf16 natively (AVX512-BF16 or AMX).

    Asks PyTorch's CPU feature detection (``torch.cpu._is_avx512_bf16_supported`` and
    ``_is_amx_tile_supported``, which work on every OS); where this PyTorch lacks them, reads the
    flags of ``/proc/cpuinfo``.
    """
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
