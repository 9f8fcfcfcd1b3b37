"""``ProgressMonitor``: training throughput (images/s) and the learning rates, for dashboards."""

from __future__ import annotations

from time import perf_counter
from typing import Any

import lightning as L

from facegan.callbacks.kimg import images_seen
from facegan.io.runs import logger_step, logs_this_batch


class ProgressMonitor(L.Callback):
    """Log ``train/images_per_sec`` and one ``train/<name>_lr`` per optimizer (its first parameter
    group's) at Lightning's logging steps, from global rank 0, at the step of the batch's own metrics.

    StyleGAN2-ADA's ``Timing/sec_per_kimg`` is ``1000 / images_per_sec``. Host-side, no device sync:
    ``FaceGAN.images_seen`` (all processes') over the wall clock from one batch's end to the next
    (loading and batch-end callbacks included, as in Lightning's ``ThroughputMonitor``; epoch-end work
    and validation not); a host running ahead of the accelerator evens out over a logging interval.

    Args:
        optimizer_names: names of ``trainer.optimizers`` in order (FaceGAN: ``("g", "d")``), giving
            ``train/g_lr`` and ``train/d_lr``; ``[]`` logs no learning rate (only the throughput).
    """

    def __init__(self, optimizer_names: list[str] | tuple[str, ...] = ("g", "d")) -> None:
        super().__init__()
        names = list(optimizer_names)
        if any(not isinstance(name, str) or not name or "/" in name for name in names):
            raise ValueError(
                f"ProgressMonitor: `optimizer_names` must be non-empty names without '/', but got {names!r}"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"ProgressMonitor: `optimizer_names` must be distinct, but got {names!r}")
        self.optimizer_names = names
        self.images_per_sec: float | None = None  # the last value logged
        self._counted = 0  # the module's images_seen at the last logging step (or the fit's start)
        self._seconds = 0.0  # training time since the last logging step
        self._mark: float | None = None  # the last batch's end (or the epoch's start, validation's end)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        count = len(trainer.optimizers)
        if self.optimizer_names and count != len(self.optimizer_names):
            raise ValueError(
                f"ProgressMonitor: `optimizer_names` {self.optimizer_names!r} names "
                f"{len(self.optimizer_names)} optimizers, but the module has {count}; give one name each"
            )
        self._counted, self._seconds = images_seen(pl_module, "ProgressMonitor"), 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._mark = perf_counter()  # the epoch's first batch, loading included, counts from here

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._mark = perf_counter()  # validation within or at the end of an epoch does not count

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = perf_counter()
        self._seconds += now - (now if self._mark is None else self._mark)
        self._mark = now
        if not logs_this_batch(trainer):
            return
        step = logger_step(trainer)
        seen = images_seen(pl_module)
        if trainer.is_global_zero:
            self._log(trainer, step, seen - self._counted)
        self._counted, self._seconds = seen, 0.0

    def _log(self, trainer: L.Trainer, step: int, images: int) -> None:
        metrics: dict[str, float] = {}
        if self._seconds > 0:
            self.images_per_sec = images / self._seconds
            metrics["train/images_per_sec"] = self.images_per_sec
        # optimizer_names matches trainer.optimizers (checked at train start) or is empty
        for name, optimizer in zip(self.optimizer_names, trainer.optimizers, strict=False):
            metrics[f"train/{name}_lr"] = float(optimizer.param_groups[0]["lr"])
        for logger in trainer.loggers if metrics else ():
            logger.log_metrics(metrics, step=step)
