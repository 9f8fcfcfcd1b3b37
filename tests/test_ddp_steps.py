"""Two CPU processes (DDP, gloo) through ``tests/ddp_steps.py``: a DDP step averages the processes'
gradients exactly, and every decision taken before a collective is the same on every rank (an
all-skipped batch on one rank, epochs without images, the divergence stop), so runs never hang."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import REPO

SCRIPT = REPO / "tests" / "ddp_steps.py"


def run(mode: str, tmp_path, devices: int = 2) -> tuple[subprocess.CompletedProcess, list[dict]]:
    out = tmp_path / f"{mode}-{devices}"
    out.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "OMP_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore",
    }
    command = [sys.executable, str(SCRIPT), mode, str(out), str(devices)]
    # A hang (a rank waiting for a collective the other skipped) fails here instead of blocking the suite.
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(devices)]
    return result, ranks


def assert_identical(first: dict, second: dict) -> None:
    assert first["params"].keys() == second["params"].keys()
    for name, value in first["params"].items():
        assert torch.equal(value, second["params"][name]), f"{name} differs between the processes"


def test_a_ddp_step_equals_one_step_on_the_concatenated_batch(tmp_path):
    """SGD, a D without BatchNorm, R1 every step: 2 processes x 2 images == 1 process x 4 images."""
    result, (rank0, rank1) = run("average", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_identical(rank0, rank1)
    _, (single,) = run("average", tmp_path, devices=1)
    assert rank0["images_seen"] == single["images_seen"] == 4  # both processes' images counted
    for name, value in single["params"].items():
        torch.testing.assert_close(rank0["params"][name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_a_process_whose_batches_are_all_unreadable_takes_part_with_zero_weight(tmp_path):
    """Process 1's images are all skipped, process 0's are fine: the run goes on together."""
    result, (rank0, rank1) = run("skip", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert rank0["error"] is rank1["error"] is None
    assert_identical(rank0, rank1)  # G, D and the EMA generator
    assert not torch.equal(rank0["draw"], rank1["draw"])  # each process its own random stream
    # 2 epochs x 2 batches on both processes (the D/G/R1 schedules stayed in step) ...
    assert rank0["d_updates"] == rank1["d_updates"] == 4
    # ... and only process 0's images (indices 0, 2, 4, 6, twice) were counted.
    assert rank0["images_seen"] == rank1["images_seen"] == 8
    # ADA adjusted once (4 D updates), on both processes alike, from process 0's 8 images only.
    assert rank0["ada"] == rank1["ada"] and rank0["ada"]["steps"] == 0
    assert rank0["ada"]["r_t"] * 8 == round(rank0["ada"]["r_t"] * 8)
    assert rank0["ada"]["p"] in (0.0, pytest.approx(0.08))


def test_an_epoch_without_images_on_every_process_stops_every_process(tmp_path):
    result, (rank0, rank1) = run("none", tmp_path)
    assert result.returncode != 0
    for rank in (rank0, rank1):
        assert rank["error"].startswith("NoImagesError: FaceGAN: epoch 0 trained on no images")
        assert rank["d_updates"] == rank["images_seen"] == 0  # no process had images: no step at all


def test_a_divergence_seen_by_one_process_stops_both(tmp_path):
    result, (rank0, rank1) = run("diverge", tmp_path)
    assert result.returncode != 0
    assert rank1["error"].startswith("TrainingDiverged: DivergenceMonitor: train/d_loss is nan")
    assert rank0["error"].startswith("TrainingDiverged: DivergenceMonitor: another process found")
    assert rank0["d_updates"] == rank1["d_updates"]
    assert_identical(rank0, rank1)


def test_the_dataset_cache_is_built_once_per_node_and_mapped_by_every_process(tmp_path):
    images = tmp_path / "cache-2" / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(16):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(images / f"{i:02d}.png")
    result, (rank0, rank1) = run("cache", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # One build (prepare_data on local rank 0, the other process waiting), not one per process.
    assert result.stderr.count("FaceDataModule: cached 16 images") == 1, result.stderr[-3000:]
    assert len(list((tmp_path / "cache-2" / "cache").glob("faces-*"))) >= 1
    assert_identical(rank0, rank1)
    assert rank0["images_seen"] == rank1["images_seen"] > 0
