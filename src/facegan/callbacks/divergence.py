"""``DivergenceMonitor``: stop (or warn) when losses stop being finite or the discriminator collapses."""

from __future__ import annotations

import logging
import math
from collections import deque
from typing import Any, Literal

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from facegan.io.runs import last_batch_step

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """Raised by :class:`DivergenceMonitor` with ``action="stop"``; no checkpoint is written after it."""


class DivergenceMonitor(L.Callback):
    """Every ``check_every`` batches (one host sync each), look for a non-finite ``train/d_loss`` or
    ``train/g_loss`` or a collapsed discriminator: over the last ``window`` checks D's sign accuracy
    (``train/d_acc_real``, ``train/d_acc_fake``; the same meaning for every loss) averages at least
    ``max_accuracy`` on reals *and* fakes, so G gets no useful gradient and rarely recovers. The values
    are the module's ``diagnostics`` of the batch (FaceGAN's, logged only at logging steps), else
    ``trainer.callback_metrics``.

    ``action="stop"`` raises :class:`TrainingDiverged` naming the step and the last good checkpoint
    (raising writes no checkpoint of the damaged state); ``action="warn"`` logs it once per kind.
    """

    def __init__(
        self,
        action: Literal["stop", "warn"] = "stop",
        check_every: int = 10,
        window: int = 50,
        max_accuracy: float = 0.99,
    ) -> None:
        if action not in ("stop", "warn"):
            raise ValueError(f"DivergenceMonitor: `action` must be 'stop' or 'warn', but got {action!r}")
        if check_every < 1 or window < 1:
            raise ValueError("DivergenceMonitor: `check_every` and `window` must be integers >= 1")
        if not 0.5 < max_accuracy <= 1.0:
            raise ValueError(f"DivergenceMonitor: `max_accuracy` must be in (0.5, 1], but got {max_accuracy}")
        self.action, self.check_every, self.window = action, check_every, window
        self.max_accuracy = max_accuracy
        self._recent: deque[tuple[float, float]] = deque(maxlen=window)
        self._warned: set[str] = set()

    def _last_good_checkpoint(self, trainer: L.Trainer) -> str:
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and (
                callback.last_model_path or callback.best_model_path
            ):
                return callback.last_model_path or callback.best_model_path
        return "none written yet"

    def _fail(self, trainer: L.Trainer, kind: str, detail: str) -> None:
        message = (
            f"DivergenceMonitor: {detail} at step {last_batch_step(trainer)} (epoch {trainer.current_epoch}). "
            f"Last good checkpoint: {self._last_good_checkpoint(trainer)}. Try a lower learning rate, "
            "--model.augment color,translation, or more data; DivergenceMonitor(action='warn') only warns."
        )
        if self.action == "stop":
            raise TrainingDiverged(message)
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning(message)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if (batch_idx + 1) % self.check_every:
            return
        found = self._check({**trainer.callback_metrics, **getattr(pl_module, "diagnostics", {})})
        # Under DDP, decide once for all processes (one collective per check, at the same batch on
        # every rank): if one rank stopped and the others went on, they would wait for it forever.
        together = self.action == "stop" and trainer.world_size > 1
        if together and trainer.strategy.reduce_boolean_decision(found is not None, all=False) and not found:
            found = ("elsewhere", "another process found the run diverged (see its message)")
        if found is not None:
            self._fail(trainer, *found)

    def _check(self, metrics: dict[str, Any]) -> tuple[str, str] | None:
        """``(kind, detail)`` of what went wrong according to this process's metrics, or ``None``."""
        for key in ("train/d_loss", "train/g_loss"):
            if key in metrics and not math.isfinite(float(metrics[key])):
                return "nonfinite", f"{key} is {float(metrics[key])}"
        if "train/d_acc_real" in metrics and "train/d_acc_fake" in metrics:
            self._recent.append((float(metrics["train/d_acc_real"]), float(metrics["train/d_acc_fake"])))
            if len(self._recent) == self.window:
                real = sum(r for r, _ in self._recent) / self.window
                fake = sum(f for _, f in self._recent) / self.window
                if real >= self.max_accuracy and fake >= self.max_accuracy:
                    return (
                        "collapse",
                        f"the discriminator collapsed (it told {real:.1%} of reals and {fake:.1%} of fakes "
                        f"apart over the last {self.window} checks, >= max_accuracy {self.max_accuracy})",
                    )
        return None
