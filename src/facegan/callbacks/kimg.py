"""Training counted in images (StyleGAN's kimg, as papers schedule it): a budget and checkpoints every N
kimg. Callbacks read the one count of images shown to D, ``FaceGAN.images_seen``, never ``global_step``
(two optimizer steps per batch under manual optimization) and never count images themselves."""

from __future__ import annotations

import logging
import math
from typing import Any, cast

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from facegan.io.runs import last_batch_step

log = logging.getLogger(__name__)


class KimgSchedule:
    """Says when ``images_seen`` passes the next multiple of ``every_n_kimg`` thousand images (``once``:
    when it first reaches ``every_n_kimg`` thousand, a limit; ``first_kimg``: also an early point).
    Fed FaceGAN's count (a host int, the same on every process: DDP ranks decide alike) after each batch.

    Example:
        >>> schedule = KimgSchedule(8, first_kimg=2)  # at 2k, 8k, 16k, ... images
        >>> schedule.start(0)
        >>> [seen for seen in range(0, 20_000, 640) if schedule.due(seen)]
        [2560, 8320, 16000]
    """

    def __init__(self, every_n_kimg: float, once: bool = False, first_kimg: float | None = None) -> None:
        if once and first_kimg is not None:
            raise ValueError(
                "KimgSchedule: `first_kimg` is an early point of a repeating schedule, not of `once`"
            )
        self.interval = max(1, round(every_n_kimg * 1000))
        self.once = once
        self.first = None if first_kimg is None else max(1, round(first_kimg * 1000))
        self.seen = 0  # images_seen at the last look
        self.next: float = 0  # images_seen that triggers the next decision

    def start(self, images_seen: int) -> None:
        self.seen = images_seen
        self.next = self.interval if self.once else self._after(images_seen)

    def due(self, images_seen: int) -> bool:
        self.seen = images_seen
        due = self.seen >= self.next
        if due:
            self.next = math.inf if self.once else self._after(self.seen)
        return due

    def _after(self, seen: int) -> int:
        """The first point past ``seen``: the next multiple of the interval, or ``first`` if sooner."""
        multiple = (seen // self.interval + 1) * self.interval
        return self.first if self.first is not None and seen < self.first < multiple else multiple


def images_seen(pl_module: L.LightningModule, who: str = "A callback") -> int:
    """The module's count of images shown to D (a module of your own keeps a host-side ``images_seen``
    too); a ``TypeError`` naming ``who`` if it has none."""
    if not hasattr(pl_module, "images_seen"):
        raise TypeError(f"{who} counts images: the LightningModule needs an `images_seen` counter")
    return int(cast(Any, pl_module).images_seen)


class KimgBudget(L.Callback):
    """Stop the fit once the discriminator has been shown ``max_kimg`` thousand images (``None``: no budget).

    Whichever comes first stops the fit: this, ``max_epochs``, ``max_steps`` or ``max_time`` (give
    ``--trainer.max_epochs -1`` to count images only). The fit ends as at an epoch end (the last
    checkpoint, grid and FID are written); a resumed fit past the budget stops before its first batch.
    """

    def __init__(self, max_kimg: float | None = None) -> None:
        if max_kimg is not None and max_kimg <= 0:
            raise ValueError(f"KimgBudget: `max_kimg` must be > 0 or null (no budget), but got {max_kimg}")
        self.max_kimg = max_kimg
        self.schedule = None if max_kimg is None else KimgSchedule(max_kimg, once=True)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.schedule is None:
            return
        self.schedule.start(images_seen(pl_module, "KimgBudget"))
        if self.schedule.seen >= self.schedule.interval:
            log.warning(
                "KimgBudget: %s kimg already reached (max_kimg=%s)", self.schedule.seen / 1000, self.max_kimg
            )
            trainer.should_stop = True

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.schedule is not None and self.schedule.due(images_seen(pl_module)):
            log.info(
                "KimgBudget: stopping at %.1f kimg (max_kimg=%s)", self.schedule.seen / 1000, self.max_kimg
            )
            trainer.should_stop = True


class KimgCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` that also saves every ``every_n_kimg`` thousand images, as at an
    epoch end (with a ``monitor`` only ``last.ckpt``: the monitored value has its own schedule).
    ``{step}`` in ``filename`` is the last batch's logged step, not ``global_step``."""

    def __init__(self, *args: Any, every_n_kimg: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if every_n_kimg is not None and every_n_kimg <= 0:
            raise ValueError(f"KimgCheckpoint: `every_n_kimg` must be > 0 or null, but got {every_n_kimg}")
        self.every_n_kimg = every_n_kimg
        self.schedule = None if every_n_kimg is None else KimgSchedule(every_n_kimg)

    def _monitor_candidates(self, trainer: L.Trainer) -> dict[str, torch.Tensor]:
        candidates = super()._monitor_candidates(trainer)
        candidates["step"] = torch.tensor(last_batch_step(trainer))
        return candidates

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        if self.schedule is not None:
            self.schedule.start(images_seen(pl_module, "KimgCheckpoint"))

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self.schedule is None or not self.schedule.due(images_seen(pl_module)):
            return
        if self._should_skip_saving_checkpoint(trainer):  # e.g. this step was saved already
            return
        candidates = self._monitor_candidates(trainer)
        if self.monitor is None:
            self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)
