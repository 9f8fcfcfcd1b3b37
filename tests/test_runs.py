"""Run folders and logger steps: the Lightning/W&B internals facegan relies on still mean what it assumes."""

from __future__ import annotations

import csv

import lightning as L
import wandb
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from facegan.cli.runs import set_logger_version
from facegan.io.runs import logger_step, run_dir
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


def test_a_csv_logger_set_to_a_version_writes_into_that_run_folder(tmp_path):
    logger = CSVLogger(tmp_path, name="runs")
    assert set_logger_version(logger, "version_7")
    assert logger.version == "version_7"
    assert logger.log_dir == str(tmp_path / "runs" / "version_7")


def test_a_wandb_logger_set_to_a_version_continues_that_run(tmp_path):
    logger = WandbLogger(save_dir=str(tmp_path), offline=True)
    assert set_logger_version(logger, "abcd1234")
    assert logger.version == "abcd1234"
    try:
        assert logger.experiment.id == "abcd1234"
    finally:
        wandb.finish()


def test_other_loggers_are_left_alone():
    assert not set_logger_version(object(), "x")


def test_wandb_run_ids_differ_after_the_same_seed(tmp_path):
    """facegan does not choose W&B run ids: W&B draws them from `secrets`, so seed_everything (run by
    every fit) cannot make two runs share an id."""
    ids = []
    for _ in range(2):
        L.seed_everything(0, verbose=False)
        logger = WandbLogger(save_dir=str(tmp_path), offline=True)
        try:
            ids.append(logger.experiment.id)
        finally:
            wandb.finish()
    assert ids[0] != ids[1]
