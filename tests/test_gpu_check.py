"""benchmarks/gpu_check.py, the one-command GPU check, run at tiny sizes on the CPU: what it writes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

from tests.conftest import REPO

RECIPES = {"dcgan64", "resnet64", "resnet128", "r3gan64", "keras128"}


def positive(value: object) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )


def test_gpu_check_runs_tiny_on_the_cpu_and_writes_every_rate(tmp_path):
    out = tmp_path / "check.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    env["FACEGAN_CACHE"] = str(tmp_path / "cache")  # nothing written outside tmp_path
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/gpu_check.py"), "--tiny", "--device", "cpu", "--json", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and report["tiny"] is True
    assert set(report["train"]) == RECIPES
    for name, rates in report["train"].items():
        assert set(rates) == {"bf16", "fp32"}, name  # a CPU runs bf16 (natively or emulated)
        assert all(positive(rate) for rate in rates.values()), (name, rates)
    assert positive(report["fid_features_per_sec"])
    assert report["fid_extractor"] == "random-inception-v3-stand-in"  # --tiny loads no weights
    assert set(report["data"]) == {"resident", "loader", "resident_build_seconds"}
    assert all(positive(value) for value in report["data"].values())
    assert set(report["harness_vs_plain"]) == {"fit", "plain", "ratio"}
    assert all(positive(value) for value in report["harness_vs_plain"].values())
    assert (
        report["harness_vs_plain"]["ratio"]
        == report["harness_vs_plain"]["fit"] / report["harness_vs_plain"]["plain"]
    )
    assert positive(report["seconds"])
    for name in RECIPES:  # and the same numbers are printed
        assert f"train {name:9s} bf16: {report['train'][name]['bf16']:9.1f} images/s" in result.stdout
    assert "harness vs plain (dcgan64, bf16)" in result.stdout
