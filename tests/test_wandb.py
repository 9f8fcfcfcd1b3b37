"""The `configs/wandb.yaml` overlay with W&B really running offline: what the run folder recorded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from facegan.cli import main
from tests.conftest import FID_WEIGHTS, REPO
from tests.wandb_records import config, history

wandb = pytest.importorskip("wandb")


def fid_overlay(path: Path, **fid_args) -> Path:
    """A config that replaces the overlay's callbacks with a FIDMonitor sized for tests."""
    settings = {
        "num_fake": 8,
        "num_real": 16,
        "batch_size": 8,
        "every_n_epochs": 1,
        "weights_path": str(FID_WEIGHTS),
    }
    callback = {"class_path": "facegan.FIDMonitor", "init_args": {**settings, **fid_args}}
    path.write_text(yaml.safe_dump({"trainer": {"callbacks": [callback]}}))
    return path


@pytest.mark.skipif(not FID_WEIGHTS.is_file(), reason=f"FID Inception weights not found at {FID_WEIGHTS}")
def test_resume_continues_the_same_wandb_run(tmp_path):
    """Two processes, as a user runs them: fit, then fit --ckpt_path last. First in this file: once
    this test process has used W&B itself, its W&B service also serves the child processes."""
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "FACEGAN_CACHE": str(tmp_path / "cache"),
        "PYTHONWARNINGS": "ignore",
    }
    command = [sys.executable, "-m", "facegan", "fit", "--trainer.enable_progress_bar", "false"]
    command += ["--config", str(REPO / "configs/debug.yaml"), "--config", str(REPO / "configs/wandb.yaml")]
    command += ["--config", str(fid_overlay(tmp_path / "fid.yaml", num_fake=2, num_real=2))]
    for extra in (["--trainer.max_epochs", "1"], ["--trainer.max_epochs", "2", "--ckpt_path", "last"]):
        result = subprocess.run([*command, *extra], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted((tmp_path / "lightning_logs/wandb").glob("offline-run-*"))
    run_ids = {run.name.rsplit("-", 1)[1] for run in runs}
    assert len(runs) == 2 and len(run_ids) == 1  # one W&B run, two sessions
    run_id = run_ids.pop()
    resumed = history(runs[1] / f"run-{run_id}.wandb")
    assert any(row.get("epoch") == 1 for row in resumed)
    run_folder = tmp_path / "lightning_logs/facegan" / run_id
    grids = sorted(p.name for p in (run_folder / "samples").iterdir())
    assert grids == ["epoch=0000-kimg=0.024.png", "epoch=0001-kimg=0.048.png"]
    # The configs sit in the run folder, beside its checkpoints, not in the save_dir all runs share.
    configs = {p.name: p.read_bytes() for p in run_folder.glob("config*.yaml")}
    assert sorted(configs) == ["config-resume-1.yaml", "config.yaml"]
    assert not list((tmp_path / "lightning_logs").glob("config*.yaml"))
    # So a resume is compared with the run's recipe: another precision is refused, nothing written.
    refused = [*command, "--trainer.max_epochs", "3", "--ckpt_path", "last"]
    refused += ["--trainer.precision", "bf16-mixed"]
    result = subprocess.run(refused, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "'32-true' in the run's config.yaml, 'bf16-mixed' now" in result.stderr, result.stderr[-3000:]
    assert {p.name: p.read_bytes() for p in run_folder.glob("config*.yaml")} == configs


def test_wandb_overlay_parses_to_a_wandb_logger_and_fid_monitor(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(REPO / "configs/wandb.yaml"), "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["trainer"]["logger"]["class_path"] == "lightning.pytorch.loggers.WandbLogger"
    assert printed["trainer"]["logger"]["init_args"]["project"] == "facegan"
    assert [cb["class_path"] for cb in printed["trainer"]["callbacks"]] == ["facegan.FIDMonitor"]


@pytest.mark.skipif(not FID_WEIGHTS.is_file(), reason=f"FID Inception weights not found at {FID_WEIGHTS}")
def test_offline_run_records_fid_losses_samples_and_resolved_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cli = main(
            [
                "fit",
                "--config", str(REPO / "configs/debug.yaml"),
                "--config", str(REPO / "configs/wandb.yaml"),
                "--config", str(fid_overlay(tmp_path / "fid.yaml")),
                # absolute: W&B may still write the run's files after the test has left tmp_path
                "--trainer.logger.init_args.save_dir", str(tmp_path / "lightning_logs"),
                "--model.latent_dim", "64",
                "--model.g_lr", "1e-4",
                "--model.d_lr", "3e-4",
            ]
        )  # fmt: skip
        run_id = cli.trainer.logger.version
        wandb.finish()  # the CLI process would do this at exit
    finally:
        torch.set_num_threads(threads)

    runs = list((tmp_path / "lightning_logs/wandb").glob("offline-run-*"))
    assert len(runs) == 1 and runs[0].name.endswith(run_id)
    records = runs[0] / f"run-{run_id}.wandb"
    rows = history(records)
    fid_rows = [row for row in rows if "val/fid" in row]
    fids = [row["val/fid"] for row in fid_rows]
    assert len(fids) == 2 and all(value > 0 for value in fids)  # one per epoch (debug: 2 epochs)
    assert fids == pytest.approx([entry["fid"] for entry in cli.trainer.callbacks[0].history])
    assert all("val/fid_seconds" in row for row in fid_rows)
    for key in ("train/d_loss", "train/g_loss", "train/d_real", "train/d_fake", "train/kimg"):
        assert any(key in row for row in rows), key
    # Debug overlay: 3 batches of 8 images per epoch, logged at steps 0-2 and 3-5. Each epoch's FID
    # row, validation row and sample grid share the step of its last batch, and the FID row says the
    # images seen (so FID plots against train/kimg): 24 and 48 images.
    assert [row["trainer/global_step"] for row in fid_rows] == [2, 5]
    assert [row["train/kimg"] for row in fid_rows] == pytest.approx([0.024, 0.048])
    assert [row["trainer/global_step"] for row in rows if "val/d_real" in row] == [2, 5]
    images = [row for row in rows if row.get("samples/_type") == "images/separated"]
    assert [row["trainer/global_step"] for row in images] == [2, 5]
    assert [row["samples/captions"] for row in images] == [["epoch 0, 0.024 kimg"], ["epoch 1, 0.048 kimg"]]
    for row in images:
        assert (runs[0] / "files" / row["samples/filenames"][0]).is_file()
    # Throughput and learning rates at every logged step (log_every_n_steps=1), with the losses' steps.
    speed = [row for row in rows if "train/images_per_sec" in row]
    assert [row["trainer/global_step"] for row in speed] == list(range(6))
    assert all(0 < row["train/images_per_sec"] < float("inf") for row in speed)
    assert {(row["train/g_lr"], row["train/d_lr"]) for row in speed} == {(1e-4, 3e-4)}
    # D's sign accuracy: the fraction of the batch's 8 logits on the right side of 0.
    for key in ("train/d_acc_real", "train/d_acc_fake"):
        values = [row[key] for row in rows if key in row]
        assert len(values) == 6 and all(0 <= v <= 1 and 8 * v == round(8 * v) for v in values), key
    # The resolved config (every setting, not only the module's hyperparameters) is the run config,
    # each setting once: no flat copy of the module's / data module's hparams beside the sections.
    recorded = config(records)
    assert recorded["model"]["latent_dim"] == 64 and recorded["data"]["batch_size"] == 8
    assert recorded["model"]["ada_target"] is None  # None settings included, as in config.yaml
    assert recorded["model"]["ema_kimg"] == 10.0  # the CLI's default, recorded as any other setting
    assert recorded["trainer"]["max_epochs"] == 2 and "samples" in recorded and "checkpoint" in recorded
    assert set(recorded) - {"_wandb"} == {
        "seed_everything", "trainer", "model", "data", "allow_recipe_change", "samples", "checkpoint",
        "divergence", "progress", "budget", "ckpt_path", "weights_only",
    }  # fmt: skip
    # Callback settings are keys of their own (W&B shows a list of dicts as one string).
    fid_settings = recorded["trainer"]["callbacks"]["FIDMonitor"]["init_args"]
    assert (
        fid_settings["num_fake"] == 8
        and fid_settings["num_real"] == 16
        and fid_settings["every_n_kimg"] is None
    )
    assert lists_of_mappings(recorded) == []
    # Checkpoints and the local grids share one run folder: <save_dir>/<project>/<run id>/.
    run_folder = tmp_path / "lightning_logs/facegan" / run_id
    assert sorted(p.name for p in (run_folder / "samples").iterdir()) == [
        "epoch=0000-kimg=0.024.png",
        "epoch=0001-kimg=0.048.png",
    ]
    assert (run_folder / "checkpoints/last.ckpt").is_file()


def lists_of_mappings(value, path: str = "") -> list[str]:
    """Where a config holds a list with a mapping in it (one opaque value in W&B)."""
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in lists_of_mappings(item, f"{path}.{key}")]
    if isinstance(value, list) and any(isinstance(item, dict | list) for item in value):
        return [path]
    return []
