"""Resuming: which checkpoint ``--ckpt_path last`` means, and continuing the run that wrote it.

Lightning's loggers take their version (run folder, W&B run id) only in their constructors, and
LightningCLI has built the logger from the config before the checkpoint to resume is known. So
:func:`continue_run` sets it on the built logger: the one place where facegan writes loggers' private
attributes (``WandbLogger._id`` and ``._wandb_init``, ``CSVLogger``/``TensorBoardLogger._version``).
``tests/test_runs.py`` fails if these stop being what the loggers' ``version`` and W&B's run id come from.
"""

from __future__ import annotations

import re
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

from facegan.io.runs import run_root

LAST = re.compile(r"last(-v\d+)?\.ckpt")  # what ModelCheckpoint(save_last=True) names


def find_last_checkpoint(trainer: L.Trainer) -> Path | None:
    """The newest ``last.ckpt`` among the runs of the trainer's first logger (or its root dir).

    ``last-v1.ckpt``, ``last-v2.ckpt`` ... count too: ModelCheckpoint writes them when a folder already
    holds another run's ``last.ckpt``.
    """
    root = run_root(trainer)
    candidates = [
        path
        for pattern in ("*/checkpoints/last*.ckpt", "checkpoints/last*.ckpt")
        for path in root.glob(pattern)
        if LAST.fullmatch(path.name)
    ]
    return max(candidates, key=lambda p: p.stat().st_mtime_ns) if candidates else None


def continue_run(trainer: L.Trainer, ckpt_path: Path) -> str | None:
    """Make the first logger continue the run that wrote ``ckpt_path`` (same folder, same W&B run).

    Applies when the checkpoint lies in ``<save_dir>/<name>/<version>/checkpoints/`` of that logger;
    returns the version (run id) continued, or ``None`` (the resumed training then starts a new run).
    """
    if not trainer.loggers or ckpt_path.parent.name != "checkpoints":
        return None
    run_folder = ckpt_path.parent.parent
    if run_folder.parent.resolve() != run_root(trainer).resolve():
        return None
    version = run_folder.name
    return version if set_logger_version(trainer.loggers[0], version) else None


def set_logger_version(logger: object, version: str) -> bool:
    """Make a logger that has not started yet write to run ``version``; ``False`` for other loggers."""
    if isinstance(logger, WandbLogger):
        logger._id = version
        logger._wandb_init.update(id=version, resume="allow")
    elif isinstance(logger, TensorBoardLogger | CSVLogger):
        logger._version = version
    else:
        return False
    return True
