"""A CLI run's records, and resuming it in the run that wrote the checkpoint (:func:`continue_run`,
:func:`keep_csv_metrics`, ``config-resume-N.yaml``) with the checkpoint's recipe: a model/data setting a
command leaves out is taken from it, one it gives (:func:`given_settings`) otherwise is refused."""

from __future__ import annotations

import csv
import importlib
import inspect
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from jsonargparse import ArgumentParser, Namespace
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from lightning_utilities.core.imports import RequirementCache

from facegan.io.checkpoints import plain, public_hparams
from facegan.io.runs import run_dir

LAST = re.compile(r"last(-v\d+)?\.ckpt")  # what ModelCheckpoint(save_last=True) names
# parser.dump/save(skip_unset=False) keeps None settings; jsonargparse before 4.49 calls it skip_none
KEEP_NONE = {"skip_unset" if RequirementCache("jsonargparse>=4.49") else "skip_none": False}
SECTIONS = ("model", "data")
MAX_YAML_VALUES = 100_000  # values of a config once its aliases are expanded; a recipe has ~100
# How a run executes, not what it learns: these may change on resume.
EXECUTION = {
    "model": {"channels_last", "fused_adam", "compile"},
    "data": {"num_workers", "pin_memory", "persistent_workers", "cache", "cache_dir", "device_resident",
             "resident_budget_gb", "skip_bad_images", "max_skipped_fraction"},
}  # fmt: skip


# ------------------------------------------------------------------------ the run a resume continues
def find_last_checkpoint(root: Path) -> Path | None:
    """The newest ``last.ckpt`` (or ``last-vN.ckpt``: ModelCheckpoint's name when a folder already holds
    another run's) among the runs under ``root`` (:func:`logger_root`), or in ``root`` itself (no logger)."""
    candidates = [
        path
        for pattern in ("*/checkpoints/last*.ckpt", "checkpoints/last*.ckpt")
        for path in root.glob(pattern)
        if LAST.fullmatch(path.name)
    ]
    return max(candidates, key=lambda p: p.stat().st_mtime_ns) if candidates else None


def _first_logger(trainer: Any) -> tuple[Any, type | None]:
    """The first logger of the parsed ``trainer`` settings (``None``/``True``: the CLI's CSV logger), and its class."""
    logger = trainer.get("logger")
    logger = (logger[0] if logger else False) if isinstance(logger, list) else logger
    if logger is None or logger is True or logger is False:
        return logger, None
    module, _, name = str(logger.class_path).rpartition(".")  # checked by the parser already
    return logger, getattr(importlib.import_module(module), name)


def logger_root(trainer: Any) -> Path:
    """``<save_dir>/<name>`` of the first logger in the (parsed, not yet built) ``trainer`` settings: the
    folder of its runs; ``default_root_dir`` without a logger. A configured logger is built to read them
    (loggers start nothing before they log)."""
    default_root = Path(trainer.get("default_root_dir") or os.getcwd())
    logger, cls = _first_logger(trainer)
    if cls is None:
        return default_root if logger is False else default_root / "lightning_logs"
    args = logger.get("init_args") or {}
    built = cls(**(args.as_dict() if isinstance(args, Namespace) else args))
    return Path(built.save_dir or default_root) / str(built.name)


def continue_run(trainer: Any, ckpt_path: Path, root: Path) -> str | None:
    """Make the first logger of the ``trainer`` settings continue the run (same folder, same W&B run) of a
    checkpoint in ``<root>/<version>/checkpoints/``; the version (run id) continued, or ``None`` (a new run)."""
    run_folder = ckpt_path.parent.parent
    if ckpt_path.parent.name != "checkpoints" or run_folder.parent.resolve() != root.resolve():
        return None
    logger, cls = _first_logger(trainer)
    if cls is None:  # the CLI builds its default CSV logger with this version
        return None if logger is False else run_folder.name
    if issubclass(cls, WandbLogger):
        logger.init_args.id = run_folder.name
        logger.dict_kwargs = {**(logger.get("dict_kwargs") or {}), "resume": "allow"}  # wandb.init's
    elif issubclass(cls, CSVLogger | TensorBoardLogger):
        logger.init_args.version = run_folder.name
    else:
        return None
    return run_folder.name


