"""FID and KID: the one engine behind :class:`~facegan.FIDMonitor`, ``facegan score`` and the benchmarks.

:class:`FID` wraps torchmetrics ``FrechetInceptionDistance(feature=2048, antialias=False)`` with the
TensorFlow Inception weights (the features behind published FIDs), fed uint8 images. Its real half is
set once (:meth:`FID.set_real`: statistics read from a file, found in the on-disk cache, or computed
and cached); each call (:meth:`FID.__call__`) feeds one generated half and returns FID, and KID from
the same Inception features (no second pass)::

    fid = FID.load(weights_path, kid=True, seed=0)                   # the Inception network, once
    fid.set_real(from_files("real/", 64, None, 10_000, 64))          # cached: later runs read it
    scores = fid(generated(model.sample, fixed_latents(1000, 128, 0), batch_size=64))
    scores["fid"], scores["kid"]

Real statistics are the metric's ``real_*`` states (feature sum, covariance sum, count). They are
cached on disk under a key of what they depend on (the data, the count, the subset rule, the feature
extractor), written atomically and checked when read (:func:`check_statistics`: shapes, feature size,
finite values, a covariance matrix, at least 2 images); they also travel as pytorch-fid's ``.npz``
(:func:`save_npz`, :func:`read_stats_file`).

Under ``torch.distributed`` (DDP) every process calls :meth:`FID.__call__` with its own share of the
generated images (:func:`generated` splits the latents); ``compute()`` all-reduces. Rank 0 holds the
real statistics and the other ranks zeros (``set_real(None)``), so the sums are the real statistics
once; KID is computed on rank 0 from every process's features and broadcast. FID's last step (an
eigen-decomposition) and KID's subset scores run on one CPU thread (:func:`one_thread`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import poly_mmd
from torchmetrics.utilities.distributed import gather_all_tensors

from facegan.images import to_uint8
from facegan.io.atomic import atomic_write
from facegan.io.paths import cache_dir as cache_folder
from facegan.metrics.real_images import PixelHash, RealImages, ValueRange, as_uint8, warn_unstable

log = logging.getLogger(__name__)

WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
# Where torchmetrics (through torch-fidelity) downloads it from
WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{WEIGHTS_FILE}"
# How FIDMonitor takes the file, for the message when it is missing (`facegan score`: --weights PATH)
MONITOR_OPTION = "FIDMonitor(weights_path=PATH) (in a config: `weights_path: PATH` in its init_args)"
REAL_STATES = ("real_features_sum", "real_features_cov_sum", "real_features_num_samples")
SUBSETS, SUBSET_SIZE = 100, 1000  # KID's subsets: torchmetrics' (and torch-fidelity's) defaults
CACHE_FORMAT = 1  # bump when cached statistics change meaning (image conversion, subset rule, ...)
# A covariance matrix has no eigenvalue below 0; rounding gives some: float32-stored covariances of
# fewer images than features reach -1e-8 x the largest. A damaged or made-up matrix reaches -1.
PSD_TOLERANCE = 1e-5


class FID:
    """FID and KID of generated images against real statistics set once.

    Args:
        metric: a ``FrechetInceptionDistance`` with ``reset_real_features=False`` and uint8 input
            (:meth:`load` builds the standard one; any ``feature=`` module works, e.g. a small stand-in).
        extractor: what computed the features (part of the cache key; :func:`build_fid_metric`).
        kid: also compute KID from the same features; the real images' features are then kept and
            cached with their statistics (8 KB per image).
        kid_subsets: KID's random subsets; ``kid_subset_size``: images per subset, capped at the
            counts (torch-fidelity's 100 x 1000; with fewer images every subset is the whole set).
        seed: seed of KID's subsets.
    """

    def __init__(
        self,
        metric: FrechetInceptionDistance,
        extractor: dict[str, Any],
        kid: bool = True,
        kid_subsets: int = SUBSETS,
        kid_subset_size: int = SUBSET_SIZE,
        seed: int = 0,
    ) -> None:
        self.metric, self.extractor = metric, extractor
        self.kid, self.kid_subsets, self.kid_subset_size, self.seed = kid, kid_subsets, kid_subset_size, seed
        self.real: RealStatistics | None = None  # this process's real half (None: zeros, or not set)

    @classmethod
    def load(
        cls,
        weights_path: str | os.PathLike | None = None,
        owner: str = "FIDMonitor",
        option: str = MONITOR_OPTION,
        **settings: Any,
    ) -> FID:
        """The engine on the standard Inception metric (:func:`build_fid_metric`); ``settings`` as ``FID``'s."""
        return cls(*build_fid_metric(weights_path, owner, option), **settings)

    def to(self, device: torch.device | str) -> FID:
        self.metric.to(device)
        return self

    def set_real(
        self,
        real: RealImages | str | Path | RealStatistics | None,
        cache_dir: str | os.PathLike | None = None,
    ) -> RealStatistics | None:
        """Put the real half in place and return its statistics.

        ``real``: images (their statistics found in the cache under ``cache_dir``, default
        ``$FACEGAN_CACHE/fid`` or ``~/.cache/facegan/fid``, else computed and cached), a statistics
        file (``.npz``/``.pt``), statistics already read, or ``None``: zeros (DDP ranks other than 0).
        """
        if isinstance(real, str | os.PathLike):
            real = read_stats_file(real, self.extractor, int(self.metric.real_features_sum.shape[-1]))
        elif isinstance(real, RealImages):
            folder = cache_folder("fid", cache_dir)
            real = real_statistics(self.metric, real, self.extractor, folder, features=self.kid)
        set_real_states(self.metric, None if real is None else real.states)
        self.real = real
        return real

    def __call__(self, fake: Iterable[Tensor], name: str = "the generated images") -> dict[str, Any]:
        """FID (and KID) of ``fake``, this process's uint8 ``(B, 3, H, W)`` batches, against the real half.

        Returns ``fid``, ``kid``, ``kid_std``, ``kid_subset_size`` (``None`` without KID or without real
        features), ``num_fake`` (images over all processes) and ``seconds``. Under DDP call it on every
        process; every process gets the same values. ``name`` names ``fake`` in errors.
        """
        start = time.perf_counter()
        self.metric.reset()  # the generated half only (reset_real_features=False)
        tap = FeatureTap(self.metric.inception)
        with torch.no_grad(), tap if self.kid else contextlib.nullcontext():  # features only for KID
            for batch in fake:
                self.metric.update(batch.to(self.metric.device), real=False)
        num_fake = int(_sum_over_processes(self.metric.fake_features_num_samples.clone()))
        if num_fake < 2:
            raise ValueError(f"{name}: {num_fake} readable images; FID needs at least 2")
        fid = compute_fid(self.metric)
        self.metric.reset()
        scores: tuple[float, float, int] | None = None
        if self.kid:  # collectives on every process; the real features live on rank 0
            fake_features = _gather_rows(tap.features().to(self.metric.device)).cpu()
            real_features = None if self.real is None else self.real.features
            if real_features is not None:
                with one_thread():  # 100 subsets of (1000, 2048) matrix products: BLAS, as FID's step
                    scores = kid(
                        real_features, fake_features, self.kid_subsets, self.kid_subset_size, self.seed
                    )
            scores = _from_rank_zero(scores)
        kid_mean, kid_std, size = scores or (None, None, None)
        seconds = time.perf_counter() - start
        return {"fid": fid, "kid": kid_mean, "kid_std": kid_std, "kid_subset_size": size,
                "num_fake": num_fake, "seconds": seconds}  # fmt: skip


def fixed_latents(num: int, latent_dim: int, seed: int) -> Tensor:
    """The latents every FID of a generator is measured on: ``(num, latent_dim)`` from ``seed``, on the
    CPU, identical across evaluations, runs, resumes, ``FIDMonitor`` and ``facegan score``."""
    return torch.randn(num, latent_dim, generator=torch.Generator().manual_seed(seed))


def generated(
    sample: Callable[[Tensor], Tensor],
    latents: Tensor,
    batch_size: int,
    value_range: ValueRange = (-1.0, 1.0),
) -> Iterator[Tensor]:
    """uint8 batches of ``sample(z)`` (images in ``value_range``, clamped to it) over this process's
    share of ``latents`` (all of them in one process; under DDP rank r's ``tensor_split`` part)."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if _distributed() else (0, 1)
    for z in torch.tensor_split(latents, world)[rank].split(batch_size):
        yield fake_uint8(sample(z), value_range)


def fake_uint8(images: Tensor, value_range: ValueRange, argument: str = "fake_range") -> Tensor:
    """Generated images in ``value_range`` -> uint8, clamped: a generator may overshoot its range a
    little, but images far outside it (half its width) mean a wrong ``value_range``."""
    if isinstance(value_range, str) or images.dtype == torch.uint8:
        return as_uint8(images, value_range, argument, "the generated images")
    low, high = value_range
    margin = 0.5 * (high - low)
    lowest, highest = float(images.min()), float(images.max())
    if images.ndim != 4 or images.shape[1] != 3 or lowest < low - margin or highest > high + margin:
        raise ValueError(
            f"the generated images {tuple(images.shape)} span [{lowest:.4g}, {highest:.4g}]: expected "
            f"(B, 3, H, W) in `{argument}`=[{low:g}, {high:g}]; declare the generator's range"
        )
    return to_uint8((images.float() - low) * (2.0 / (high - low)) - 1.0)


# --- The standard feature extractor: torchmetrics' InceptionV3 with the TensorFlow weights, offline ---
# torchmetrics downloads WEIGHTS_FILE to $TORCH_HOME/hub/checkpoints/ on first use. Where there is no
# network, the same file can be given directly (an argument or $FACEGAN_FID_WEIGHTS), or put there.


class WeightsError(RuntimeError):
    """The Inception weights cannot be loaded (no network, a missing or corrupt file)."""


@functools.lru_cache(maxsize=4)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file, remembered per ``(path, size, mtime)`` (0.3 s for the Inception weights)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hub_weights_file() -> Path:
    """Where torchmetrics keeps (and looks for) the downloaded weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def resolve_weights(weights_path: str | os.PathLike | None = None) -> str | None:
    """The weights file to load: ``weights_path``, else ``$FACEGAN_FID_WEIGHTS``, else the hub file if
    present; ``None`` lets torchmetrics download it."""
    path = weights_path or os.environ.get("FACEGAN_FID_WEIGHTS") or None
    if path:
        return str(Path(path).expanduser())
    hub_file = hub_weights_file()
    return str(hub_file) if hub_file.is_file() else None


def build_fid_metric(
    weights_path: str | os.PathLike | None = None, owner: str = "FIDMonitor", option: str = MONITOR_OPTION
) -> tuple[FrechetInceptionDistance, dict[str, Any]]:
    """``(metric, extractor description)``: FID on uint8 images with the TensorFlow-compatible resize.

    ``FrechetInceptionDistance(feature=2048, antialias=False)``: the resize behind published FIDs,
    the network in float32, the statistics in float64; ``reset()`` clears the generated half only.
    The description (feature size, resize, the weights file's sha256) keys cached statistics.
    ``owner`` names the caller in the error raised when the weights cannot be loaded (``""``: the
    command's own prefix does), ``option`` says how it takes the file.
    """
    hub_file = hub_weights_file()
    path = resolve_weights(weights_path)
    try:
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"{path!r} is not a file")
        metric = FrechetInceptionDistance(
            feature=2048,
            reset_real_features=False,  # reset() clears the generated half only
            normalize=False,  # uint8 input
            antialias=False,  # the TensorFlow resize behind published FIDs
            feature_extractor_weights_path=path,  # None: torchmetrics downloads to hub_file
        )
    except ModuleNotFoundError:
        raise
    except Exception as error:  # no network (URLError), missing or corrupt file, ...
        if weights_path:
            looked = f"at {path} (the file given)"
        elif path:
            looked = f"at {path} ($FACEGAN_FID_WEIGHTS)"
        else:
            looked = f"at {hub_file} (no file there), then downloading it"
        raise WeightsError(
            f"{owner + ': ' if owner else ''}cannot load the FID Inception weights ({error}); looked {looked}. The file is "
            f"{WEIGHTS_FILE} from {WEIGHTS_URL}: give its path with {option} or the FACEGAN_FID_WEIGHTS "
            f"environment variable, or put it in {hub_file.parent}/ ($TORCH_HOME/hub/checkpoints/, where torchmetrics downloads it)."
        ) from error
    path = path or (str(hub_file) if hub_file.is_file() else None)  # None -> it was downloaded
    weights: Any = "torchmetrics-default"
    if path:
        stat = Path(path).stat()
        weights = {"sha256": _sha256(path, stat.st_size, stat.st_mtime_ns), "size": stat.st_size}
    return metric, {"feature": 2048, "antialias": False, "weights": weights}


