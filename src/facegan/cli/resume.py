"""Resuming: which checkpoint ``--ckpt_path last`` means, and continuing the run that wrote it.

Nothing a run wrote is lost: a resume continues the run's folder (and W&B run), appends to its
``metrics.csv`` (Lightning's CSV writer deletes an existing one when it starts; :func:`keep_csv_metrics`),
writes its config beside the run's ``config.yaml``, and a new run refuses a folder that already holds
another run (:func:`refuse_occupied_folder`, the ``--trainer.logger false`` case).

Lightning's loggers take their run (folder version, W&B run id) in their constructors, so the CLI
finds the checkpoint before it builds them and puts the run into the logger's settings
(:func:`continue_run`: ``version=`` for CSV/TensorBoard, ``id=`` and ``resume="allow"`` for W&B), as
``fit --config RUN/config.yaml`` with the run's version written in would; the run's
``config-resume-N.yaml`` records them.
"""

from __future__ import annotations

import csv
import importlib
import os
import re
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from jsonargparse import Namespace
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

from facegan.io.runs import run_dir

LAST = re.compile(r"last(-v\d+)?\.ckpt")  # what ModelCheckpoint(save_last=True) names


def find_last_checkpoint(root: Path) -> Path | None:
    """The newest ``last.ckpt`` among the runs under ``root`` (:func:`logger_root`), or in ``root``
    itself (no logger).

    ``last-v1.ckpt``, ``last-v2.ckpt`` ... count too: ModelCheckpoint writes them when a folder already
    holds another run's ``last.ckpt``.
    """
    candidates = [
        path
        for pattern in ("*/checkpoints/last*.ckpt", "checkpoints/last*.ckpt")
        for path in root.glob(pattern)
        if LAST.fullmatch(path.name)
    ]
    return max(candidates, key=lambda p: p.stat().st_mtime_ns) if candidates else None


def _first_logger(trainer: Any) -> Any:
    logger = trainer.get("logger")
    return (logger[0] if logger else False) if isinstance(logger, list) else logger


def _logger_class(logger: Any) -> type:
    module, _, name = str(logger.class_path).rpartition(".")  # checked by the parser already
    return getattr(importlib.import_module(module), name)


def _init_args(logger: Any) -> dict[str, Any]:
    args = logger.get("init_args") or {}
    return dict(args.as_dict() if isinstance(args, Namespace) else args)


def logger_root(trainer: Any) -> Path:
    """``<save_dir>/<name>`` of the first logger in the (parsed, not yet built) ``trainer`` settings:
    the folder holding one folder per run (``default_root_dir`` without a logger).

    A configured logger is built once to read them (loggers start nothing before they log); the CLI's
    default one is ``CSVLogger(default_root_dir)``.
    """
    default_root = Path(trainer.get("default_root_dir") or os.getcwd())
    logger = _first_logger(trainer)
    if logger is None or logger is True:
        return default_root / "lightning_logs"
    if logger is False:
        return default_root
    built = _logger_class(logger)(**_init_args(logger))
    return Path(built.save_dir or default_root) / str(built.name)


def continue_run(trainer: Any, ckpt_path: Path, root: Path) -> str | None:
    """Make the first logger of the ``trainer`` settings continue the run that wrote ``ckpt_path``
    (same folder, same W&B run): its ``version`` (CSV, TensorBoard) or ``id`` (W&B) is set there.

    Applies when the checkpoint lies in ``<root>/<version>/checkpoints/``; returns the version (run id)
    continued, or ``None`` (the resumed training then starts a new run, as with other loggers).
    ``None`` or ``True`` (the CLI's default CSV logger) are returned as is for the caller to build.
    """
    run_folder = ckpt_path.parent.parent
    if ckpt_path.parent.name != "checkpoints" or run_folder.parent.resolve() != root.resolve():
        return None
    logger = _first_logger(trainer)
    if logger is None or logger is True:
        return run_folder.name
    if logger is False:
        return None
    cls = _logger_class(logger)
    if issubclass(cls, WandbLogger):
        logger.init_args.id = run_folder.name
        logger.dict_kwargs = {**(logger.get("dict_kwargs") or {}), "resume": "allow"}  # wandb.init's
    elif issubclass(cls, CSVLogger | TensorBoardLogger):
        logger.init_args.version = run_folder.name
    else:
        return None
    return run_folder.name


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