def keep_csv_metrics(logger: CSVLogger, metrics: Path) -> None:
    """Start ``logger``'s writer on an existing ``metrics.csv`` without losing its rows: Lightning's writer
    deletes the file it finds, so it is moved aside meanwhile (a crash leaves ``.metrics.csv.resume``, which
    the next resume puts back), and the writer is told its columns so that its first save appends."""
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


def refuse_occupied_folder(trainer: L.Trainer) -> None:
    """Without a logger a run writes straight into ``default_root_dir``: a new one refuses a folder holding
    a run (it would overwrite its ``config.yaml`` and grids, and mix their checkpoints)."""
    if trainer.loggers:
        return
    folder = run_dir(trainer)
    found = [name for name in ("config.yaml", "checkpoints", "samples") if (folder / name).exists()]
    if found:
        raise ValueError(
            f"{folder} already holds a run ({', '.join(found)}) and --trainer.logger false writes into it "
            "directly: resume it with --ckpt_path last, or give this run another --trainer.default_root_dir"
        )


# ------------------------------------------------------------------------ the recipe a checkpoint keeps
def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """Values under ``node`` with every alias expanded, counted without expanding (shared nodes once)."""
    if id(node) in sizes:
        return sizes[id(node)]
    sizes[id(node)] = 1  # a node that contains itself (a recursive alias) counts once
    children = node.value if isinstance(node, yaml.SequenceNode) else []
    if isinstance(node, yaml.MappingNode):
        children = [child for pair in node.value for child in pair]
    sizes[id(node)] = size = 1 + sum(_expanded_size(child, sizes) for child in children)
    return size


def load_config(value: str, option: str) -> Any:
    """The YAML of a ``--config`` (a file, or YAML text), refused with one line when its aliases expand
    beyond :data:`MAX_YAML_VALUES` values (a "billion laughs" file, which the parser would walk for minutes)."""
    path = Path(value)
    try:
        text = path.read_text(encoding="utf-8") if path.is_file() else value
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None  # not ours to judge: the parser reports what is wrong with it
    size = 0 if node is None else _expanded_size(node, {})
    if size > MAX_YAML_VALUES:
        raise ValueError(
            f"{option} {value!r}: its YAML aliases expand to {size:,} values (at most {MAX_YAML_VALUES:,}); "
            "a config that large is not a recipe: write the settings out without nested aliases"
        )
    return yaml.safe_load(text)


def _keys(config: Any, prefix: str) -> Iterable[str]:
    return (f"{prefix}.{name}" for name in config) if isinstance(config, Mapping) else ()


def _sections(config: Mapping[str, Any]) -> set[str]:
    """The model/data keys of a config, of the subcommand's section in a top-level one."""
    for name in ("fit", "validate", "test"):
        if isinstance(config.get(name), Mapping):
            config = config[name]
    return {key for section in SECTIONS for key in _keys(config.get(section), section)}


def given_settings(args: Sequence[str] | Mapping[str, Any]) -> set[str]:
    """``{"model.arch", "data.root", ...}``: the model/data settings a command line (or LightningCLI's
    mapping of settings) gives, as flags or in ``--config``/``--model``/``--data`` files (YAML bounded by
    :func:`load_config`). A parsed config cannot say it: its defaults are filled in."""
    if isinstance(args, Mapping):
        return _sections(args)
    given: set[str] = set()
    tokens = list(args)
    for i, token in enumerate(tokens):
        option, equals, inline = token.partition("=")
        value = inline if equals else (tokens[i + 1] if i + 1 < len(tokens) else None)
        if option.startswith(tuple(f"--{section}." for section in SECTIONS)):
            given.add(option[2:])
        elif option in ("--config", *(f"--{section}" for section in SECTIONS)) and value is not None:
            loaded = load_config(value, option)
            if option != "--config":
                given.update(_keys(loaded, option[2:]))
            elif isinstance(loaded, Mapping):
                given.update(_sections(loaded))
    return given


def recipe_changes(
    saved: Mapping[str, Any] | None, now: Mapping[str, Any], cls: type, section: str
) -> list[tuple[str, Any, Any]]:
    """``(name, value in the checkpoint, value now)`` for each recipe setting of ``section`` that differs
    between the ``saved`` hyperparameters and ``now``; one the checkpoint predates counts as its default."""
    saved = public_hparams(saved)
    if not saved:  # a checkpoint without them (not written by LightningCLI): nothing to compare
        return []
    parameters = inspect.signature(cls.__init__).parameters.values()  # type: ignore[misc]
    saved = {**{p.name: p.default for p in parameters if p.default is not p.empty}, **saved}
    names = sorted(set(public_hparams(now)) - EXECUTION[section])
    return [
        (name, saved.get(name), now[name]) for name in names if plain(saved.get(name)) != plain(now[name])
    ]


