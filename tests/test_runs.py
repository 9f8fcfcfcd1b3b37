"""Run folders and logger steps: the Lightning/W&B internals facegan relies on still mean what it assumes."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import lightning as L
from jsonargparse import Namespace
from lightning.pytorch.loggers import CSVLogger

from facegan.cli.resume import continue_run, find_last_checkpoint, logger_root
from facegan.io.runs import last_batch_step, logger_step, run_dir
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


def test_last_batch_step_is_the_step_lightning_logs_epoch_end_metrics_at(tmp_path):
    """Grids and fit-end records made after an epoch's batches share the step of its epoch metrics."""
    seen = []

    class Record(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            seen.append(last_batch_step(trainer))
            pl_module.log("epoch_mark", float(trainer.current_epoch))  # an epoch-end metric

    logger = CSVLogger(tmp_path)
    trainer = tiny_trainer(logger=logger, max_epochs=2, limit_train_batches=3, callbacks=[Record()])
    trainer.fit(tiny_gan(), tiny_data())
    with open(run_dir(trainer) / "metrics.csv") as file:
        logged = [int(row["step"]) for row in csv.DictReader(file) if row.get("epoch_mark")]
    assert seen == logged == [2, 5]  # the last batch of each epoch (3 batches: steps 0-2, 3-5)


def logger_settings(class_path: str, **init_args) -> Namespace:
    """The ``trainer`` settings as LightningCLI parsed them, before building the logger."""
    logger = Namespace(class_path=class_path, init_args=Namespace(**init_args))
    return Namespace(logger=logger, default_root_dir=None)


def test_a_csv_logger_set_to_a_version_writes_into_that_run_folder(tmp_path):
    trainer = logger_settings("lightning.pytorch.loggers.CSVLogger", save_dir=str(tmp_path), name="runs")
    root = logger_root(trainer)
    assert root == tmp_path / "runs"
    assert continue_run(trainer, root / "version_7/checkpoints/last.ckpt", root) == "version_7"
    logger = CSVLogger(**trainer.logger.init_args.as_dict())  # as LightningCLI builds it
    assert logger.version == "version_7"
    assert logger.log_dir == str(tmp_path / "runs" / "version_7")
    # a checkpoint of another root (or not in a run's checkpoints/) starts a new run
    assert continue_run(trainer, tmp_path / "elsewhere/version_2/checkpoints/last.ckpt", root) is None
    assert continue_run(trainer, root / "version_7/last.ckpt", root) is None


def test_other_loggers_are_left_alone(tmp_path):
    trainer = logger_settings("lightning.pytorch.loggers.logger.DummyLogger")
    assert continue_run(trainer, tmp_path / "x/checkpoints/last.ckpt", tmp_path) is None
    assert trainer.logger.init_args.as_dict() == {}


WANDB_CHECKS = """
import sys
import lightning as L
import wandb
from jsonargparse import Namespace
from lightning.pytorch.loggers import WandbLogger
from facegan.cli.resume import continue_run, logger_root

save_dir = sys.argv[1]
logger = Namespace(class_path="lightning.pytorch.loggers.WandbLogger", init_args=Namespace(save_dir=save_dir, project="p", offline=True))
trainer = Namespace(logger=logger, default_root_dir=None)
root = logger_root(trainer)
print("root", root)
print("continued", continue_run(trainer, root / "abcd1234" / "checkpoints" / "last.ckpt", root))
logger = WandbLogger(**trainer.logger.init_args.as_dict(), **trainer.logger.dict_kwargs)
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
    assert lines["root"] == str(tmp_path / "p") and lines["continued"] == "abcd1234"
    assert lines["version"] == "abcd1234 abcd1234"
    first, second = lines["seeded"].split()
    assert first != second


def test_last_is_the_newest_last_checkpoint_including_versioned_ones(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for age, name in enumerate(["last.ckpt", "last-v1.ckpt", "last-copy.ckpt"]):
        (folder / name).write_bytes(b"x")
        os.utime(folder / name, ns=(10**9 * (age + 1), 10**9 * (age + 1)))
    assert find_last_checkpoint(tmp_path) == folder / "last-v1.ckpt"  # newer than an older run's last.ckpt
