"""Real images for FID from any source, as ``uint8`` batches with what identifies them.

A source is facegan's data module (its ``real_dataset(split)`` and ``fingerprint(split)``), any other
data module (duck-typed: its ``<split>_dataloader()``), any ``DataLoader`` or iterable of batches, or
a folder / zip / CelebA folder of image files. :class:`RealImages` gives each the same shape: a
function that yields the images as ``(B, 3, H, W)`` uint8 batches, and a cache key. Sources without a
fingerprint of their own (loaders) are keyed by a sha256 of the pixels they yield, so a changed image
is a new key; reading the pixels costs little next to the Inception network.

Loaders yield float batches in a declared ``value_range`` (``(-1, 1)``, ``(0, 1)``, ...) or uint8 batches
(``"uint8"``); every batch is checked against it, so a wrong declaration is an error, not a bad FID.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset

from facegan.data.decode import FaceImageDataset, collate_images
from facegan.data.fingerprint import fingerprint
from facegan.data.sources import resolve_source
from facegan.images import batch_images, to_uint8

ValueRange = tuple[float, float] | str  # (low, high) of float images, or "uint8"
RANGE_SLACK = 1e-3  # float images may overshoot their declared range by this share of its width


@dataclass
class RealImages:
    """Up to ``count`` images of a source as ``uint8`` batches.

    Attributes:
        name: the source, for messages.
        batches: yields ``(B, 3, H, W)`` uint8 batches from the start, each time it is called.
        count: how many images ``batches`` yields at most (unreadable files skipped excepted).
        key: identifies the images without reading them (a JSON-able dict); ``None``: hash the pixels.
    """

    name: str
    batches: Callable[[], Iterator[Tensor]]
    count: int
    key: dict[str, Any] | None = None


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


def as_uint8(images: Tensor, value_range: ValueRange, argument: str, where: str) -> Tensor:
    """``images`` in ``value_range`` -> uint8 ``(B, 3, H, W)``, after checking shape, dtype and range."""
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
    slack = RANGE_SLACK * (high - low)
    lowest, highest = float(images.min()), float(images.max())
    if lowest < low - slack or highest > high + slack:
        raise ValueError(
            f"{where}: image values span [{lowest:.4g}, {highest:.4g}], outside `{argument}`="
            f"[{low:g}, {high:g}]; declare the range the images are in"
        )
    return to_uint8((images.float() - low) * (2.0 / (high - low)) - 1.0)


def from_loader(
    loader: Iterable[Any], value_range: ValueRange, limit: int, name: str, argument: str = "real_range"
) -> RealImages:
    """``limit`` images of ``loader`` (batches of images or ``(images, ...)`` tuples).

    A ``DataLoader`` over a sized dataset is read in order, ``limit`` evenly spaced images of it
    (its shuffling and ``drop_last`` undone, its batch size and collate function kept), so the same
    images come every time; any other iterable gives its first ``limit`` images.
    """
    size = _dataset_size(loader)
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


def _dataset_size(loader: Iterable[Any]) -> int | None:
    dataset = getattr(loader, "dataset", None)
    try:
        return len(dataset)  # type: ignore[arg-type]
    except TypeError:
        return None


def from_datamodule(
    datamodule: Any, split: str, value_range: ValueRange, limit: int, batch_size: int
) -> RealImages:
    """facegan's data module (its fingerprint keys the cache), or any data module's split loader."""
    name = type(datamodule).__name__
    if hasattr(datamodule, "real_dataset") and hasattr(datamodule, "fingerprint"):
        dataset = datamodule.real_dataset(split)  # (3, S, S) in [-1, 1], never flipped
        count = min(len(dataset), limit)
        return RealImages(
            f"{name} split {split!r}",
            lambda: _spaced(dataset, count, batch_size),
            count,
            datamodule.fingerprint(split),
        )
    method = getattr(datamodule, f"{split}_dataloader", None)
    if method is None:
        raise TypeError(f"{name} has no `{split}_dataloader()` for the real images of split {split!r}")
    loader = method()
    if isinstance(loader, list | tuple):  # Lightning allows several loaders: the first
        loader = loader[0] if loader else None
    if loader is None:
        raise ValueError(f"{name}.{split}_dataloader() returned no loader for the real images")
    return from_loader(loader, value_range, limit, f"{name}.{split}_dataloader()")


def _spaced(dataset: Dataset, count: int, batch_size: int) -> Iterator[Tensor]:
    """``count`` evenly spaced images of a ``[-1, 1]`` dataset (skipped ``None`` items left out)."""
    indices = spaced_indices(len(dataset), count)  # type: ignore[arg-type]
    for images in DataLoader(Subset(dataset, indices), batch_size=batch_size, collate_fn=collate_images):
        if len(images):  # (B, 3, S, S) in [-1, 1]; B < batch_size if images were skipped
            yield to_uint8(images)


class _Uint8Files(Dataset):
    """The uint8 images of a :class:`FaceImageDataset` (no float round trip)."""

    def __init__(self, dataset: FaceImageDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Tensor | None:
        return self.dataset.load_or_skip(index)  # BadImageError names the file; None: skipped


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

    def batches() -> Iterator[Tensor]:
        for images in DataLoader(_Uint8Files(chosen), batch_size=batch_size, collate_fn=collate_images):
            if len(images):  # (B, 3, S, S) uint8; B < batch_size if files were skipped
                yield images

    return RealImages(str(path), batches, count, key)


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


def warn_unstable(name: str) -> None:
    warnings.warn(
        f"{name} gave other images on a second pass (a shuffled loader?): its real statistics are cached "
        "under the images actually used and will not be found again; give FID an unshuffled loader",
        stacklevel=3,
    )


def source_path(value: Any) -> Path | None:
    """``value`` as a path if it is one (str or PathLike), else ``None``."""
    return Path(value).expanduser() if isinstance(value, str | os.PathLike) else None


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
    """:class:`RealImages` of ``real`` (``None``: ``datamodule``), or the path of a statistics file.

    ``image_size`` is called only for image files, which are resized to it (the generated size).
    """
    path = source_path(real)
    if path is not None:
        if path.suffix in STATS_SUFFIXES:
            return path
        return from_files(path, image_size(), crop_size, limit, batch_size)
    if real is None:
        if datamodule is None:
            raise TypeError(
                "no real images: give `real` (a data module, a DataLoader, image files or statistics)"
            )
        return from_datamodule(datamodule, split, value_range, limit, batch_size)
    if hasattr(real, f"{split}_dataloader") or hasattr(real, "real_dataset"):
        return from_datamodule(real, split, value_range, limit, batch_size)
    if isinstance(real, Iterable) and not isinstance(real, Tensor):
        return from_loader(real, value_range, limit, type(real).__name__)
    raise TypeError(
        "`real` must be a data module, a DataLoader (or any iterable of image batches), a path to a folder "
        f"or zip of images, or a statistics file (.npz/.pt), but got {type(real).__name__}"
    )


STATS_SUFFIXES = (".npz", ".pt")
