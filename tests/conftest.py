"""Shared test settings: offline W&B, paths to the read-only ../shared assets."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CELEBA_SAMPLE = SHARED / "data" / "celeba-sample"
FID_WEIGHTS = SHARED / "fid" / "weights-inception-2015-12-05-6726825d.pth"

os.environ.setdefault("WANDB_MODE", "offline")  # tests never touch the network
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(autouse=True)
def _wandb_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")


@pytest.fixture(autouse=True)
def _a_wandb_service_per_process():
    """W&B's in-process service announces itself in ``WANDB_SERVICE``; a CLI run a later test launches
    would attach to it (its run file then appears late, a resumed run id is "in use"). Each process
    its own, as for users."""
    os.environ.pop("WANDB_SERVICE", None)
    yield
    os.environ.pop("WANDB_SERVICE", None)


def _repository_files() -> set[str] | None:
    """What ``git status`` shows of the checkout, ignored files included (``None`` without git)."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--ignored", "--untracked-files=all"],
            cwd=REPO, capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    caches = ("__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache", ".egg-info", ".venv")
    return {line for line in out.splitlines() if not any(part in line for part in caches)}


@pytest.fixture(scope="session", autouse=True)
def _tests_never_write_into_the_repository():
    before = _repository_files()
    yield
    after = _repository_files()
    if before is not None and after is not None and after != before:
        raise AssertionError(f"the tests wrote into the repository: {sorted(after - before)}")


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread: on 2 shared cores, two threads make Inception and eigvals many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def weights() -> str:
    """The FID Inception weights file from ../shared; tests that need it skip without it."""
    if not FID_WEIGHTS.is_file():
        pytest.skip(f"FID Inception weights not found at {FID_WEIGHTS}")
    return str(FID_WEIGHTS)
