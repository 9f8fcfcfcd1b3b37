"""``FaceDataModule``'s settings checked at construction: each error names the setting and the fix."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from facegan.data.sources import SOURCES


def check_settings(hp: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` for settings no data could satisfy (``hp``: the data module's hparams)."""
    root = hp["root"]
    if root is not None and not str(root).strip():
        raise ValueError(
            "FaceDataModule: `root` is empty; give the folder or zip of images, or leave it unset "
            "(null) to train on the built-in procedural faces"
        )
    if hp["source"] not in SOURCES:
        raise ValueError(f"FaceDataModule: `source` must be one of {SOURCES}, but got {hp['source']!r}")
    if hp["image_size"] < 8:
        raise ValueError(f"FaceDataModule: `image_size` must be >= 8, but got {hp['image_size']}")
    if hp["batch_size"] < 1:
        raise ValueError(f"FaceDataModule: `batch_size` must be >= 1, but got {hp['batch_size']}")
    crop_size = hp["crop_size"]
    if crop_size is not None and crop_size < 1:
        raise ValueError(f"FaceDataModule: `crop_size` must be a positive integer or null, got {crop_size}")
    for name in ("val_fraction", "test_fraction"):
        if not 0.0 <= hp[name] < 1.0:
            raise ValueError(f"FaceDataModule: `{name}` must be in [0, 1), but got {hp[name]}")
    if hp["val_fraction"] + hp["test_fraction"] >= 1.0:
        raise ValueError("FaceDataModule: `val_fraction` + `test_fraction` must leave images for training")
    if not 0.0 <= hp["max_skipped_fraction"] <= 1.0:
        raise ValueError(
            f"FaceDataModule: `max_skipped_fraction` must be in [0, 1]: {hp['max_skipped_fraction']}"
        )
    if hp["device_resident"] and not hp["cache"]:
        raise ValueError("FaceDataModule: `device_resident` needs `cache` (set --data.cache true)")
    if hp["source"] == "shards" and root is None:
        raise ValueError("FaceDataModule: source='shards' needs `root`: a prepared folder or URL")
