"""``python -m facegan fit|validate|test``: LightningCLI with facegan's defaults, configs in ``configs/``.

With no arguments ``fit`` trains the ``dcgan`` on the built-in procedural faces at 64 px with CPU-friendly
widths, a checkpoint per epoch and sample grids by images seen, in ``lightning_logs/version_N``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any, cast

import lightning as L
import torch
from jsonargparse import Namespace
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from facegan.callbacks import (
    CheckpointOnInterrupt,
    DivergenceMonitor,
    KimgBudget,
    KimgCheckpoint,
    ProgressMonitor,
    SampleGridMonitor,
)
from facegan.cli.entry import OneLineParser
from facegan.cli.resume import (
    SaveAndLogConfig,
    continue_run,
    describe,
    find_last_checkpoint,
    given_settings,
    keep_csv_metrics,
    logger_root,
    precision_name,
    recipe_changes,
    refuse_occupied_folder,
    saved_precision,
)
from facegan.data import FaceDataModule
from facegan.io.atomic import atomic_write, check_writable, remove_abandoned
from facegan.io.checkpoints import load_checkpoint, public_hparams
from facegan.io.runs import run_dir, run_root
from facegan.training.hardware import BF16_FLAGS, cpu_has_bf16, trains_on_cpu
from facegan.training.module import FaceGAN

log = logging.getLogger(__name__)

CLI_WIDTHS = (32, 32)  # the CLI's default (g_channels, d_channels): a quarter of the paper's FLOPs
FIXED_WIDTHS = ("keras",)  # families whose widths are part of the architecture
LINKED = {"model.image_size": "data.image_size"}  # set through the other one on the command line
UNUSED = {"config.yaml", "hparams.yaml"}  # what a run folder holds before its first batch
KEYWORDS = ("best", "hpc", "registry")  # --ckpt_path values Lightning resolves itself
# what a checkpoint keeps of each section: the CLI's attribute, the checkpoint's key
MODULES = {"model": ("model", "hyper_parameters"), "data": ("datamodule", "datamodule_hyper_parameters")}
# Lightning's refusals of an accelerator or device count (not of other Trainer settings)
DEVICE_ERROR = re.compile(r"accelerator|devices|gpu backend|torch_xla", re.IGNORECASE)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer through :func:`~facegan.io.atomic.atomic_write`: a crash leaves the old or
    the new file, never a truncated one (Lightning's copies across file systems); the next save removes a
    killed save's temporary file. Remote paths keep Lightning's writer."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        remove_abandoned(Path(path).parent, "*.ckpt")
        with atomic_write(path) as file:
            torch.save(checkpoint, file)


def device_error(trainer: Any, error: BaseException) -> ValueError:
    """Lightning's refusal of ``--trainer.accelerator`` / ``--trainer.devices``, in one line with what to do."""
    accelerator, devices = trainer.get("accelerator", "auto"), trainer.get("devices", "auto")
    given = f"--trainer.accelerator {accelerator} --trainer.devices {devices}"
    message = " ".join(str(error).split())
    if "not available" in message or "No supported gpu backend" in message:
        cuda = "no CUDA GPU" if torch.version.cuda else "a PyTorch without CUDA support"
        advice = (
            f"this machine has {cuda} (torch.cuda.is_available() is False): leave --trainer.accelerator "
            "out (auto picks what is there) or give --trainer.accelerator cpu"
        )
    else:
        advice = (
            "--trainer.accelerator takes auto, cpu, cuda (or gpu) or mps; --trainer.devices a count "
            "(1, 2, ...), -1 or auto for all, or GPU indices such as [0,1]"
        )
    return ValueError(f"{given}: {message.rstrip('.!')}. {advice}")


SUBCOMMANDS = ("fit", "validate", "test")


