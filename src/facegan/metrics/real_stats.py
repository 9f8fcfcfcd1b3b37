"""A disk cache of real-image FID statistics, keyed by what the statistics depend on.

The key covers the data (a fingerprint of its files and preprocessing), the number of images, the
subset rule and the feature extractor (weights checksum, resize), so a change to any of them is a new
file. Files are written atomically and checked against their key when read.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch

from facegan.io.atomic import atomic_write

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when cached statistics change meaning (image conversion, subset rule, ...)


def stats_key(data: dict[str, Any], num_real: int, extractor: dict[str, Any]) -> tuple[str, str]:
    """``(key as JSON, its sha256)`` for statistics of ``num_real`` images of ``data``."""
    key = {"format": CACHE_FORMAT, "data": data, "num_real": num_real}
    key.update(subset="i*len//num_real", extractor=extractor)
    blob = json.dumps(key, sort_keys=True, default=str)
    return blob, hashlib.sha256(blob.encode()).hexdigest()


def stats_file(folder: Path, digest: str) -> Path:
    return folder / f"real-{digest}.pt"


def load_stats(path: Path, blob: str) -> dict[str, Any] | None:
    """The cached statistics if ``path`` holds them under key ``blob``; ``None`` otherwise."""
    if not path.is_file():
        return None
    try:
        stats = torch.load(path, map_location="cpu", weights_only=True)
        return stats if stats["key"] == blob else None
    except Exception as error:  # truncated or foreign file: recompute
        log.warning("FIDMonitor: ignoring unreadable cache %s (%s)", path, error)
        return None


def save_stats(path: Path, stats: dict[str, Any]) -> None:
    """Write ``stats`` atomically; a folder that cannot be written is warned about, not fatal."""
    try:
        with atomic_write(path) as file:
            torch.save(stats, file)
    except OSError as error:
        log.warning("FIDMonitor: could not write the cache %s (%s)", path, error)
