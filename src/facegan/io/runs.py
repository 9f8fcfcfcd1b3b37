"""Where a run's files go (its folder under the first logger) and at which step its records are logged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch.utils.data import DataLoader

from facegan.data.resident import DeviceBatches
from facegan.images import batch_images


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


def drawn_per_rank(trainer: L.Trainer, batch_idx: int) -> int | None:
    """Images each process's training loader drew for batch ``batch_idx``, before any was skipped.

    Read from the loader's batch size and its (per-process) sampler's length, so it is the same on
    every process without communication, which the batch's own size is not once ``skip_bad_images``
    drops an unreadable image on one of them. ``None`` when the loader does not say (a user's own
    batch sampler or iterable).
    """
    loader = trainer.train_dataloader
    batch_size = getattr(loader, "batch_size", None)
    if isinstance(loader, DeviceBatches):
        return loader.batch_size
    if not isinstance(loader, DataLoader) or batch_size is None:
        return None
    try:
        total = len(loader.sampler)  # type: ignore[arg-type]
    except TypeError:
        return None
    return batch_size if loader.drop_last else max(0, min(batch_size, total - batch_idx * batch_size))


def images_drawn(trainer: L.Trainer, batch: Any, batch_idx: int) -> tuple[int, bool]:
    """``(images of this training batch over all processes, whether that is the same on every one)``,
    counted on the host from shapes and loaders (no device read, no collective).

    One process: the batch's own images. Under DDP: what the loaders drew (:func:`drawn_per_rank`)
    times the world size, identical on every process; for a loader that does not say, this
    process's batch times the world size, which may differ between processes (``False``).
    """
    images = batch_images(batch).shape[0]  # a shape: host metadata
    if trainer.world_size == 1:
        return images, True
    drawn = drawn_per_rank(trainer, batch_idx)
    return (images if drawn is None else drawn) * trainer.world_size, drawn is not None