# --- The distance -------------------------------------------------------------------------------------


def set_real_states(metric: FrechetInceptionDistance, states: Sequence[Tensor] | None) -> None:
    """Set the real states to ``(features sum, cov sum, count)``; ``None`` -> zeros."""
    for i, name in enumerate(REAL_STATES):
        value = torch.zeros_like(getattr(metric, name)) if states is None else states[i]
        setattr(metric, name, value.to(metric.device, getattr(metric, name).dtype))


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the block with one intra-op CPU thread (torch's, which sets MKL's and OpenMP's), then the
    previous count again.

    FID's last step (the eigenvalues of a 2048x2048 float64 matrix product) is LAPACK work that
    collapses when its threads wait for cores other processes hold: on a busy 2-core machine 1.9 to
    77 s with 2 threads, a steady 2.7 to 4.5 s with 1 (the same value to 1e-11).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def compute_fid(metric: FrechetInceptionDistance) -> float:
    """``metric.compute()`` (FID of its real and generated halves) on one CPU thread (:func:`one_thread`).

    ``compute()`` all-reduces under DDP: call it on every rank.
    """
    with one_thread():
        return float(metric.compute())


# --- KID (Bińkowski et al. 2018) from the Inception features FID already computes -----------------------
# FID is strongly biased by the number of images (with 1-2k generated images it reads far higher than
# with 50k); KID is an unbiased estimate (the squared MMD under the polynomial kernel (x . y / d + 1)^3),
# so tables report both. KID needs the features themselves, not only their sums: FeatureTap records what
# the FID metric's Inception network outputs while it updates. The estimate averages `subsets` random
# subsets of `subset_size` images of each side, as torchmetrics' KernelInceptionDistance does (same
# kernel, same estimator; its poly_mmd), with a seeded generator so a result can be repeated.


class FeatureTap:
    """Collects the outputs of ``network`` (the metric's Inception) while it is active.

    Example::

        with FeatureTap(metric.inception) as tap:
            metric.update(images, real=False)
        features = tap.features()  # (N, 2048)
    """

    def __init__(self, network: nn.Module) -> None:
        self.network = network
        self.batches: list[Tensor] = []
        self._handle: RemovableHandle | None = None

    def __enter__(self) -> FeatureTap:
        self._handle = self.network.register_forward_hook(
            lambda module, args, out: self.batches.append(out.detach())
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()

    def features(self) -> Tensor:
        """``(N, D)`` float32 features on the CPU, in the order they were computed."""
        if not self.batches:
            return torch.empty(0, 0)
        return torch.cat([batch.reshape(batch.shape[0], -1) for batch in self.batches]).float().cpu()


def kid(real: Tensor, fake: Tensor, subsets: int = SUBSETS, subset_size: int = SUBSET_SIZE, seed: int = 0
        ) -> tuple[float, float, int]:  # fmt: skip
    """``(KID mean, its std over subsets, the subset size used)`` of two ``(N, D)`` feature sets.

    ``subset_size`` is capped at the smaller set (a small evaluation uses all its images, in
    ``subsets`` random orders: then the std is 0 and the mean is the full-set estimate).
    """
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ValueError(
            f"KID needs at least 2 images on each side, but got {len(real)} real and {len(fake)} generated"
        )
    if size == len(real) == len(fake):  # every subset is the whole set: the estimate is order-free
        return float(poly_mmd(real, fake)), 0.0, size
    generator = torch.Generator().manual_seed(seed)
    scores = []
    for _ in range(subsets):
        f_real = real[torch.randperm(len(real), generator=generator)[:size]]
        f_fake = fake[torch.randperm(len(fake), generator=generator)[:size]]
        scores.append(poly_mmd(f_real, f_fake))
    stacked = torch.stack(scores)
    return float(stacked.mean()), float(stacked.std(unbiased=False)), size


# --- Several processes (plain torch.distributed, as torchmetrics' own compute() syncs) -------------------


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _sum_over_processes(count: Tensor) -> Tensor:
    if _distributed():
        dist.all_reduce(count)
    return count


def _gather_rows(rows: Tensor) -> Tensor:
    """Every process's ``(n_rank, D)`` rows (counts may differ) concatenated in rank order, on every process."""
    if not _distributed():
        return rows
    return torch.cat([part for part in gather_all_tensors(rows) if len(part)])


def _from_rank_zero(value: Any) -> Any:
    if not _distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# --- Real statistics: the disk cache and statistics files ------------------------------------------------


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


def stats_key(data: dict[str, Any], num_real: int, extractor: dict[str, Any]) -> tuple[str, str]:
    """``(key as JSON, its sha256)`` for statistics of ``num_real`` images of ``data``: the data (a
    fingerprint of its files and preprocessing, or a hash of its pixels), the count, the subset rule and
    the feature extractor (weights checksum, resize), so a change to any of them is a new file."""
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


def real_statistics(
    metric: FrechetInceptionDistance,
    real: RealImages,
    extractor: dict[str, Any],
    folder: Path,
    features: bool = False,
) -> RealStatistics:
    """The statistics of ``real``: found in the cache under ``folder``, or computed with ``metric`` and
    cached. ``features``: also keep (and cache) each image's features, for KID; a cache file without
    them is then computed again.

    A source without a key of its own is keyed by a hash of its pixels (one extra pass over them);
    if a second pass gives other pixels (a shuffled loader), the statistics are filed under the
    pixels actually used, with a warning.
    """
    num_features = int(metric.real_features_sum.shape[-1])  # 2048 for Inception's pool features
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
        stats = {"key": blob, **{name: getattr(metric, name).cpu() for name in REAL_STATES}}
        if features:
            stats["features"] = tap.features()  # (N, 2048) float32: 8 KB per image
        save_stats(path, stats)
    assert stats is not None
    states = [stats[name] for name in REAL_STATES]
    return RealStatistics(states, path, cached, stats.get("features"), int(states[2]))


def read_stats_file(
    path: str | os.PathLike, extractor: dict[str, Any], num_features: int | None = None
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
    """Refuse statistics FID cannot use, with a ``ValueError`` naming ``path`` and the fault: a damaged
    file would otherwise crash the eigenvalue step (NaN) or give a negative "FID" (no covariance).

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
