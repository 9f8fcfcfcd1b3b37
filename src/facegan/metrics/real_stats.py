"""A disk cache of real-image FID statistics, keyed by what the statistics depend on.

The key covers the data (a fingerprint of its files and preprocessing, or a hash of its pixels), the
number of images, the subset rule and the feature extractor (weights checksum, resize), so a change to
any of them is a new file. Files are written atomically and checked against their key when read.

Statistics also travel as files of their own: pytorch-fid's ``.npz`` (``mu``, ``sigma``), which
:func:`save_npz` writes and :func:`read_stats_file` reads, as it reads this cache's ``.pt`` files.
Whatever is read is checked by :func:`check_statistics` first (shapes, feature size, finite values, a
covariance matrix, at least 2 images): a damaged file would otherwise crash the FID's eigenvalue step
(NaN) or give a negative "FID" (a matrix that is no covariance).
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
from facegan.metrics.fid import REAL_STATES, one_thread, real_states, set_real_states
from facegan.metrics.kid import FeatureTap
from facegan.metrics.real_images import PixelHash, RealImages, warn_unstable

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when cached statistics change meaning (image conversion, subset rule, ...)
# A covariance matrix has no eigenvalue below 0; rounding gives some: float32-stored covariances of
# fewer images than features reach -1e-8 x the largest. A damaged or made-up matrix reaches -1.
PSD_TOLERANCE = 1e-5


def stats_key(data: dict[str, Any], num_real: int, extractor: dict[str, Any]) -> tuple[str, str]:
    """``(key as JSON, its sha256)`` for statistics of ``num_real`` images of ``data``."""
    key = {"format": CACHE_FORMAT, "data": data, "num_real": num_real}
    key.update(subset="i*len//num_real", extractor=extractor)
    blob = json.dumps(key, sort_keys=True, default=str)
    return blob, hashlib.sha256(blob.encode()).hexdigest()


def stats_file(folder: Path, digest: str) -> Path:
    return folder / f"real-{digest}.pt"


def load_stats(path: Path, blob: str, num_features: int | None = None) -> dict[str, Any] | None:
    """The cached statistics if ``path`` holds them under key ``blob`` (and they pass
    :func:`check_cached`); ``None`` otherwise."""
    if not path.is_file():
        return None
    try:
        stats = torch.load(path, map_location="cpu", weights_only=True)
        if stats["key"] != blob:
            return None
        check_cached(stats, path, num_features)
        return stats
    except Exception as error:  # truncated, damaged or foreign file: recompute
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
    num_features = int(metric.real_features_sum.shape[-1])  # 2048 for Inception's pool features
    if isinstance(real, Path):
        return read_stats_file(real, extractor, num_features)
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
    stats = load_stats(path, blob, num_features)
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


def read_stats_file(
    path: str | Path, extractor: dict[str, Any], num_features: int | None = None
) -> RealStatistics:
    """A statistics file, read once: pytorch-fid's ``.npz`` (``mu``, ``sigma``; ``num_images`` when
    facegan wrote it; no per-image features) or a facegan cache file (``.pt``, with its features if
    kept; refused if another extractor made it). ``num_features``: the feature size the statistics
    must have (the metric's); every file is checked (:func:`check_statistics`) before it is used."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"statistics file {str(path)!r} does not exist")
    if path.suffix == ".npz":
        mu, sigma, count = _read_npz(path)
        n = 2 if count is None else count  # without a count any n >= 2 gives back mu and sigma
        check_statistics(mu, sigma, n, path, num_features)
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
    check_cached(stats, path, num_features)
    states = [stats[name] for name in REAL_STATES]
    return RealStatistics(states, path, True, stats.get("features"), int(states[2]))


def _read_npz(path: Path) -> tuple[Tensor, Tensor, int | None]:
    """``(mu, sigma, num_images or None)`` of a pytorch-fid ``.npz``, as float64; ``ValueError`` naming
    ``path`` for a file that is not one."""
    try:
        with np.load(path) as stats:
            arrays = {name: stats[name] for name in ("mu", "sigma", "num_images") if name in stats.files}
    except Exception as error:  # not a zip, pickled objects, a damaged member, ...
        raise ValueError(f"{path}: not a statistics .npz (pytorch-fid's `mu` and `sigma`): "
                         f"{type(error).__name__}: {error}") from error  # fmt: skip
    missing = {"mu", "sigma"} - set(arrays)
    if missing:
        raise ValueError(f"{path}: a statistics .npz needs `mu` and `sigma` (pytorch-fid's format); "
                         f"{sorted(missing)} missing")  # fmt: skip
    for name, array in arrays.items():
        if array.dtype.kind not in "iuf":
            raise ValueError(f"{path}: `{name}` must hold real numbers, but its dtype is {array.dtype}")
    count = arrays.get("num_images")
    if count is not None and (count.shape != () or not np.isfinite(count) or count != np.floor(count)):
        raise ValueError(f"{path}: `num_images` must be a whole number (the images behind mu and sigma), "
                         f"but got {count.tolist()!r}")  # fmt: skip
    mu = torch.from_numpy(arrays["mu"].astype(np.float64))
    sigma = torch.from_numpy(arrays["sigma"].astype(np.float64))
    return mu, sigma, None if count is None else int(count)


def check_cached(stats: dict[str, Any], path: Path, num_features: int | None) -> None:
    """Check a facegan cache file's states (and per-image features, if kept) as
    :func:`check_statistics` does; ``ValueError`` naming ``path`` and the fault."""
    missing = [name for name in REAL_STATES if not isinstance(stats.get(name), Tensor)]
    if missing:
        raise ValueError(f"{path}: a facegan statistics file without {missing}; compute the statistics again")
    total, cov_total, count = (stats[name].double() for name in REAL_STATES)
    if count.numel() != 1 or total.ndim != 1:
        raise ValueError(f"{path}: damaged statistics (image count {tuple(count.shape)}, feature sum "
                         f"{tuple(total.shape)}); compute the statistics again")  # fmt: skip
    n = float(count)
    if not n >= 2:  # also NaN
        raise ValueError(f"{path}: statistics of {n:g} images; FID needs at least 2")
    mu = total / n
    sigma = cov_total - n * torch.outer(mu, mu) if cov_total.shape == (len(mu),) * 2 else cov_total
    check_statistics(mu, sigma / (n - 1), n, path, num_features)
    features = stats.get("features")
    if features is not None and (
        not isinstance(features, Tensor)
        or features.shape != (int(n), len(mu))
        or not features.isfinite().all()
    ):
        shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise ValueError(f"{path}: damaged per-image features {shape} (expected ({int(n)}, {len(mu)}), "
                         "finite); compute the statistics again")  # fmt: skip


def check_statistics(
    mu: Tensor, sigma: Tensor, count: float, path: str | Path, num_features: int | None = None
) -> None:
    """Refuse statistics FID cannot use, with a ``ValueError`` naming ``path`` and the fault.

    ``mu`` must be ``(D,)`` and ``sigma`` ``(D, D)`` with ``D == num_features`` (when given: the
    feature extractor's size, checked before any image is read), both finite, ``sigma`` a covariance
    matrix (symmetric, no eigenvalue below ``-PSD_TOLERANCE`` x the largest), of ``count >= 2`` images.
    Costs one symmetric eigenvalue decomposition (0.3 s at D = 2048 on one CPU thread).
    """
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise ValueError(f"{path}: `mu` {tuple(mu.shape)} and `sigma` {tuple(sigma.shape)} do not match "
                         "(mu must be (D,), sigma (D, D))")  # fmt: skip
    if num_features is not None and len(mu) != num_features:
        raise ValueError(f"{path}: statistics of {len(mu)} features, but the feature extractor gives "
                         f"{num_features}; compute them with the same extractor (FID's Inception: its "
                         "2048 pool features)")  # fmt: skip
    if not count >= 2:
        raise ValueError(f"{path}: statistics of {count:g} images; FID needs at least 2")
    for name, value in (("mu", mu), ("sigma", sigma)):
        bad = int((~value.isfinite()).sum())
        if bad:
            raise ValueError(f"{path}: `{name}` holds {bad} NaN or infinite values; the file is damaged: "
                             "compute the statistics again")  # fmt: skip
    scale = float(sigma.abs().max())
    asymmetry = float((sigma - sigma.T).abs().max())
    if asymmetry > PSD_TOLERANCE * scale:
        raise ValueError(f"{path}: `sigma` is not symmetric (|sigma - sigma^T| up to {asymmetry:.3g}, "
                         f"entries up to {scale:.3g}), so not a covariance matrix; compute the statistics "
                         "again")  # fmt: skip
    with one_thread():  # LAPACK, as FID's own step: slow under thread contention
        eigenvalues = torch.linalg.eigvalsh(sigma.double())
    lowest, highest = float(eigenvalues[0]), float(eigenvalues[-1])
    if lowest < -PSD_TOLERANCE * max(highest, 0.0):
        raise ValueError(f"{path}: `sigma` is not positive semi-definite (eigenvalues from {lowest:.4g} to "
                         f"{highest:.4g}), so not a covariance matrix; compute the statistics again")  # fmt: skip


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
