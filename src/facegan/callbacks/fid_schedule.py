"""What :class:`~facegan.callbacks.FIDMonitor` refuses at setup before any weight is read, and the
keys it logs."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

EPOCH_KEYS = ("val/fid", "val/kid", "val/kid_std", "val/fid_seconds")  # what an epoch evaluation logs
NO_REAL = (
    "FIDMonitor: no real images: give FIDMonitor(real=...) (a data module, a DataLoader, a folder or zip "
    "of images, or a statistics file .npz/.pt), or fit with a data module"
)


def check_arguments(a: dict[str, Any]) -> None:
    """``ValueError`` naming the first of FIDMonitor's arguments ``a`` that is out of range."""
    for ok, name, allowed in (
        (a["num_fake"] >= 2, "num_fake", "an integer >= 2"),
        (a["num_real"] is None or a["num_real"] >= 2, "num_real", "null or an integer >= 2"),
        (a["every_n_epochs"] >= 0, "every_n_epochs", "an integer >= 0 (0 disables)"),
        (a["every_n_kimg"] is None or a["every_n_kimg"] > 0, "every_n_kimg", "null or > 0"),
        (a["batch_size"] >= 1, "batch_size", "an integer >= 1"),
        (isinstance(a["split"], str) and a["split"] != "", "split", "'train', 'val' or 'test'"),
        (a["generator"] is None or callable(a["generator"]), "generator", "a callable z -> images"),
        (a["latent_dim"] is None or a["latent_dim"] >= 1, "latent_dim", "null or an integer >= 1"),
        (a["image_size"] is None or a["image_size"] >= 1, "image_size", "null or an integer >= 1"),
        (a["kid_subsets"] >= 1, "kid_subsets", "an integer >= 1"),
        (a["kid_subset_size"] >= 2, "kid_subset_size", "an integer >= 2"),
    ):
        if not ok:
            raise ValueError(f"FIDMonitor: `{name}` must be {allowed}, but got {a[name]!r}")


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


def entry_metrics(entry: dict[str, Any]) -> dict[str, float]:
    """What an evaluation logs: FID, KID (if measured), the seconds it took and, in the same row so
    dashboards can plot them against it, the images seen (``train/kimg``)."""
    metrics = {"val/fid": entry["fid"], "val/fid_seconds": entry["seconds"]}
    if entry.get("kid") is not None:
        metrics.update({"val/kid": entry["kid"], "val/kid_std": entry["kid_std"]})
    if entry.get("kimg") is not None:
        metrics["train/kimg"] = entry["kimg"]
    return metrics
