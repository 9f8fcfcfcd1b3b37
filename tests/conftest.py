"""Shared test settings: offline W&B, paths to the read-only ../shared assets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CELEBA_SAMPLE = SHARED / "data" / "celeba-sample"
FID_WEIGHTS = SHARED / "fid" / "weights-inception-2015-12-05-6726825d.pth"

os.environ.setdefault("WANDB_MODE", "offline")  # tests never touch the network
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(autouse=True)
def _wandb_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
