"""``CheckpointOnInterrupt``: a resumable ``last.ckpt`` on Ctrl-C / SIGTERM, taken at a batch boundary."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from facegan.io.runs import last_batch_step, run_dir

log = logging.getLogger(__name__)


class CheckpointOnInterrupt(L.Callback):
    """On Ctrl-C (SIGINT) or SIGTERM, save ``last.ckpt`` and exit with the shell's code for the signal.

    Lightning handles SIGTERM at a batch boundary (DDP processes agree), whereas ``KeyboardInterrupt``
    can land anywhere (between a D step and its counter, mid EMA update): so during ``fit`` the first
    Ctrl-C becomes that SIGTERM. ``on_exception`` writes ``last.ckpt`` to the checkpoint folder (what
    ``--ckpt_path last`` resumes), says so with the last batch's logged step, and sets the exit code
    to 130 (Ctrl-C) or 143 (SIGTERM). A second Ctrl-C stops at once and saves nothing (the step under
    way is half done). A mid-epoch resume restarts the epoch's data.
    """

    EXIT_CODES = {"Ctrl-C": 128 + signal.SIGINT, "SIGTERM": 128 + signal.SIGTERM}  # 130, 143

    def __init__(self, filename: str = "last") -> None:
        self.filename = filename
        self.saved_path: Path | None = None
        self.ctrl_c = False  # the stop came from Ctrl-C (reported as such, not as SIGTERM)
        self._previous: Any = None  # the SIGINT handler before fit, restored after it
        self._pid = os.getpid()  # the trainer's process (a terminal's Ctrl-C reaches its workers too)

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._pid:  # a data loader worker forked with this handler: the trainer stops it
            return
        if self.ctrl_c:  # the second Ctrl-C: stop now
            self._restore()
            raise KeyboardInterrupt
        self.ctrl_c = True  # said once the checkpoint is written, in one line (on_exception)
        os.kill(os.getpid(), signal.SIGTERM)  # Lightning's own batch-boundary stop

    def _restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.ctrl_c = False
        # Only over Python's own Ctrl-C handler (not in a thread, a background job or a user's handler).
        main = threading.current_thread() is threading.main_thread()
        if main and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._pid = os.getpid()
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore()
        if not isinstance(exception, KeyboardInterrupt | SIGTERMException):
            return
        received = "Ctrl-C" if isinstance(exception, KeyboardInterrupt) or self.ctrl_c else "SIGTERM"
        if isinstance(exception, SIGTERMException):
            exception.code = self.EXIT_CODES[received]
        if isinstance(exception, KeyboardInterrupt) and self.ctrl_c:
            if trainer.is_global_zero:
                log.warning("Ctrl-C twice: stopped at once, nothing saved (the step under way was half done)")
            return
        if trainer.state.fn != "fit" or trainer.global_step == 0:
            return
        folders = [cb.dirpath for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)]
        folder = Path(folders[0]) if folders and folders[0] else run_dir(trainer) / "checkpoints"
        path = folder / f"{self.filename}.ckpt"
        trainer.save_checkpoint(path, weights_only=False)  # the whole state, to resume from
        self.saved_path = path
        if trainer.is_global_zero:  # the step of the last batch's row in metrics.csv, not global_step
            log.warning(
                "%s at step %d: saved %s; resume with `--ckpt_path last` (or ckpt_path=%r)",
                received,
                last_batch_step(trainer),
                path,
                str(path),
            )