def describe(section: str, name: str, before: Any, after: Any, where: str = "the checkpoint") -> str:
    return f"--{section}.{name}: {plain(before)!r} in {where}, {plain(after)!r} now"


def precision_name(value: Any) -> str:
    """Lightning's unified name of a ``precision`` setting (``16`` -> ``"16-mixed"``, ``None`` -> ``"32-true"``)."""
    value = "32" if value is None else str(value)
    return {"32": "32-true", "64": "64-true", "16": "16-mixed", "bf16": "bf16-mixed"}.get(value, value)


def saved_precision(ckpt_path: Path) -> str | None:
    """The ``trainer.precision`` (:func:`precision_name`) in the ``config.yaml`` of the run folder holding
    ``ckpt_path`` (``<run>/checkpoints/x.ckpt``), if there is one that says it."""
    path = ckpt_path.parent.parent / "config.yaml"
    if ckpt_path.parent.name != "checkpoints" or not path.is_file():
        return None
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    trainer = config.get("trainer") if isinstance(config, dict) else None
    return (
        precision_name(trainer["precision"]) if isinstance(trainer, dict) and "precision" in trainer else None
    )


# ------------------------------------------------------------------------ the config a run records
def logged_config(parser: ArgumentParser, config: Namespace) -> dict[str, Any]:
    """The resolved ``config`` as nested plain values, ``None`` settings included (as in ``config.yaml``)."""
    settings = yaml.safe_load(parser.dump(config, **KEEP_NONE))
    settings.pop("config", None)  # the paths of the --config files, not settings
    return keyed_by_class(settings)


def keyed_by_class(value: Any) -> Any:
    """``[{"class_path": "a.B", ...}, ...]`` -> ``{"B": {...}, ...}``, recursively (a second B: ``B_2``),
    so that W&B shows each callback setting as a key of its own, not the list as one JSON string.

    Example:
        >>> keyed_by_class({"callbacks": [{"class_path": "facegan.FIDMonitor", "init_args": {"seed": 0}}]})
        {'callbacks': {'FIDMonitor': {'class_path': 'facegan.FIDMonitor', 'init_args': {'seed': 0}}}}
    """
    if isinstance(value, dict):
        return {key: keyed_by_class(item) for key, item in value.items()}
    if not (isinstance(value, list) and value):
        return value
    if not all(isinstance(item, dict) and isinstance(item.get("class_path"), str) for item in value):
        return [keyed_by_class(item) for item in value]
    keyed: dict[str, Any] = {}
    for item in value:
        name = item["class_path"].rsplit(".", 1)[-1]
        key, n = name, 1
        while key in keyed:
            n += 1
            key = f"{name}_{n}"
        keyed[key] = keyed_by_class(item)
    return keyed


class SaveAndLogConfig(SaveConfigCallback):
    """Save ``config.yaml`` in the run folder (Lightning's writes to ``trainer.log_dir``, for W&B the
    ``save_dir`` all runs share) and log :func:`logged_config` to every logger, on global rank 0;
    ``overwrite=False`` refuses an existing file, as Lightning's callback does."""

    resuming = False  # set by the CLI: a resume writes config-resume-N.yaml beside the run's config.yaml

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        path = None
        if trainer.is_global_zero:
            path, n = run_dir(trainer) / self.config_filename, 0
            while self.resuming and path.exists():  # the run's own config.yaml stays as it was
                n += 1
                path = path.with_name(f"config-resume-{n}.yaml")
        exists = path is not None and path.exists()
        if self.save_to_log_dir and not self.overwrite and trainer.strategy.broadcast(exists):
            raise RuntimeError(
                f"{path or 'the config file'} already exists: give this run another folder, or "
                "LightningCLI(save_config_kwargs={'overwrite': True})"
            )
        if path is not None:
            if self.save_to_log_dir:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.parser.save(
                    self.config, str(path), **KEEP_NONE, overwrite=self.overwrite, multifile=self.multifile
                )
            self.save_config(trainer, pl_module, stage)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.loggers:
            config = logged_config(self.parser, self.config)
            for logger in trainer.loggers:  # W&B: config.update(allow_val_change=True), resumes included
                logger.log_hyperparams(config)
