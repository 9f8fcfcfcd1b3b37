"""FID and KID: the one engine behind :class:`~facegan.FIDMonitor`, ``facegan score`` and the benchmarks,
and the real images it compares against (any source, as uint8 batches with a cache key).

    fid = FID.load(weights_path, kid=True, seed=0)                   # the Inception network, once
    fid.set_real(from_files("real/", 64, None, 10_000, 64))          # cached: later runs read it
    scores = fid(generated(model.sample, fixed_latents(1000, 128, 0), batch_size=64))

Real statistics are the metric's ``real_*`` states, cached under a key of all they depend on and
checked when read. Under DDP rank 0 holds them and the others zeros, so ``compute()``'s all-reduce
counts them once.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, IterableDataset, Subset
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import poly_mmd

from facegan.data.decode import FaceImageDataset, collate_images, fingerprint
from facegan.data.sources import resolve_source
from facegan.images import batch_images, to_uint8
from facegan.io.atomic import atomic_write
from facegan.io.paths import cache_dir as cache_folder
from facegan.training.distributed import all_reduce_sum, from_rank_zero, gather_rows, share

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
STATS_SUFFIXES = (".npz", ".pt")
ValueRange = tuple[float, float] | str  # (low, high) of float images, or "uint8"
RANGE_SLACK = 1e-3  # real float images may overshoot their declared range by this share of its width
FAKE_SLACK = 0.5  # generated ones by this share (clamped): beyond it the declared range is wrong


class FID:
    """FID and KID of generated images against real statistics set once.

    ``metric``: a ``FrechetInceptionDistance`` with ``reset_real_features=False`` and uint8 input
    (:meth:`load` builds the standard one; any ``feature=`` module works, e.g. a small stand-in);
    ``extractor``: what computed its features (part of the cache key). The KID settings are
    :class:`~facegan.FIDMonitor`'s; ``seed`` draws KID's subsets.
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
        """Put the real half in place and return its statistics. ``real``: images (statistics cached under
        ``cache_dir``, default ``$FACEGAN_CACHE/fid`` or ``~/.cache/facegan/fid``), a statistics file
        (``.npz``/``.pt``), statistics already read, or ``None``: zeros (DDP ranks other than 0)."""
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
        features), ``num_fake`` (images over all processes), ``seconds`` and ``num_real`` (``None`` for
        a ``.npz``, which does not say, and off rank 0). Under DDP call it on every process; all get the
        same scores (KID is computed on rank 0, which holds the real features). ``name`` names ``fake``
        in errors.
        """
        start = time.perf_counter()
        self.metric.reset()  # the generated half only (reset_real_features=False)
        tap = FeatureTap(self.metric.inception)
        with torch.no_grad(), tap if self.kid else contextlib.nullcontext():  # features only for KID
            for batch in fake:
                self.metric.update(batch.to(self.metric.device), real=False)
        num_fake = int(all_reduce_sum(None, self.metric.fake_features_num_samples))
        if num_fake < 2:
            raise ValueError(f"{name}: {num_fake} readable images; FID needs at least 2")
        fid = compute_fid(self.metric)
        self.metric.reset()
        scores: tuple[float, float, int] | None = None
        if self.kid:  # collectives on every process; the real features live on rank 0
            fake_features = gather_rows(tap.features().to(self.metric.device)).cpu()
            real_features = None if self.real is None else self.real.features
            if real_features is not None:
                with one_thread():  # 100 subsets of (1000, 2048) matrix products: BLAS, as FID's step
                    scores = kid(
                        real_features, fake_features, self.kid_subsets, self.kid_subset_size, self.seed
                    )
            scores = from_rank_zero(scores)
        kid_mean, kid_std, size = scores or (None, None, None)
        seconds = time.perf_counter() - start
        return {"fid": fid, "kid": kid_mean, "kid_std": kid_std, "kid_subset_size": size, "num_fake": num_fake,
                "seconds": seconds, "num_real": None if self.real is None else self.real.count}  # fmt: skip


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
    """uint8 batches of ``sample(z)`` over this process's share of ``latents``; the images in
    ``value_range`` may overshoot it by :data:`FAKE_SLACK` of its width (clamped)."""
    for z in share(latents).split(batch_size):
        yield as_uint8(sample(z), value_range, "fake_range", "the generated images", FAKE_SLACK)


# --- The standard feature extractor: torchmetrics' InceptionV3 with the TensorFlow weights, which it
# downloads to $TORCH_HOME/hub/checkpoints/; offline, give the file (argument, $FACEGAN_FID_WEIGHTS).


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
    """``(metric, extractor description)``: FID on uint8 images; the description (feature size, resize,
    the weights' sha256) keys cached statistics. ``owner`` (``""``: none) and ``option`` (how it takes
    the file) are for the error raised when the weights cannot be loaded."""
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
    """Run the block with one intra-op CPU thread (torch's, MKL's, OpenMP's). FID's last step (LAPACK on
    2048x2048 float64) collapses when its threads wait for cores other processes hold: on a busy 2-core
    machine 1.9 to 77 s with 2 threads, a steady 2.7 to 4.5 s with 1 (the same value to 1e-11)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def compute_fid(metric: FrechetInceptionDistance) -> float:
    """``metric.compute()`` on one CPU thread (:func:`one_thread`); it all-reduces under DDP."""
    with one_thread():
        return float(metric.compute())


# --- KID (Bińkowski et al. 2018): unbiased, unlike FID; from the features FID computes (not only their
# sums), estimated as torchmetrics' KernelInceptionDistance does (poly_mmd over random subsets), seeded.


class FeatureTap:
    """Collects the outputs of ``network`` (the metric's Inception: the features) inside ``with``."""

    def __init__(self, network: nn.Module) -> None:
        self.network, self.batches = network, cast(list[Tensor], [])

    def __enter__(self) -> FeatureTap:
        self._handle = self.network.register_forward_hook(
            lambda _, args, out: self.batches.append(out.detach())
        )
        return self

    def __exit__(self, *exc: object) -> None:
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


# --- Real images from any source (data modules, loaders, image files): uint8 batches and a cache key ------


@dataclass
class RealImages:
    """Up to ``count`` images of a source (``name``, for messages) as ``uint8`` batches."""

    name: str
    batches: Callable[[], Iterator[Tensor]]  # (B, 3, H, W) uint8 batches from the start, at each call
    count: int
    key: dict[str, Any] | None = None  # identifies the images without reading them; None: hash the pixels


def spaced_indices(size: int, count: int) -> list[int]:
    """``count`` evenly spaced, distinct indices into ``size`` items (the real-statistics subset rule)."""
    return [i * size // count for i in range(count)]


def check_value_range(value_range: Any, argument: str) -> ValueRange:
    """``value_range`` as ``(low, high)`` floats or ``"uint8"``; ``ValueError`` naming ``argument``."""
    if isinstance(value_range, str) and value_range == "uint8":
        return value_range
    try:
        low, high = (float(v) for v in value_range)
    except (TypeError, ValueError):
        low = high = float("nan")
    if not low < high:  # also NaN
        raise ValueError(
            f"`{argument}` must be [low, high] (e.g. [-1, 1] or [0, 1]) for float images, or 'uint8', "
            f"but got {value_range!r}"
        )
    return low, high


def as_uint8(
    images: Tensor, value_range: ValueRange, argument: str, where: str, slack: float = RANGE_SLACK
) -> Tensor:
    """``images`` in ``value_range`` -> uint8 ``(B, 3, H, W)``, clamped, after checking shape, dtype and
    range (values beyond ``slack`` x its width outside it mean a wrong declaration, not a bad FID)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            f"{where}: expected image batches (B, 3, H, W), got shape {tuple(images.shape)}; repeat "
            "grayscale images to 3 channels (or give (images, ...) tuples with the images first)"
        )
    if isinstance(value_range, str):  # "uint8" (check_value_range)
        if images.dtype != torch.uint8:
            raise ValueError(
                f"{where}: `{argument}`='uint8' but the images are {images.dtype}; declare their range "
                "instead, e.g. [-1, 1] or [0, 1]"
            )
        return images
    if images.dtype == torch.uint8:
        raise ValueError(f"{where}: the images are uint8 but `{argument}`={list(value_range)}; use 'uint8'")
    low, high = value_range
    lowest, highest = float(images.min()), float(images.max())
    if lowest < low - slack * (high - low) or highest > high + slack * (high - low):
        raise ValueError(
            f"{where}: image values span [{lowest:.4g}, {highest:.4g}], outside `{argument}`="
            f"[{low:g}, {high:g}]; declare the range the images are in"
        )
    return to_uint8((images.float() - low) * (2.0 / (high - low)) - 1.0)


def from_loader(
    loader: Iterable[Any], value_range: ValueRange, limit: int, name: str, argument: str = "real_range"
) -> RealImages:
    """``limit`` images of ``loader`` (batches of images or ``(images, ...)`` tuples): of a ``DataLoader``
    over a sized dataset ``limit`` evenly spaced ones in order (shuffling and ``drop_last`` undone), so
    the same images come every time; of any other iterable its first ``limit``."""
    try:
        size: int | None = len(getattr(loader, "dataset", None))  # type: ignore[arg-type]
    except TypeError:
        size = None
    count = limit if size is None else min(limit, size)
    if (
        isinstance(loader, DataLoader)
        and size is not None
        and not isinstance(loader.dataset, IterableDataset)
    ):
        loader = DataLoader(
            Subset(loader.dataset, spaced_indices(size, count)), batch_size=loader.batch_size or 64,
            collate_fn=loader.collate_fn, num_workers=loader.num_workers,
        )  # fmt: skip

    def batches() -> Iterator[Tensor]:
        left = count
        for index, batch in enumerate(loader):
            images = batch_images(batch)
            if not isinstance(images, Tensor):
                raise TypeError(f"{name}: batch {index} holds {type(images).__name__}, not image tensors")
            images = as_uint8(images[:left], value_range, argument, f"{name}, batch {index}")
            left -= len(images)
            yield images
            if left <= 0:
                return

    return RealImages(name, batches, count)


def from_datamodule(
    datamodule: Any, split: str, value_range: ValueRange, limit: int, batch_size: int
) -> RealImages:
    """facegan's data module (its fingerprint keys the cache), or any data module's split loader."""
    name = type(datamodule).__name__
    if hasattr(datamodule, "real_dataset") and hasattr(datamodule, "fingerprint"):
        dataset = datamodule.real_dataset(split)  # (3, S, S) in [-1, 1], never flipped
        count = min(len(dataset), limit)
        chosen = Subset(dataset, spaced_indices(len(dataset), count))
        images = DataLoader(
            chosen, batch_size=batch_size, collate_fn=lambda batch: to_uint8(collate_images(batch))
        )  # an empty batch: all its images skipped as unreadable
        key = datamodule.fingerprint(split)
        return RealImages(f"{name} split {split!r}", lambda: (b for b in images if len(b)), count, key)
    method = getattr(datamodule, f"{split}_dataloader", None)
    if method is None:
        raise TypeError(f"{name} has no `{split}_dataloader()` for the real images of split {split!r}")
    loader = method()
    if isinstance(loader, list | tuple):  # Lightning allows several loaders: the first
        loader = loader[0] if loader else None
    if loader is None:
        raise ValueError(f"{name}.{split}_dataloader() returned no loader for the real images")
    return from_loader(loader, value_range, limit, f"{name}.{split}_dataloader()")


def from_files(
    path: str | os.PathLike,
    image_size: int,
    crop_size: int | None,
    limit: int,
    batch_size: int,
    skip_bad_images: bool = False,
) -> RealImages:
    """Images of a folder (recursive), a zip or a CelebA folder (all its images), center-cropped to a
    square and resized to ``image_size`` as training images are; evenly spaced when there are more.
    ``skip_bad_images``: leave unreadable files out with a warning (as the data module does), rather
    than fail naming the first."""
    kind, source, _ = resolve_source(str(path))
    assert source is not None  # a path is never the procedural faces
    if len(source) == 0:
        raise ValueError(f"{path}: no images (jpg, png, webp, bmp) found")
    count = min(len(source), limit)
    chosen = FaceImageDataset(
        source, spaced_indices(len(source), count), image_size, crop_size, skip_bad_images=skip_bad_images
    )
    key = fingerprint(chosen, kind, "all", image_size, crop_size)

    def batches() -> Iterator[Tensor]:  # uint8 as decoded (no float round trip); BadImageError names a file
        for part in range(0, count, batch_size):
            images = collate_images(
                [chosen.load_or_skip(i) for i in range(part, min(part + batch_size, count))]
            )
            if len(images):  # empty: all skipped as unreadable
                yield images

    return RealImages(str(path), batches, count, key)


def resolve_real(
    real: Any,
    datamodule: Any,
    split: str,
    value_range: ValueRange,
    limit: int,
    batch_size: int,
    image_size: Callable[[], int],
    crop_size: int | None = None,
) -> RealImages | Path:
    """:class:`RealImages` of ``real`` (``None``: ``datamodule``, which its caller checked), or the path of
    a statistics file.

    ``image_size`` is called only for image files, which are resized to it (the generated size).
    """
    if isinstance(real, str | os.PathLike):
        path = Path(real).expanduser()
        if path.suffix in STATS_SUFFIXES:
            return path
        return from_files(path, image_size(), crop_size, limit, batch_size)
    if real is None or hasattr(real, f"{split}_dataloader") or hasattr(real, "real_dataset"):
        return from_datamodule(datamodule if real is None else real, split, value_range, limit, batch_size)
    if isinstance(real, Iterable) and not isinstance(real, Tensor):
        return from_loader(real, value_range, limit, type(real).__name__)
    raise TypeError(
        "`real` must be a data module, a DataLoader (or any iterable of image batches), a path to a folder "
        f"or zip of images, or a statistics file (.npz/.pt), but got {type(real).__name__}"
    )


class PixelHash:
    """sha256 of uint8 batches, image by image with their shapes, and the number of images."""

    def __init__(self) -> None:
        self._digest, self.count = hashlib.sha256(), 0

    def update(self, batch: Tensor) -> None:
        for image in batch.cpu().contiguous():
            self._digest.update(repr(tuple(image.shape)).encode())
            self._digest.update(image.numpy().tobytes())
        self.count += len(batch)

    def key(self) -> dict[str, Any]:
        return {"pixels": self._digest.hexdigest(), "num_images": self.count}


# --- Real statistics: the disk cache and statistics files ------------------------------------------------


@dataclass
class RealStatistics:
    """Real-image statistics and where they came from."""

    states: list[Tensor]  # the metric's real states (features sum, cov sum, count)
    path: Path  # the cache file or statistics file that holds them
    cached: bool  # read (a statistics file, a cache hit) rather than computed now
    features: Tensor | None  # per-image features (N, 2048) for KID, when kept
    count: int | None  # images behind them; None for a pytorch-fid .npz, which does not say

    @classmethod
    def of(cls, stats: dict[str, Any], path: Path, cached: bool) -> RealStatistics:
        """The statistics of a facegan cache file's contents."""
        states = [stats[name] for name in REAL_STATES]
        return cls(states, path, cached, stats.get("features"), int(states[2]))


def stats_key(
    data: dict[str, Any], num_real: int, extractor: dict[str, Any], folder: Path
) -> tuple[str, Path]:
    """``(key as JSON, cache file)`` for statistics of ``num_real`` images of ``data``: the data (a
    fingerprint of its files and preprocessing, or a hash of its pixels), the count, the subset rule and
    the feature extractor (weights checksum, resize), so a change to any of them is a new file."""
    key = {"format": CACHE_FORMAT, "data": data, "num_real": num_real}
    key.update(subset="i*len//num_real", extractor=extractor)
    blob = json.dumps(key, sort_keys=True, default=str)
    return blob, folder / f"real-{hashlib.sha256(blob.encode()).hexdigest()}.pt"


def real_statistics(
    metric: FrechetInceptionDistance,
    real: RealImages,
    extractor: dict[str, Any],
    folder: Path,
    features: bool = False,
) -> RealStatistics:
    """The statistics of ``real``: found in the cache under ``folder``, or computed with ``metric`` and
    cached. ``features``: also keep (and cache) each image's features, for KID (a cached file without
    them is computed again). A source without a key is keyed by a hash of its pixels (one extra pass);
    if a second pass gives other pixels (a shuffled loader), they key the file, with a warning."""
    num_features = int(metric.real_features_sum.shape[-1])  # 2048 for Inception's pool features
    if real.count < 2:
        raise ValueError(f"{real.name} has {real.count} images; FID needs at least 2")
    key = real.key
    if key is None:
        hashed = PixelHash()
        for batch in real.batches():
            hashed.update(batch)
        key = hashed.key()
    blob, path = stats_key(key, real.count, extractor, folder)
    stats = None
    try:
        if path.is_file():
            stats = torch.load(path, map_location="cpu", weights_only=True)
            stats = check_cached(stats, path, num_features) if stats["key"] == blob else None
    except Exception as error:  # truncated, damaged or foreign file: recompute
        log.warning("FIDMonitor: ignoring unreadable cache %s (%s)", path, error)
        stats = None
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
            warnings.warn(
                f"{real.name} gave other images on a second pass (a shuffled loader?): its real statistics "
                "are cached under the images actually used and will not be found again; give FID an "
                "unshuffled loader",
                stacklevel=2,
            )
            blob, path = stats_key(used.key(), real.count, extractor, folder)
        stats = {"key": blob, **{name: getattr(metric, name).cpu() for name in REAL_STATES}}
        if features:
            stats["features"] = tap.features()  # (N, 2048) float32: 8 KB per image
        try:  # a folder that cannot be written is warned about, not fatal
            with atomic_write(path) as file:
                torch.save(stats, file)
        except OSError as error:
            log.warning("FIDMonitor: could not write the cache %s (%s)", path, error)
    assert stats is not None
    return RealStatistics.of(stats, path, cached)


def read_stats_file(
    path: str | os.PathLike, extractor: dict[str, Any], num_features: int | None = None
) -> RealStatistics:
    """A statistics file, read once and checked: pytorch-fid's ``.npz`` (``mu``, ``sigma``; ``num_images``
    when facegan wrote it) or a facegan cache ``.pt`` (with its features if kept; refused if another
    extractor made it). ``num_features``: the feature size the statistics must have."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"statistics file {str(path)!r} does not exist")
    if path.suffix == ".npz":
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
        num = arrays.get("num_images")
        if num is not None and (num.shape != () or not np.isfinite(num) or num != np.floor(num)):
            raise ValueError(f"{path}: `num_images` must be a whole number (the images behind mu and sigma), "
                             f"but got {num.tolist()!r}")  # fmt: skip
        mu, sigma = (torch.from_numpy(arrays[name].astype(np.float64)) for name in ("mu", "sigma"))
        count = None if num is None else int(num)
        n = 2 if count is None else count  # without a count any n >= 2 gives back mu and sigma
        check_statistics(mu, sigma, n, path, num_features)
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
    return RealStatistics.of(check_cached(stats, path, num_features), path, True)


def check_cached(stats: dict[str, Any], path: Path, num_features: int | None) -> dict[str, Any]:
    """``stats``, a facegan cache file's contents, after :func:`check_statistics` of its states and a
    check of its per-image features if kept."""
    missing = [name for name in REAL_STATES if not isinstance(stats.get(name), Tensor)]
    if missing:
        raise ValueError(f"{path}: a facegan statistics file without {missing}; compute the statistics again")
    total, _, count = (stats[name] for name in REAL_STATES)
    if count.numel() != 1 or total.ndim != 1:
        raise ValueError(f"{path}: damaged statistics (image count {tuple(count.shape)}, feature sum "
                         f"{tuple(total.shape)}); compute the statistics again")  # fmt: skip
    mu, sigma, n = mean_cov([stats[name] for name in REAL_STATES])
    check_statistics(mu, sigma, n, path, num_features)
    features = stats.get("features")
    if features is not None and (
        not isinstance(features, Tensor)
        or features.shape != (int(n), len(mu))
        or not features.isfinite().all()
    ):
        shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise ValueError(f"{path}: damaged per-image features {shape} (expected ({int(n)}, {len(mu)}), "
                         "finite); compute the statistics again")  # fmt: skip
    return stats


def check_statistics(
    mu: Tensor, sigma: Tensor, count: float, path: str | Path, num_features: int | None = None
) -> None:
    """Refuse statistics FID cannot use (``ValueError`` naming ``path`` and the fault), which would crash
    the eigenvalue step (NaN) or give a negative "FID"; before any image is read (0.3 s at D = 2048)."""
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


def mean_cov(states: Sequence[Tensor]) -> tuple[Tensor, Tensor, float]:
    """``(mu, sigma, n)``, float64, of real states: torchmetrics keeps sums, so mean = sum / n and
    cov = (cov_sum - n mean mean^T) / (n - 1) (a damaged cov sum is left for check_statistics to name)."""
    total, cov_total, count = (state.double().cpu() for state in states)
    n = float(count)
    mu = total / n
    if cov_total.shape == (len(mu),) * 2:
        cov_total = cov_total - n * torch.outer(mu, mu)
    return mu, cov_total / (n - 1), n


def save_npz(path: str | Path, states: list[Tensor]) -> Path:
    """Write real states as pytorch-fid's ``.npz`` (``mu``, ``sigma``, float64) plus ``num_images``."""
    mu, sigma, n = mean_cov(states)
    path = Path(path).expanduser()
    with atomic_write(path) as file:
        np.savez(file, mu=mu.numpy(), sigma=sigma.numpy(), num_images=np.int64(round(n)))
    return path
