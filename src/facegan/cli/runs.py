"""Resuming: which checkpoint ``--ckpt_path last`` means, and continuing the run that wrote it.

Nothing a run wrote is lost: a resume appends to the run's ``metrics.csv`` (Lightning's CSV writer
deletes an existing one when it starts; :func:`keep_csv_metrics`), writes its config beside the
run's ``config.yaml``, and a new run refuses a folder that already holds another run
(:func:`refuse_occupied_folder`, the ``--trainer.logger false`` case).

Lightning's loggers take their version (run folder, W&B run id) only in their constructors, and
LightningCLI has built the logger from the config before the checkpoint to resume is known. So
:func:`continue_run` sets it on the built logger: the one place where facegan writes loggers' private
attributes (``WandbLogger._id`` and ``._wandb_init``, ``CSVLogger``/``TensorBoardLogger._version``).
``tests/test_runs.py`` fails if these stop being what the loggers' ``version`` and W&B's run id come from.
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

from facegan.io.runs import run_dir, run_root

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
    logger = trainer.loggers[0]
    if not set_logger_version(logger, version):
        return None
    if isinstance(logger, CSVLogger) and trainer.is_global_zero:
        keep_csv_metrics(logger, run_folder / "metrics.csv")
    return version


def keep_csv_metrics(logger: CSVLogger, metrics: Path) -> None:
    """Start ``logger``'s writer on an existing ``metrics.csv`` without losing its rows.

    Lightning's writer deletes the file it finds when it starts. The file is moved aside while the
    writer starts (its rows are never only in memory: a crash leaves them in ``.metrics.csv.resume``,
    which the next resume puts back), and the writer is told the file's columns, so that its first
    save appends to it (``metrics_keys``, an attribute of the writer ``logger.experiment`` returns).
    """
    aside = metrics.with_name(".metrics.csv.resume")
    if aside.exists() and not metrics.exists():
        os.replace(aside, metrics)  # an earlier resume died in between
    if not metrics.exists():
        return
    with metrics.open(newline="") as file:
        header = next(csv.reader(file), [])
    os.replace(metrics, aside)
    try:
        with warnings.catch_warnings():  # "Previous log files ... will be deleted": they will not
            warnings.filterwarnings("ignore", message="Experiment logs directory")
            writer = logger.experiment
    finally:
        os.replace(aside, metrics)
    writer.metrics_keys = sorted(header)


def run_config(ckpt_path: Path) -> dict[str, Any] | None:
    """The ``config.yaml`` of the run folder holding ``ckpt_path`` (``<run>/checkpoints/x.ckpt``), if any."""
    path = ckpt_path.parent.parent / "config.yaml"
    if ckpt_path.parent.name != "checkpoints" or not path.is_file():
        return None
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return config if isinstance(config, dict) else None


def refuse_occupied_folder(trainer: L.Trainer) -> None:
    """A new run without a logger writes straight into ``default_root_dir``: refuse one holding a run.

    With a logger every run gets a fresh ``version_N`` folder; without one, a second run would
    overwrite the first one's ``config.yaml`` and grids and mix its checkpoints with them.
    """
    if trainer.loggers:
        return
    folder = run_dir(trainer)
    found = [name for name in ("config.yaml", "checkpoints", "samples") if (folder / name).exists()]
    if found:
        raise ValueError(
            f"{folder} already holds a run ({', '.join(found)}) and --trainer.logger false writes into it "
            "directly: resume it with --ckpt_path last, or give this run another --trainer.default_root_dir"
        )


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
