"""docs/metrics.md's "FID in your own project" example runs as written: a user's own LightningDataModule over
torchvision ImageFolder, FIDMonitor, SampleGridMonitor, an offline WandbLogger and
ModelCheckpoint(monitor="val/fid"). Only the data path and the sizes are replaced (tiny, for CPU)."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import FID_WEIGHTS, REPO
from tests.wandb_records import closed_records, history

MARKER = "<!-- example: own-data -->"
SETTINGS = "SIZE, WIDTH, BATCH, EPOCHS, NUM_FAKE = 64, 64, 64, 25, 2000"


def docs_example() -> str:
    text = (REPO / "docs" / "metrics.md").read_text()
    assert MARKER in text, "docs/metrics.md lost its own-data example"
    block = re.search(r"```python\n(.*?)```", text[text.index(MARKER) :], re.S)
    assert block is not None
    return block.group(1)


def test_the_docs_example_trains_measures_fid_logs_to_wandb_and_keeps_the_best_checkpoint(tmp_path):
    if not FID_WEIGHTS.is_file():
        pytest.skip(f"FID Inception weights not found at {FID_WEIGHTS}")
    code = docs_example()
    assert 'FACES = "/data/faces"' in code and SETTINGS in code  # what this test replaces is still there
    faces = tmp_path / "faces" / "people"
    faces.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(16):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(faces / f"{i}.jpg")
    code = code.replace('FACES = "/data/faces"', f"FACES = {str(tmp_path / 'faces')!r}")
    code = code.replace(SETTINGS, "SIZE, WIDTH, BATCH, EPOCHS, NUM_FAKE = 32, 8, 8, 2, 8")
    report = tmp_path / "report.json"  # what the example's objects hold, for the assertions below
    code += f"""
import json
fid = next(cb for cb in trainer.callbacks if isinstance(cb, FIDMonitor))
json.dump({{"history": fid.history, "cache_hit": fid.cache_hit, "cache_path": str(fid.cache_path),
           "best_path": trainer.checkpoint_callback.best_model_path,
           "best_score": float(trainer.checkpoint_callback.best_model_score)}}, open({str(report)!r}, "w"))
"""
    (tmp_path / "example.py").write_text(code)
    env = {**os.environ, "FACEGAN_FID_WEIGHTS": str(FID_WEIGHTS), "FACEGAN_CACHE": str(tmp_path / "cache"),
           "WANDB_MODE": "offline", "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    # its own process, as a user's script: W&B's service and the run end with it
    result = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "best-fid.ckpt" in result.stdout  # the example's own print
    state = json.loads(report.read_text())
    assert [entry["epoch"] for entry in state["history"]] == [0, 1]  # every epoch (the fit's end is the last)
    assert state["cache_hit"] is False and Path(state["cache_path"]).is_file()  # keyed by the loader's pixels
    assert (tmp_path / state["best_path"]).is_file()
    assert state["best_score"] == min(entry["fid"] for entry in state["history"])
    runs = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    closed_records(runs[0])
    logged = [row["val/fid"] for row in history(runs[0]) if "val/fid" in row]
    assert len(logged) == 2 and all(math.isfinite(value) for value in logged)
    grids = [row for row in history(runs[0]) if row.get("samples/_type") == "images/separated"]
    assert len(grids) == 2 and (runs[0].parent / "files" / grids[0]["samples/filenames"][0]).is_file()
