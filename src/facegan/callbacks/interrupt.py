"""``CheckpointOnInterrupt``: a resumable ``last.ckpt`` on Ctrl-C / SIGTERM."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from facegan.io.runs import run_dir

log = logging.getLogger(__name__)


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
