"""The settings a CLI run records: ``config.yaml`` in the run folder, and the resolved config, every
setting once, one key each, given to its loggers (the W&B run config).

``config.yaml`` goes into the run folder, beside ``checkpoints/`` and ``samples/``
(``lightning_logs/version_3/``, or ``<save_dir>/<project>/<run id>/`` for W&B). Lightning's own
callback writes it to ``trainer.log_dir``, which for W&B is the ``save_dir`` that every run shares, so
each run there replaced the last one's file and a resume found no recipe beside its checkpoint to
compare with. A resume writes ``config-resume-N.yaml`` beside the run's own ``config.yaml``.

Lightning would also log the module's and data module's ``hparams`` (flat: ``arch``, ``batch_size``,
...) beside the CLI's sections (``model.arch``, ``data.batch_size``), so the CLI turns that off
(``Trainer(enable_autolog_hparams=False)``) and logs this instead. Lists of classes (``trainer.callbacks``,
a list of loggers) become mappings keyed by class name, so W&B shows each callback setting as a key of its
own (``trainer.callbacks.FIDMonitor.init_args.num_fake``), not one JSON string for the whole list.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import yaml
from jsonargparse import ArgumentParser, Namespace
from lightning.pytorch.cli import SaveConfigCallback
from lightning_utilities.core.imports import RequirementCache

from facegan.io.runs import run_dir

SKIP_UNSET = RequirementCache("jsonargparse>=4.49")  # dump(skip_unset=...); before: skip_none


def logged_config(parser: ArgumentParser, config: Namespace) -> dict[str, Any]:
    """The resolved ``config`` as nested plain values, ``None`` settings included (as in ``config.yaml``)."""
    keep_none = "skip_unset" if SKIP_UNSET else "skip_none"
    settings = yaml.safe_load(parser.dump(config, **{keep_none: False}))
    settings.pop("config", None)  # the paths of the --config files, not settings
    return keyed_by_class(settings)


def keyed_by_class(value: Any) -> Any:
    """``[{"class_path": "a.B", ...}, ...]`` -> ``{"B": {"class_path": "a.B", ...}, ...}``, recursively.

    A second instance of a class gets ``B_2`` (then ``B_3``, ...), in list order.

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
    """Save ``config.yaml`` in the run folder and log :func:`logged_config` to every logger.

    Global rank 0 writes the file and logs (the W&B run exists only there); the other ranks learn
    that it is done. ``overwrite=False`` refuses an existing file, as Lightning's callback does.
    """

    resuming = False  # set by the CLI: a resume writes config-resume-N.yaml beside the run's config.yaml

    def config_path(self, folder: Path) -> Path:
        """``folder/config.yaml``, or the first free ``config-resume-N.yaml`` when resuming a run that has one."""
        name = self.config_filename
        if self.resuming and (folder / name).exists():
            n = 1
            while (folder / f"config-resume-{n}.yaml").exists():
                n += 1
            name = f"config-resume-{n}.yaml"  # the run's own config.yaml stays as it was
        return folder / name

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        path = self.config_path(run_dir(trainer)) if trainer.is_global_zero else None
        if self.save_to_log_dir and not self.overwrite:
            exists = trainer.strategy.broadcast(path is not None and path.exists())
            if exists:
                raise RuntimeError(
                    f"{path or 'the config file'} already exists: give this run another folder, or "
                    "LightningCLI(save_config_kwargs={'overwrite': True})"
                )
        if trainer.is_global_zero:
            assert path is not None
            if self.save_to_log_dir:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.parser.save(
                    self.config,
                    str(path),
                    **{"skip_unset" if SKIP_UNSET else "skip_none": False},
                    overwrite=self.overwrite,
                    multifile=self.multifile,
                )
            self.save_config(trainer, pl_module, stage)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.loggers:
            config = logged_config(self.parser, self.config)
            for logger in trainer.loggers:  # W&B: config.update(allow_val_change=True), resumes included
                logger.log_hyperparams(config)
