"""Where a run's files go (its folder under the first logger) and at which step its records are logged."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import lightning as L
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger


def logger_step(trainer: L.Trainer) -> int:
    """The step Lightning itself logs metrics at: batches that stepped, not ``global_step``.

    Under manual optimization ``global_step`` counts every optimizer step (two per GAN iteration), so
    images logged at it would run ahead of the metrics, and W&B drops a later log with a smaller step.
    Lightning has no public accessor: this is facegan's one read of the private
    ``_batches_that_stepped`` (``tests/test_runs.py`` fails if it stops being the loggers' step).
    """
    return int(trainer.fit_loop.epoch_loop._batches_that_stepped)


def logs_this_batch(trainer: L.Trainer) -> bool:
    """Whether Lightning writes the loggers after the batch in progress (asked from ``training_step``
    or ``on_train_batch_end``): every ``log_every_n_steps`` batches, and every batch under
    ``fast_dev_run``. (It also writes when ``trainer.should_stop`` is set, which callbacks may do later.)"""
    settings = cast(Any, trainer)  # both set by Lightning at runtime, not declared on Trainer
    every = settings.log_every_n_steps
    return bool(settings.fast_dev_run) or bool(every) and (logger_step(trainer) + 1) % every == 0


def last_batch_step(trainer: L.Trainer) -> int:
    """The step the last trained batch's metrics were logged at (``metrics.csv``'s ``step``), from any
    hook; 0 before the first batch. Records made at epoch end (grids, FID) thus share the step of that
    epoch's metrics, and checkpoint names and the Ctrl-C message give a step found in the logs.

    Inside ``on_train_batch_end`` the batch is not counted yet; after it (epoch ends, an interrupt) it is.
    """
    progress = cast(Any, trainer.fit_loop.epoch_loop.batch_progress.current)  # declared without processed
    return max(0, logger_step(trainer) - (0 if progress.processed > progress.completed else 1))


def run_root(trainer: L.Trainer) -> Path:
    """``<save_dir>/<name>`` of the first logger: the folder holding one sub-folder per run."""
    if not trainer.loggers:
        return Path(trainer.default_root_dir)
    logger = trainer.loggers[0]
    return Path(logger.save_dir or trainer.default_root_dir) / str(logger.name)


def run_dir(trainer: L.Trainer) -> Path:
    """The run folder, where ``ModelCheckpoint`` puts ``checkpoints/``: ``lightning_logs/version_3``
    (TensorBoard, CSV), ``<save_dir>/<project>/<run id>`` (W&B), ``default_root_dir`` without a logger."""
    if not trainer.loggers:
        return Path(trainer.default_root_dir)
    logger = trainer.loggers[0]
    if isinstance(logger, TensorBoardLogger | CSVLogger):
        return Path(logger.log_dir)
    version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
    return run_root(trainer) / version
