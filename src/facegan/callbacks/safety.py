"""Keeping a run's checkpoints safe: atomic writes, and a resumable checkpoint on Ctrl-C / SIGTERM."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from facegan.callbacks.common import run_dir

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temporary file *in the target folder*, fsync it, then ``os.replace``.

    A crash or kill at any moment leaves either the previous complete file or the new complete file
    under the checkpoint's name, never a truncated one (``os.replace`` is atomic within a file system;
    Lightning's default stages the bytes in the system temp folder and then moves them, which is a
    plain copy when that folder is on another file system). Remote paths (``s3://`` ...) keep
    Lightning's behaviour.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        try:  # make the rename itself durable
            folder = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        except OSError:
            pass


class CheckpointOnInterrupt(L.Callback):
    """On Ctrl-C (SIGINT) or SIGTERM, save ``last.ckpt`` before the process exits.

    Lightning turns both into an orderly stop (``KeyboardInterrupt`` / ``SIGTERMException``) and calls
    ``on_exception``; this writes the current state to the run's checkpoint folder as ``last.ckpt``
    (what ``fit --ckpt_path last`` resumes). Mid-epoch, Lightning restarts the interrupted epoch's
    data from its beginning on resume; checkpoints at epoch ends resume bit-exactly.
    """

    def __init__(self, filename: str = "last") -> None:
        self.filename = filename
        self.saved_path: Path | None = None

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, KeyboardInterrupt | SIGTERMException):
            return
        if trainer.state.fn != "fit" or trainer.global_step == 0:
            return
        folders = [cb.dirpath for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)]
        folder = Path(folders[0]) if folders and folders[0] else run_dir(trainer) / "checkpoints"
        path = folder / f"{self.filename}.ckpt"
        trainer.save_checkpoint(path)
        self.saved_path = path
        if trainer.is_global_zero:
            signal = "Ctrl-C" if isinstance(exception, KeyboardInterrupt) else "SIGTERM"
            log.warning(
                "%s at step %d: saved %s; resume with `--ckpt_path last` (or ckpt_path=%r)",
                signal,
                trainer.global_step,
                path,
                str(path),
            )
