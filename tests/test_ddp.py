"""Two processes (DDP, gloo, CPU) through the command a user runs: weights stay identical, the FID
equals the single-process value on the same latents, and there is one W&B run and one grid per epoch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import yaml
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from facegan import FaceDataModule, FaceGAN
from facegan.images import to_uint8
from tests.conftest import FID_WEIGHTS, REPO
from tests.wandb_records import history

pytestmark = pytest.mark.skipif(
    not FID_WEIGHTS.is_file(), reason=f"FID Inception weights not found at {FID_WEIGHTS}"
)
NUM_FAKE, NUM_REAL = 16, 16


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """``python -m facegan fit`` (debug + wandb overlays) on 2 processes; returns its folder."""
    tmp = tmp_path_factory.mktemp("ddp")
    fid = {"num_fake": NUM_FAKE, "num_real": NUM_REAL, "batch_size": 8, "every_n_epochs": 1}
    fid["weights_path"] = str(FID_WEIGHTS)
    callbacks = [
        {"class_path": "facegan.FIDMonitor", "init_args": fid},
        {"class_path": "tests.dump_weights.DumpWeights", "init_args": {"out": str(tmp / "dumps")}},
    ]
    (tmp / "ddp.yaml").write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}}))
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "FACEGAN_CACHE": str(tmp / "cache"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "OMP_NUM_THREADS": "1",  # two processes on two cores
        # Quiet, but for Lightning's advice to log epoch values with sync_dist (which FIDMonitor's
        # keys must not draw): "default" prints it once per rank and place.
        "PYTHONWARNINGS": "ignore,default:It is recommended to use",
    }
    command = [sys.executable, "-m", "facegan", "fit"]
    for config in (REPO / "configs/debug.yaml", REPO / "configs/wandb.yaml", tmp / "ddp.yaml"):
        command += ["--config", str(config)]
    command += ["--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.accelerator", "cpu"]
    result = subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "sync_dist" not in result.stderr, result.stderr[-4000:]
    return tmp


def load(ddp_run, rank: int, when: str) -> dict:
    return torch.load(ddp_run / "dumps" / f"rank{rank}-{when}.pt", weights_only=True)


def test_both_processes_train_and_keep_identical_weights(ddp_run):
    start, end0, end1 = load(ddp_run, 0, "start"), load(ddp_run, 0, "end"), load(ddp_run, 1, "end")
    assert end0["world_size"] == end1["world_size"] == 2
    for name, value in end0["params"].items():
        assert torch.equal(value, end1["params"][name]), f"{name} differs between the processes"
    changed = {
        name.split(".")[0] for name, v in end0["params"].items() if not torch.equal(v, start["params"][name])
    }
    assert changed == {"generator", "discriminator", "generator_ema"}  # the CLI default trains an EMA too
    # images_seen counts every process's images: 2 epochs x 3 batches x 8 images x 2 processes.
    assert end0["images_seen"] == end1["images_seen"] == 96


def test_fid_equals_single_process_value_on_the_same_latents(ddp_run):
    fid0, fid1 = load(ddp_run, 0, "end")["fid"], load(ddp_run, 1, "end")["fid"]
    assert len(fid0) == 2 and [e["fid"] for e in fid0] == [e["fid"] for e in fid1]  # compute() on both

    checkpoint = next((ddp_run / "lightning_logs/facegan").glob("*/checkpoints/last.ckpt"))
    model = FaceGAN.load_from_checkpoint(checkpoint, map_location="cpu")
    for name, value in load(ddp_run, 0, "end")["params"].items():
        assert torch.equal(dict(model.named_parameters())[name], value)
    latents = torch.randn(NUM_FAKE, model.hparams.latent_dim, generator=torch.Generator().manual_seed(0))
    data = FaceDataModule(num_procedural=64, batch_size=8, num_workers=0)  # the debug overlay's data
    data.setup()
    reals = data.real_dataset("train")
    real = torch.stack([reals[i * len(reals) // NUM_REAL] for i in range(NUM_REAL)])
    metric = FrechetInceptionDistance(
        feature=2048, antialias=False, feature_extractor_weights_path=str(FID_WEIGHTS)
    )
    metric.update(to_uint8(real), real=True)
    metric.update(to_uint8(model.sample(z=latents)), real=False)
    expected = float(metric.compute())
    assert fid0[-1]["fid"] == pytest.approx(expected, rel=1e-3)
    # KID: rank 0's (real features live there) on every rank's generated features, broadcast
    assert [e["kid"] for e in fid0] == [e["kid"] for e in fid1] and fid0[-1]["kid"] is not None
    kid = KernelInceptionDistance(feature=metric.inception, subsets=10, subset_size=NUM_FAKE)
    kid.update(to_uint8(real), real=True)
    kid.update(to_uint8(model.sample(z=latents)), real=False)
    assert fid0[-1]["kid"] == pytest.approx(float(kid.compute()[0]), rel=1e-3, abs=1e-5)


def test_one_wandb_run_and_one_grid_per_epoch(ddp_run):
    runs = list((ddp_run / "lightning_logs/wandb").glob("offline-run-*"))
    assert len(runs) == 1
    rows = history(next(runs[0].glob("run-*.wandb")))
    assert len([row for row in rows if "val/fid" in row]) == 2
    assert len([row for row in rows if row.get("samples/_type") == "images/separated"]) == 2
    folders = list((ddp_run / "lightning_logs/facegan").iterdir())
    assert len(folders) == 1
    assert sorted(p.name for p in (folders[0] / "samples").iterdir()) == [
        "epoch=0000-kimg=0.048.png",
        "epoch=0001-kimg=0.096.png",
    ]
