"""What :class:`~facegan.callbacks.FIDMonitor` refuses at setup, before any weight is read."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

EPOCH_KEYS = ("val/fid", "val/fid_seconds")  # what an epoch evaluation logs through the module
NO_REAL = (
    "FIDMonitor: no real images: give FIDMonitor(real=...) (a data module, a DataLoader, a folder or zip "
    "of images, or a statistics file .npz/.pt), or fit with a data module"
)


def refuse_checkpoints_without_fid(trainer: L.Trainer, every_n_epochs: int) -> None:
    """Refuse a ``ModelCheckpoint(monitor="val/fid")`` that checks on epochs without FID (Lightning
    raises there, mid-run): its ``every_n_epochs`` must be a multiple of FIDMonitor's."""
    for checkpoint in trainer.checkpoint_callbacks:
        if not isinstance(checkpoint, ModelCheckpoint) or checkpoint.monitor not in EPOCH_KEYS:
            continue
        every = checkpoint.every_n_epochs or 0
        if every and (not every_n_epochs or every % every_n_epochs):
            where = f"every {every_n_epochs} epochs" if every_n_epochs else "at no epoch end"
            raise ValueError(
                f"FIDMonitor: ModelCheckpoint(monitor={checkpoint.monitor!r}) checks every {every} "
                f"epoch(s), but FIDMonitor logs it {where} (every_n_epochs={every_n_epochs}); give "
                "the checkpoint every_n_epochs equal to FIDMonitor's (or a multiple: "
                f"--checkpoint.every_n_epochs {every_n_epochs or 1} in the CLI), or FIDMonitor "
                "every_n_epochs=1"
            )
