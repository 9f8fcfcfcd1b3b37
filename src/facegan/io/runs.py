"""Where a run's files go (its folder under the first logger) and at which step its records are logged."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import lightning as L
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger


def logger_step(trainer: L.Trainer) -> int:
    """The step Lightning itself logs metrics at: batches that stepped, not ``global_step``.

    Under manual optimization ``global_step`` counts every optimizer step (two per GAN iteration), so
    images logged at ``global_step`` would run ahead of the metrics, and W&B drops any later log
    with a smaller step.

    Lightning has no public accessor for this counter: this is facegan's one read of the private
    ``_batches_that_stepped`` (Lightning 2.x), and ``tests/test_runs.py`` fails if it disappears or
    stops being the step the loggers record at.
    """
    return int(trainer.fit_loop.epoch_loop._batches_that_stepped)


def epoch_end_step(trainer: L.Trainer) -> int:
    """The step Lightning logs epoch-end metrics at (``on_train_epoch_end``, and after the fit): the
    epoch's last batch's, one below :func:`logger_step` once the batch loop has counted that batch.

    Records made in those hooks (sample grids, fit-end FID) use it, so they share the step of the
    epoch's metrics (``val/fid``, ``val/d_real``) instead of landing one step later on their own.
    """
    return max(0, logger_step(trainer) - 1)


def last_batch_step(trainer: L.Trainer) -> int:
    """The step the last trained batch's metrics were logged at (``metrics.csv``'s ``step``), from any
    hook: the number that checkpoint names and the Ctrl-C message give, so a user finds it in the logs.

    Inside ``on_train_batch_end`` the batch is not counted yet (:func:`logger_step` is its own step);
    after it (epoch ends, validation, an interrupt) it is (:func:`epoch_end_step`). ``-1`` before the
    first batch.
    """
    progress = cast(Any, trainer.fit_loop.epoch_loop.batch_progress.current)  # declared without processed
    return logger_step(trainer) - (0 if progress.processed > progress.completed else 1)


def run_root(trainer: L.Trainer) -> Path:
    """``<save_dir>/<name>`` of the first logger: the folder holding one sub-folder per run."""
    if not trainer.loggers:
        return Path(trainer.default_root_dir)
    logger = trainer.loggers[0]
    return Path(logger.save_dir or trainer.default_root_dir) / str(logger.name)


def run_dir(trainer: L.Trainer) -> Path:
    """The run folder: where ``ModelCheckpoint`` puts ``checkpoints/`` for the first logger.

    ``<save_dir>/<name>/<version>`` (``lightning_logs/version_3`` for TensorBoard/CSV,
    ``<save_dir>/<project>/<run id>`` for W&B); ``default_root_dir`` without a logger.
    """
    if not trainer.loggers:
        return Path(trainer.default_root_dir)
    logger = trainer.loggers[0]
    if isinstance(logger, TensorBoardLogger | CSVLogger):
        return Path(logger.log_dir)
    version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
    return run_root(trainer) / version
