"""benchmarks/quality.py at tiny sizes on the CPU: scores at the requested image counts, extra EMA copies
that are the EMA of G's weights (each sampled with its own BatchNorm statistics), a curve per seed."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import time

import lightning as L
import pytest
import torch
from torchmetrics.image.fid import FrechetInceptionDistance

from facegan import FaceDataModule, FaceGAN
from facegan.metrics import fid as fid_engine
from tests.conftest import FID_WEIGHTS, REPO
from tests.test_fid_sources import EXTRACTOR, Pooled
from tests.test_score import pngs

pytestmark = pytest.mark.usefixtures("one_thread")

spec = importlib.util.spec_from_file_location("quality", REPO / "benchmarks" / "quality.py")
assert spec is not None and spec.loader is not None
quality = importlib.util.module_from_spec(spec)
spec.loader.exec_module(quality)

TINY = ["--data.image_size", "32", "--data.batch_size", "8", "--data.num_workers", "0",
        "--model.latent_dim", "16", "--model.g_channels", "8", "--model.d_channels", "8",
        "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false"]  # fmt: skip


@pytest.fixture
def faces(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path / "cache"))  # real statistics in tmp_path
    return pngs(tmp_path / "faces", 40, 32, 128, seed=0)


class Levels(Pooled):
    """The pooled stand-in features in grey levels (0-255): FIDs that differ at the 2 decimals printed."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return super().forward(images) * 255.0