class FaceGANCLI(LightningCLI):
    """LightningCLI with facegan's defaults (checkpoints, sample grids, one ``image_size``) and resumes
    that keep their run and recipe (:mod:`facegan.cli.resume`): ``--ckpt_path last`` is the newest
    ``last.ckpt`` of the configured logger's runs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._folders_before: set[Path] | None = None  # the run root's entries when fit began
        given = kwargs.get("args")
        self._args = sys.argv[1:] if given is None else given  # the command line (or a dict, Namespace)
        try:
            super().__init__(*args, **kwargs)
        except BaseException:
            self._discard_unused_run_folder()
            raise

    def _discard_unused_run_folder(self) -> None:
        """After a fit that failed before training, remove the run folder it made (holding only its
        config), and the logger's root folder if the run made it and it is now empty."""
        trainer = getattr(self, "trainer", None)
        if self._folders_before is None or trainer is None or not trainer.is_global_zero:
            return
        root, folder = run_root(trainer), run_dir(trainer)
        if folder.parent != root or folder in self._folders_before or not folder.is_dir():
            return
        if any(p.is_file() and p.relative_to(folder).as_posix() not in UNUSED for p in folder.rglob("*")):
            return  # something of this run's training is there
        shutil.rmtree(folder)
        if root not in self._folders_before and not any(root.iterdir()):
            root.rmdir()

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse as LightningCLI does, noting first the model/data settings the command gives; resolve
        ``--ckpt_path last`` and set the logger to continue the checkpoint's run (before it is built)."""
        self.given = given_settings(sys.argv[1:] if args is None else args)  # bounds --config YAML first
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else Namespace()
        self._ckpt_path, self._run_version = config.get("ckpt_path"), None
        if self._ckpt_path not in (None, *KEYWORDS):
            root = logger_root(config.trainer)
            if self._ckpt_path == "last":
                found = find_last_checkpoint(root)
                if found is None:
                    raise ValueError(
                        f"--ckpt_path last: no last.ckpt under {root}/*/checkpoints/; "
                        + ("start without --ckpt_path, " if subcommand == "fit" else "")
                        + "or give the checkpoint's path"
                    )
                self._ckpt_path = str(found)  # the saved config names the file
            if subcommand == "fit":  # the run (its logger's version) it continues
                self._run_version = continue_run(config.trainer, Path(self._ckpt_path), root)
        # Set aside until before_instantiate_classes: LightningCLI would silently replace the model's settings
        # (--model.arch too) by the checkpoint's; _use_checkpoint compares them (tests/test_resume.py).
        if subcommand:
            config.ckpt_path = None

    def before_instantiate_classes(self) -> None:
        """``--ckpt_path`` back; the CLI's default widths only for families with widths and not for networks
        of your own; a warning for bf16 on a CPU that emulates it (:mod:`facegan.training.hardware`)."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        if self.subcommand:
            config.ckpt_path = self._ckpt_path
        model = config.model
        if model.arch in FIXED_WIDTHS and (model.g_channels, model.d_channels) == CLI_WIDTHS:
            model.g_channels = model.d_channels = None
            log.info("facegan: arch=%s has fixed widths; the CLI's default widths do not apply", model.arch)
        roles = ("generator", "discriminator")
        for role, width, default in zip(roles, ("g_channels", "d_channels"), CLI_WIDTHS, strict=True):
            if model[role] is not None and model[width] == default:  # the registry's width only
                model[width] = None
        bf16 = precision_name(config.trainer.precision) == "bf16-mixed"
        if bf16 and trains_on_cpu(config.trainer.accelerator) and not cpu_has_bf16():
            log.warning(
                "facegan: --trainer.precision bf16-mixed on a CPU without bf16 units (%s): PyTorch "
                "emulates bf16 there, slower than float32; give --trainer.precision 32-true",
                " or ".join(BF16_FLAGS),
            )

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        """The Trainer, plus atomic checkpoint writes and a checkpoint on Ctrl-C / SIGTERM. Without
        ``--trainer.logger`` the run logs to ``metrics.csv`` (``CSVLogger``), TensorBoard installed or not."""
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        if config["trainer"].get("logger") in (None, True):
            root = config["trainer"].get("default_root_dir") or os.getcwd()
            # <root>/lightning_logs/version_N, or the run a --ckpt_path continues
            kwargs.setdefault("logger", CSVLogger(save_dir=root, version=self._run_version))
        try:
            trainer = super().instantiate_trainer(**kwargs)
        except (MisconfigurationException, ValueError, TypeError, ImportError) as error:
            if not DEVICE_ERROR.search(str(error)):
                raise
            raise device_error(config["trainer"], error) from error
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # not a user's own plugin
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        callbacks = cast(Any, trainer).callbacks  # set by Lightning at runtime, not declared on Trainer
        if not any(isinstance(callback, CheckpointOnInterrupt) for callback in callbacks):
            callbacks.append(CheckpointOnInterrupt())
        return trainer

    def _use_checkpoint(self, required: bool) -> Path | None:
        """This subcommand's ``--ckpt_path`` file (``None``: none, or one of Lightning's keywords), checked
        against this command's recipe: a model/data setting that differs from the checkpoint's is taken
        from it when the command leaves it out, and refused when the command gives it, even equal to its
        default (unless ``--allow_recipe_change``); so is another ``--trainer.precision`` than the run's."""
        ckpt_path = self.config_init[self.subcommand].get("ckpt_path")
        if ckpt_path is None and required:
            raise ValueError(
                f"{self.subcommand} needs --ckpt_path (a checkpoint file, or 'last' for the newest "
                "last.ckpt of this experiment); without one it would evaluate an untrained model"
            )
        if ckpt_path is None or ckpt_path in KEYWORDS:
            return None
        ckpt = Path(ckpt_path)
        checkpoint = load_checkpoint(ckpt)  # safe loading: a pickle is refused with one line
        refused: list[str] = []
        adopted: dict[str, dict[str, Any]] = {}  # section -> the checkpoint's values of settings left out
        for section, (attribute, key) in MODULES.items():
            module = getattr(self, attribute)
            if module is None:
                continue
            for name, before, after in recipe_changes(
                checkpoint.get(key), module.hparams, type(module), section
            ):
                setting = LINKED.get(f"{section}.{name}", f"{section}.{name}")
                if any(given == setting or given.startswith(f"{setting}.") for given in self.given):
                    refused.append(describe(section, name, before, after))
                else:
                    adopted.setdefault(section, {})[name] = before
        before = saved_precision(ckpt)
        if before not in (None, self.trainer.precision):
            refused.append(
                describe("trainer", "precision", before, self.trainer.precision, "the run's config.yaml")
            )
        if refused and not self.config_init[self.subcommand].get("allow_recipe_change"):
            raise ValueError(
                f"--ckpt_path {str(ckpt)!r} was trained with other settings than this command's: "
                + "; ".join(refused)
                + ". Leave them out (settings not given are taken from the checkpoint), or pass "
                "--allow_recipe_change true to go on with the new ones deliberately"
            )
        for change in refused:
            log.warning("facegan: --allow_recipe_change: %s", change)
        for section, values in adopted.items():  # the module rebuilt with them
            for name, value in values.items():
                self.config[self.subcommand][f"{section}.{name}"] = value  # what its config.yaml will say
                log.info("facegan: --%s.%s %r, as in the checkpoint", section, name, value)
            attribute = MODULES[section][0]
            module = getattr(self, attribute)
            setattr(self, attribute, type(module)(**{**public_hparams(module.hparams), **values}))
        return ckpt

    def before_fit(self) -> None:
        ckpt_path = self._use_checkpoint(required=False)
        for callback in cast(Any, self.trainer).callbacks:
            if isinstance(callback, SaveAndLogConfig):
                callback.resuming = ckpt_path is not None
        if ckpt_path is not None:
            version = self._run_version
            logger = self.trainer.loggers[0] if self.trainer.loggers else None
            if version is not None and isinstance(logger, CSVLogger) and self.trainer.is_global_zero:
                keep_csv_metrics(logger, run_dir(self.trainer) / "metrics.csv")
            log.info("facegan: resuming from %s%s", ckpt_path, f" in run {version}" if version else "")
        elif self.trainer.is_global_zero:  # DDP's other processes start once rank 0 has checked
            refuse_occupied_folder(self.trainer)
            if self.trainer.loggers:  # a new run folder that training never uses is removed again
                root = run_root(self.trainer)
                self._folders_before = {root, *root.iterdir()} if root.is_dir() else set()
        if self.trainer.is_global_zero:
            check_writable(run_root(self.trainer))  # a read-only output folder: one line, before training

    def before_validate(self) -> None:
        self._use_checkpoint(required=True)

    before_test = before_validate

    def subcommands(self) -> dict[str, set[str]]:  # type: ignore[override]
        """fit, validate and test; only the one the command names, when it names one: LightningCLI
        builds a parser per subcommand, each introspecting the Trainer, FaceGAN, FaceDataModule and the
        callbacks, so the two unused ones cost every command about 0.2 s (warm; more at a cold start)."""
        names = {arg for arg in self._args if arg in SUBCOMMANDS} if isinstance(self._args, list) else set()
        chosen = names if len(names) == 1 else SUBCOMMANDS
        return {name: kw for name, kw in LightningCLI.subcommands().items() if name in chosen}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--allow_recipe_change",
            type=bool,
            default=False,
            help="use a --ckpt_path trained with other model/data settings than this command's",
        )
        parser.link_arguments("data.image_size", "model.image_size")  # set once: --data.image_size
        parser.add_lightning_class_args(SampleGridMonitor, "samples")
        parser.add_lightning_class_args(KimgCheckpoint, "checkpoint")  # + --checkpoint.every_n_kimg
        parser.add_lightning_class_args(KimgBudget, "budget")  # --budget.max_kimg: stop after N kimg
        parser.add_lightning_class_args(DivergenceMonitor, "divergence")  # --divergence.action warn
        parser.add_lightning_class_args(ProgressMonitor, "progress")  # train/images_per_sec, g_lr, d_lr
        parser.set_defaults(
            {
                # Every epoch; `last.ckpt` always points at the newest state for --ckpt_path last.
                "checkpoint.save_last": True,
                "checkpoint.save_top_k": 1,  # the newest epoch (no monitor), plus last.ckpt
                "checkpoint.every_n_epochs": 1,
                "checkpoint.filename": "epoch={epoch:04d}-step={step}",
                "checkpoint.auto_insert_metric_name": False,
                # Grids by images seen: the first 14 s into a fit on a 2-core CPU, then every ~30 s, and the last.
                "samples.every_n_epochs": 0,
                "samples.first_kimg": 1.0,
                "samples.every_n_kimg": 5.0,
                # CPU-friendly widths: a quarter of the paper's FLOPs, faces in minutes on 2 cores.
                "model.g_channels": CLI_WIDTHS[0],
                "model.d_channels": CLI_WIDTHS[1],
                # DiffAugment on all D sees: without it D wins on the built-in faces within a few hundred
                # iterations (d_real/d_fake ~0.99/~0.01, at D lr 1e-4 too) and G collapses; with it ~0.9/0.1.
                "model.augment": "color,translation",
                # Batches of 16: the images/s of 64 at 1 thread but 4x the updates (faces with eyes and hair
                # at 16k images, where 64 still draw one pattern). An EMA generator for grids and exports:
                # its half-life ramps up (0.05 x images seen), so early grids are no blur of the first steps.
                "data.batch_size": 16,
                "model.ema_kimg": 10.0,
            }
        )


def main(args: list[str] | None = None, run: bool = True, prog: str = "python -m facegan") -> FaceGANCLI:
    """Run the CLI (``args=None`` reads ``sys.argv``) and return it; ``run=False`` only builds the trainer,
    model and data module from ``args`` (no subcommand); ``prog`` is the command's name in its messages."""
    return FaceGANCLI(
        FaceGAN,
        FaceDataModule,
        args=args,
        # no Lightning hparams logging: SaveAndLogConfig logs every setting once, not flat a second time
        trainer_defaults={"max_epochs": 100, "log_every_n_steps": 10, "enable_autolog_hparams": False},
        seed_everything_default=0,
        save_config_callback=SaveAndLogConfig,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
        parser_class=OneLineParser,
        parser_kwargs={"prog": prog},
        run=run,
    )
