"""Run folders and logger steps: the Lightning/W&B internals facegan relies on still mean what it assumes."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import lightning as L
from lightning.pytorch.loggers import CSVLogger

from facegan.cli.runs import set_logger_version
from facegan.io.runs import epoch_end_step, logger_step, run_dir
from tests.test_module import tiny_data, tiny_gan, tiny_trainer


def test_logger_step_is_the_step_lightning_logs_metrics_at(tmp_path):
    """Manual optimization: global_step counts 2 per batch, loggers 1 per batch; grids must use the latter."""
    seen = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            seen.append((trainer.global_step, logger_step(trainer)))

    logger = CSVLogger(tmp_path)
    trainer = tiny_trainer(logger=logger, log_every_n_steps=1, limit_train_batches=4, callbacks=[Record()])
    trainer.fit(tiny_gan(), tiny_data())
    assert [g for g, _ in seen] == [2, 4, 6, 8]
    assert [s for _, s in seen] == [0, 1, 2, 3]  # batches that stepped before this one
    assert logger_step(trainer) == 4
    with open(run_dir(trainer) / "metrics.csv") as file:
        steps = sorted({int(row["step"]) for row in csv.DictReader(file) if row.get("train/d_loss")})
    assert steps == [0, 1, 2, 3]  # the metrics of batch i are logged at logger_step i


def test_epoch_end_step_is_the_step_lightning_logs_epoch_end_metrics_at(tmp_path):
    """Grids and fit-end records made after an epoch's batches share the step of its epoch metrics."""
    seen = []

    class Record(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            seen.append(epoch_end_step(trainer))
            pl_module.log("epoch_mark", float(trainer.current_epoch))  # an epoch-end metric

    logger = CSVLogger(tmp_path)
    trainer = tiny_trainer(logger=logger, max_epochs=2, limit_train_batches=3, callbacks=[Record()])
    trainer.fit(tiny_gan(), tiny_data())
    with open(run_dir(trainer) / "metrics.csv") as file:
        logged = [int(row["step"]) for row in csv.DictReader(file) if row.get("epoch_mark")]
    assert seen == logged == [2, 5]  # the last batch of each epoch (3 batches: steps 0-2, 3-5)


def test_a_csv_logger_set_to_a_version_writes_into_that_run_folder(tmp_path):
    logger = CSVLogger(tmp_path, name="runs")
    assert set_logger_version(logger, "version_7")
    assert logger.version == "version_7"
    assert logger.log_dir == str(tmp_path / "runs" / "version_7")


def test_other_loggers_are_left_alone():
    assert not set_logger_version(object(), "x")


WANDB_CHECKS = """
import sys
import lightning as L
import wandb
from lightning.pytorch.loggers import WandbLogger
from facegan.cli.runs import set_logger_version

save_dir = sys.argv[1]
logger = WandbLogger(save_dir=save_dir, offline=True)
assert set_logger_version(logger, "abcd1234")
print("version", logger.version, logger.experiment.id)
wandb.finish()
ids = []
for _ in range(2):
    L.seed_everything(0, verbose=False)
    logger = WandbLogger(save_dir=save_dir, offline=True)
    ids.append(logger.experiment.id)
    wandb.finish()
print("seeded", *ids)
"""


def test_wandb_logger_versions_and_run_ids(tmp_path):
    """A W&B logger set to a version continues that run; and facegan does not choose W&B run ids: W&B
    draws them from `secrets`, so seed_everything (run by every fit) cannot make two runs share one.
    In a subprocess: a W&B service started by the test process would serve later tests' children."""
    result = subprocess.run(
        [sys.executable, "-c", WANDB_CHECKS, str(tmp_path)],
        capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    assert lines["version"] == "abcd1234 abcd1234"
    first, second = lines["seeded"].split()
    assert first != second


def test_last_is_the_newest_last_checkpoint_including_versioned_ones(tmp_path):
    from types import SimpleNamespace

    from facegan.cli.runs import find_last_checkpoint

    trainer = SimpleNamespace(loggers=[], default_root_dir=str(tmp_path))  # logger false: one folder
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for age, name in enumerate(["last.ckpt", "last-v1.ckpt", "last-copy.ckpt"]):
        (folder / name).write_bytes(b"x")
        os.utime(folder / name, ns=(10**9 * (age + 1), 10**9 * (age + 1)))
    assert find_last_checkpoint(trainer) == folder / "last-v1.ckpt"  # newer than an older run's last.ckpt
