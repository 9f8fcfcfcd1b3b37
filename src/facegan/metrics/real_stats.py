"""A disk cache of real-image FID statistics, keyed by what the statistics depend on.

The key covers the data (a fingerprint of its files and preprocessing, or a hash of its pixels), the
number of images, the subset rule and the feature extractor (weights checksum, resize), so a change to
any of them is a new file. Files are written atomically and checked against their key when read.

Statistics also travel as files of their own: pytorch-fid's ``.npz`` (``mu``, ``sigma``), which
:func:`save_npz` writes and :func:`read_stats_file` reads, as it reads this cache's ``.pt`` files.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics.image.fid import FrechetInceptionDistance

from facegan.io.atomic import atomic_write
from facegan.metrics.fid import REAL_STATES, real_states, set_real_states
from facegan.metrics.kid import FeatureTap
from facegan.metrics.real_images import PixelHash, RealImages, warn_unstable

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


@dataclass
class RealStatistics:
    """Real-image statistics and where they came from.

    Attributes:
        states: the FID metric's real states ``(features sum, cov sum, count)``.
        path: the cache file or statistics file that holds them.
        cached: read (a statistics file, a cache hit) rather than computed now.
        features: per-image features ``(N, 2048)`` for KID, when kept; ``None`` otherwise.
        count: images behind them; ``None`` for a pytorch-fid ``.npz``, which does not say.
    """

    states: list[Tensor]
    path: Path
    cached: bool
    features: Tensor | None
    count: int | None


def real_statistics(
    metric: FrechetInceptionDistance,
    real: RealImages | Path,
    extractor: dict[str, Any],
    folder: Path,
    features: bool = False,
) -> RealStatistics:
    """The statistics of ``real``: read from a statistics file (a path), found in the cache under
    ``folder``, or computed with ``metric`` and cached. ``features``: also keep (and cache) each
    image's features, for KID; a cache file without them is then computed again.

    A source without a key of its own is keyed by a hash of its pixels (one extra pass over them);
    if a second pass gives other pixels (a shuffled loader), the statistics are filed under the
    pixels actually used, with a warning.
    """
    if isinstance(real, Path):
        return read_stats_file(real, extractor)
    if real.count < 2:
        raise ValueError(f"{real.name} has {real.count} images; FID needs at least 2")
    key = real.key
    if key is None:
        hashed = PixelHash()
        for batch in real.batches():
            hashed.update(batch)
        key = hashed.key()
    blob, digest = stats_key(key, real.count, extractor)
    path = stats_file(folder, digest)
    stats = load_stats(path, blob)
    cached = stats is not None and (not features or "features" in stats)
    if not cached:
        set_real_states(metric, None)
        used = PixelHash()
        with torch.no_grad(), FeatureTap(metric.inception) as tap:
            for batch in real.batches():  # (B, 3, H, W) uint8
                metric.update(batch.to(metric.device), real=True)
                used.update(batch)
        if used.count < 2:
            raise ValueError(f"{real.name}: {used.count} readable images; FID needs at least 2")
        if real.key is None and used.key() != key:
            warn_unstable(real.name)
            blob, digest = stats_key(used.key(), real.count, extractor)
            path = stats_file(folder, digest)
        stats = {"key": blob, **real_states(metric)}
        if features:
            stats["features"] = tap.features()  # (N, 2048) float32: 8 KB per image
        save_stats(path, stats)
    assert stats is not None
    states = [stats[name] for name in REAL_STATES]
    return RealStatistics(states, path, cached, stats.get("features"), int(states[2]))


def read_stats_file(path: str | Path, extractor: dict[str, Any]) -> RealStatistics:
    """A statistics file, read once: pytorch-fid's ``.npz`` (``mu``, ``sigma``; ``num_images`` when
    facegan wrote it; no per-image features) or a facegan cache file (``.pt``, with its features if
    kept; refused if another extractor made it)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"statistics file {str(path)!r} does not exist")
    if path.suffix == ".npz":
        with np.load(path) as stats:
            missing = {"mu", "sigma"} - set(stats.files)
            if missing:
                raise ValueError(f"{path}: a statistics .npz needs `mu` and `sigma` (pytorch-fid's format); "
                                 f"{sorted(missing)} missing")  # fmt: skip
            mu = torch.from_numpy(stats["mu"].astype(np.float64))
            sigma = torch.from_numpy(stats["sigma"].astype(np.float64))
            count = int(stats["num_images"]) if "num_images" in stats.files else None
        if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
            raise ValueError(f"{path}: `mu` {tuple(mu.shape)} and `sigma` {tuple(sigma.shape)} do not match")
        n = count or 2  # any n >= 2 gives back mu and sigma
        # torchmetrics keeps sums: mean = sum / n, cov = (cov_sum - n mean mean^T) / (n - 1)
        states = [mu * n, sigma * (n - 1) + n * torch.outer(mu, mu), torch.tensor(n)]
        return RealStatistics(states, path, True, None, count)
    try:
        stats = torch.load(path, map_location="cpu", weights_only=True)
        made_by = json.loads(stats["key"])["extractor"]
    except Exception as error:
        raise ValueError(f"{path}: not a statistics file (.npz with mu/sigma, or a facegan cache .pt): "
                         f"{error}") from error  # fmt: skip
    if made_by != json.loads(json.dumps(extractor, default=str)):
        raise ValueError(f"{path}: computed with another feature extractor ({made_by}) than this one "
                         f"({extractor}); recompute it with these weights")  # fmt: skip
    states = [stats[name] for name in REAL_STATES]
    return RealStatistics(states, path, True, stats.get("features"), int(states[2]))


def save_npz(path: str | Path, states: list[Tensor]) -> Path:
    """Write real states as pytorch-fid's ``.npz`` (``mu``, ``sigma``, float64) plus ``num_images``."""
    total, cov_total, count = (state.double().cpu() for state in states)
    n = int(count)
    mu = total / n
    sigma = (cov_total - n * torch.outer(mu, mu)) / (n - 1)
    path = Path(path).expanduser()
    with atomic_write(path) as file:
        np.savez(file, mu=mu.numpy(), sigma=sigma.numpy(), num_images=np.int64(n))
    return path
