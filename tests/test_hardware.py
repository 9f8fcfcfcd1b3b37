"""bf16 on CPUs: the detection agrees with the CPU's flags, and bf16 on a CPU that emulates it warns."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from facegan.cli import main
from facegan.training import hardware
from tests.conftest import REPO

CPUINFO = Path("/proc/cpuinfo")


@pytest.mark.skipif(not CPUINFO.is_file(), reason="no /proc/cpuinfo (not Linux): nothing to compare with")
def test_the_detection_agrees_with_the_cpu_flags_the_kernel_reports():
    flags = set(CPUINFO.read_text().split())
    assert hardware.cpu_has_bf16() == bool(flags & {"avx512_bf16", "amx_bf16"})


@pytest.mark.parametrize(("cpuinfo", "expected"), [("flags : avx2 avx512f avx512_bf16", True),
                                                   ("flags : avx2 amx_bf16 amx_tile", True),
                                                   ("flags : avx2 avx512f", False)])  # fmt: skip
def test_without_torchs_probes_the_flags_of_proc_cpuinfo_decide(monkeypatch, tmp_path, cpuinfo, expected):
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    (tmp_path / "cpuinfo").write_text(f"processor : 0\n{cpuinfo}\n")
    real_path = hardware.Path
    monkeypatch.setattr(
        hardware, "Path", lambda p: real_path(tmp_path / "cpuinfo") if p == str(CPUINFO) else p
    )
    assert hardware.cpu_has_bf16() is expected


def test_which_accelerator_settings_mean_the_cpu(monkeypatch):
    assert hardware.trains_on_cpu("cpu") and not hardware.trains_on_cpu("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert not hardware.trains_on_cpu("auto")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert hardware.trains_on_cpu("auto") and hardware.trains_on_cpu(None)


@pytest.mark.parametrize("has_bf16", [True, False])
def test_bf16_on_a_cpu_without_bf16_units_warns_with_the_fix(monkeypatch, caplog, tmp_path, has_bf16):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("facegan.cli.trainer.cpu_has_bf16", lambda: has_bf16)
    with caplog.at_level(logging.WARNING, logger="facegan"):
        cli = main(
            ["--config", str(REPO / "configs/debug.yaml"), "--trainer.precision", "bf16-mixed"], run=False
        )
    assert cli.trainer.precision == "bf16-mixed"  # the user's choice stands
    warned = [r.getMessage() for r in caplog.records if "emulates bf16" in r.getMessage()]
    assert warned == ([] if has_bf16 else [
        "facegan: --trainer.precision bf16-mixed on a CPU without bf16 units (avx512_bf16 or amx_bf16): "
        "PyTorch emulates bf16 there, slower than float32; give --trainer.precision 32-true"
    ])  # fmt: skip


def test_the_cpu_bf16_overlay_turns_on_bf16_and_channels_last_over_a_recipe(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    configs = [REPO / "configs" / name for name in ("small_data.yaml", "cpu_bf16.yaml", "debug.yaml")]
    cli = main([arg for config in configs for arg in ("--config", str(config))], run=False)
    assert cli.trainer.precision == "bf16-mixed"
    assert cli.model.hparams.channels_last is True
    # The recipe's own settings stand: the overlay changes the number format, not the recipe.
    hparams = cli.model.hparams
    assert (hparams.g_channels, hparams.augment, hparams.ema_kimg) == (32, "color,translation", 10.0)