class Slow(Levels):
    """The stand-in features, a second per batch: scoring that a training time would show."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        time.sleep(1.0)
        return super().forward(images)


def stand_in(monkeypatch: pytest.MonkeyPatch, features: type[Pooled] = Levels) -> None:
    """12 pooled features instead of Inception: a real evaluation costs ~7 s on 2 CPU cores (5 s of it
    the 2048-feature FID step), and these tests check when and of which generator scores are taken."""

    def build(*args: object, **kwargs: object) -> tuple[FrechetInceptionDistance, dict]:
        return FrechetInceptionDistance(feature=features(), reset_real_features=False), EXTRACTOR

    monkeypatch.setattr(fid_engine, "build_fid_metric", build)


def run(tmp_path, faces, *args: str) -> list[dict]:
    """The benchmark's results, after checking that they are the last lines of ``results.jsonl``."""
    out = tmp_path / "out"
    results = quality.main(
        ["--label", "tiny", "--data", str(faces), "--out", str(out), "--num-fake", "4", "--num-real", "8",
         "--weights", str(FID_WEIGHTS), *args, *TINY]
    )  # fmt: skip
    lines = (out / "results.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines[len(lines) - len(results) :]] == results
    return results


def test_points_are_scored_after_the_batch_that_reaches_each_image_count(tmp_path, faces, monkeypatch):
    stand_in(monkeypatch, Slow)
    results = run(tmp_path, faces, "--kimg", "0.02,0.016")
    # batches of 8: 16 images after batch 2; 20 are first reached after batch 3 (24 images)
    assert [r["kimg"] for r in results] == [0.016, 0.024]
    assert [r["steps"] for r in results] == [4, 6]  # D and G steps
    assert [r["ema_kimg"] for r in results] == [10.0, 10.0]  # the CLI's EMA generator
    assert all(r["label"] == "tiny-s0" and r["seed"] == 0 and math.isfinite(r["fid"]) for r in results)
    # the third batch of 8 tiny images, without the first point's second of scoring
    assert 0 <= results[1]["train_seconds"] - results[0]["train_seconds"] < 0.5
    assert all(r["images_per_sec"] > 0 for r in results)


def test_each_seed_is_a_labelled_run_of_its_own(tmp_path, faces, monkeypatch):
    stand_in(monkeypatch)
    results = run(tmp_path, faces, "--kimg", "0.008", "--seeds", "1,0")
    assert [(r["label"], r["seed"], r["kimg"]) for r in results] == [
        ("tiny-s0", 0, 0.008),
        ("tiny-s1", 1, 0.008),
    ]
    for seed in (0, 1):  # each in its folder, seeded as its config says
        (config,) = (tmp_path / "out" / f"tiny-s{seed}").glob("lightning_logs/*/config.yaml")
        assert f"seed_everything: {seed}\n" in config.read_text()


def test_each_ema_copy_is_scored_beside_the_models_own(tmp_path, faces, monkeypatch):
    """With the Inception weights where ../shared has them (real FID and KID), else the stand-in."""
    if not FID_WEIGHTS.is_file():
        stand_in(monkeypatch)
    results = run(tmp_path, faces, "--kimg", "0.016", "--ema-kimg", "0.004", "--model.ema_rampup", "null")
    assert [(r["kimg"], r["ema_kimg"]) for r in results] == [(0.016, 10.0), (0.016, 0.004)]
    assert all(math.isfinite(r["fid"]) and r["kid"] is not None for r in results)
    assert results[0]["fid"] != results[1]["fid"]  # two generators: ~G at the start, ~G after step 2


class Weights(L.Callback):
    """G's parameters at the start of training and after each batch."""

    def __init__(self) -> None:
        self.seen: list[list[torch.Tensor]] = []

    def record(self, pl_module: FaceGAN) -> None:
        self.seen.append([p.detach().clone() for p in pl_module.generator.parameters()])

    def on_train_start(self, trainer, pl_module):
        self.record(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.record(pl_module)


def test_an_ema_copy_is_the_ema_of_the_generators_weights_and_samples_with_its_own_statistics():
    settings = dict(image_size=32, latent_dim=16, g_channels=8, d_channels=8, ema_kimg=10.0, ema_rampup=None)
    model = FaceGAN(**settings)
    data = FaceDataModule(image_size=32, batch_size=8, num_procedural=32, num_workers=0)
    copies, weights = quality.EMACopies([0.004]), Weights()
    trainer = L.Trainer(accelerator="cpu", max_steps=4, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[copies, weights])  # fmt: skip  # max_steps: D and G steps, 2 batches
    trainer.fit(model, data)
    w0, w1, w2 = weights.seen
    beta = 0.25  # 0.5 ** (8 images / 4 images of half-life), by hand
    ema = copies.copies[0.004]
    for p, a, b, c in zip(ema.parameters(), w0, w1, w2, strict=True):
        torch.testing.assert_close(p, beta * (beta * a + (1 - beta) * b) + (1 - beta) * c)

    # sampled as the generator of a model of its own: BatchNorm statistics of these weights, not the EMA's
    z = torch.randn(4, 16, generator=torch.Generator().manual_seed(1))
    kept = model.generator_ema
    model.sample(z=z)  # the model's EMA generator: its standing statistics cached
    with quality.sampling_from(model, ema):
        swapped = model.sample(z=z)
    own = FaceGAN(**{**settings, "ema_kimg": None})
    own.generator.load_state_dict(ema.state_dict())
    torch.testing.assert_close(swapped, own.sample(z=z))
    assert model.generator_ema is kept


def test_a_resumed_run_scores_only_its_new_points_and_equals_the_run_without_a_stop(
    tmp_path, faces, monkeypatch
):
    stand_in(monkeypatch)
    ema = ["--ema-kimg", "0.004", "--model.ema_rampup", "null"]
    # 40 faces, 36 for training in 4 batches of 8: each point is an epoch's end, where last.ckpt is written
    first = run(tmp_path / "stopped", faces, "--kimg", "0.032", *ema)
    resumed = run(tmp_path / "stopped", faces, "--kimg", "0.032,0.064", "--resume", *ema)
    whole = run(tmp_path / "whole", faces, "--kimg", "0.032,0.064", *ema)
    assert [(r["kimg"], r["ema_kimg"]) for r in first] == [(0.032, 10.0), (0.032, 0.004)]
    assert [(r["kimg"], r["ema_kimg"]) for r in resumed] == [(0.064, 10.0), (0.064, 0.004)]
    # exact resume, the EMA copy's weights included: the same scores as the run that never stopped
    assert [r["fid"] for r in resumed] == [r["fid"] for r in whole[2:]]
    assert [r["fid"] for r in first] == [r["fid"] for r in whole[:2]]
    assert [r["since_kimg"] for r in first + resumed] == [0.0] * 4  # the training time goes on
    assert resumed[0]["train_seconds"] > first[0]["train_seconds"]
    assert resumed[0]["steps"] == 16  # 8 batches: D and G steps

    # a copy the checkpoint does not hold cannot be made up from G's weights
    with pytest.raises(ValueError, match=r"--ema-kimg 0\.002: .*last\.ckpt has no EMA copy"):
        run(tmp_path / "stopped", faces, "--kimg", "0.12", "--resume", "--ema-kimg", "0.002,0.004")


def test_real_statistics_from_a_cache_file_score_as_the_images_did(tmp_path, faces, monkeypatch):
    stand_in(monkeypatch)
    first = run(tmp_path / "a", faces, "--kimg", "0.008")
    (stats,) = (tmp_path / "cache" / "fid").glob("real-*.pt")
    moved = shutil.copytree(faces, tmp_path / "moved")  # other paths and times: another cache key
    again = run(tmp_path / "b", moved, "--kimg", "0.008", "--real", str(stats))
    assert [(r["fid"], r["kid"]) for r in again] == [(r["fid"], r["kid"]) for r in first]
    assert list((tmp_path / "cache" / "fid").glob("real-*.pt")) == [stats]  # nothing computed again
