"""The walks docs/design.md describes: the source files one training batch and one FID evaluation
enter, traced with ``sys.setprofile``, so the design page cannot drift from the code."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from torchmetrics.image.fid import FrechetInceptionDistance

import facegan
from facegan import FaceDataModule, FaceGAN
from facegan.callbacks import FIDMonitor
from facegan.metrics import fid as engine

SRC = Path(facegan.__file__).parent

pytestmark = pytest.mark.usefixtures("one_thread")


def files_crossed(call: Callable[[], Any]) -> list[str]:
    """facegan's source files that ``call`` enters, in the order first entered."""
    seen: dict[str, None] = {}

    def profile(frame: Any, event: str, arg: Any) -> None:
        path = Path(frame.f_code.co_filename)
        if event == "call" and path.is_relative_to(SRC):
            seen.setdefault(path.relative_to(SRC).as_posix())

    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    return list(seen)


def test_one_training_batch_crosses_five_source_files(tmp_path):
    model = FaceGAN(image_size=32, g_channels=8, d_channels=8, augment="color,translation")
    data = FaceDataModule(image_size=32, num_procedural=32, batch_size=8, num_workers=0)
    walks: list[list[str]] = []

    step = model.training_step
    model.training_step = lambda *a: walks.append(files_crossed(lambda: step(*a)))  # type: ignore[method-assign]
    # max_steps counts optimizer steps: two per batch (D and G), so two batches
    trainer = L.Trainer(max_steps=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(model, data)
    walk = [
        "training/module.py",
        "images.py",
        "training/distributed.py",
        "nets/dcgan.py",
        "training/objective.py",
    ]
    assert walks == [walk, walk]  # the first batch (checked against the model) and a later one


class Flat(torch.nn.Module):
    """Stand-in features (no Inception weights needed): the first 16 pixel values in [0, 1]."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.float().flatten(1)[:, :16] / 255.0


def test_one_fid_evaluation_crosses_six_source_files(monkeypatch, tmp_path):
    metric = FrechetInceptionDistance(feature=Flat(), reset_real_features=False, normalize=False)
    monkeypatch.setattr(engine, "build_fid_metric", lambda *args: (metric, {"feature": 16}))
    model = FaceGAN(image_size=32, g_channels=8, d_channels=8)
    data = FaceDataModule(image_size=32, num_procedural=32, batch_size=8, num_workers=0)
    monitor = FIDMonitor(num_fake=8, num_real=8, batch_size=4, cache_dir=str(tmp_path), kid=False)
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(model, data)
    monitor.setup(trainer, model, "fit")
    walk = files_crossed(lambda: monitor.evaluate(trainer, model))
    assert walk == [
        "callbacks/fid.py",
        "metrics/fid.py",
        "training/distributed.py",  # the random streams kept; this process's share of the latents
        "training/module.py",  # FaceGAN.sample, BatchNorm standing statistics
        "nets/dcgan.py",
        "images.py",  # to uint8
    ]
