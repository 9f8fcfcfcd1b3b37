"""Decoded uint8 rows: the cache file, the set held on the device, FID's unflipped view of a training set.

A cache is one raw ``(N, 3, S, S)`` file named by a digest of the split's fingerprint; its JSON, written
after the rows, vouches for them (key and size), so an interrupted build is never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from facegan.data.decode import FaceImageDataset
from facegan.data.procedural import ProceduralFaces
from facegan.images import from_uint8, to_uint8
from facegan.io.atomic import WriteError, atomic_write, check_writable, remove_abandoned

log = logging.getLogger(__name__)

CACHE_FORMAT = 1


def _load_rows(dataset: FaceImageDataset, indices: list[int]) -> tuple[torch.Tensor, list[int]]:
    """The readable images of ``indices`` stacked, ``(n, 3, S, S)`` uint8 (from a worker: one shared
    memory block per batch, not one per image), and the indices of those skipped as unreadable."""
    rows, skipped = [], []
    for index in indices:
        image = dataset.load_or_skip(index)
        if image is None:
            skipped.append(index)
        else:
            rows.append(image)
    size = dataset.image_size
    return torch.stack(rows) if rows else torch.empty(0, 3, size, size, dtype=torch.uint8), skipped


def decoded_rows(
    dataset: FaceImageDataset, num_workers: int, verb: str, skipped: list[int]
) -> Iterator[torch.Tensor]:
    """Every readable image of ``dataset`` in order, in uint8 ``(n, 3, S, S)`` batches decoded by
    ``num_workers`` loader workers, with a progress bar ("facegan: <verb> ..."); the indices of bad ones
    skipped go to ``skipped``."""
    indices = range(len(dataset))  # the batches of indices are decoded by collate_fn, in the workers
    loader: DataLoader = DataLoader(
        indices,  # type: ignore[arg-type]
        batch_size=64,
        num_workers=num_workers,
        collate_fn=partial(_load_rows, dataset),
        generator=torch.Generator(),  # its iterator's seed: not from the global RNG, which a resume restored
    )
    desc = f"facegan: {verb} {len(dataset)} images at {dataset.image_size} px"
    for rows, bad in tqdm(loader, desc=desc, unit="batch"):
        skipped.extend(bad)
        yield rows


def decode_all(dataset: FaceImageDataset, num_workers: int = 0) -> torch.Tensor:
    """Every readable image of ``dataset`` decoded once into memory: ``(N, 3, S, S)`` uint8 (skipped bad
    images are left out, as in a cache)."""
    size = dataset.image_size
    rows = torch.empty(len(dataset), 3, size, size, dtype=torch.uint8)
    skipped: list[int] = []
    done = 0
    for batch in decoded_rows(dataset, num_workers, "decoding", skipped):
        rows[done : done + batch.shape[0]] = batch
        done += batch.shape[0]
    return rows[:done]


def _render_rows(faces: ProceduralFaces, indices: list[int]) -> torch.Tensor:
    return to_uint8(torch.stack(faces.__getitems__(indices)))


def render_all(faces: ProceduralFaces, num_workers: int = 0) -> torch.Tensor:
    """Every built-in face of ``faces`` rendered once, ``(N, 3, S, S)`` uint8, by ``num_workers`` processes
    (faces depend on their index only; the global RNG is left alone)."""
    indices: Any = range(len(faces))
    loader: DataLoader = DataLoader(
        indices, batch_size=256, num_workers=num_workers, collate_fn=partial(_render_rows, faces),
        generator=torch.Generator(),
    )  # fmt: skip
    return torch.cat(list(loader))


def build_cache(
    dataset: FaceImageDataset, folder: Path, key: dict[str, Any], num_workers: int = 0
) -> tuple[Path, dict[str, Any]]:
    """``(rows file, description)`` of ``dataset``'s cache under ``folder``, built first if needed."""
    blob = json.dumps({"format": CACHE_FORMAT, **key}, sort_keys=True, default=str)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:32]
    rows_path, meta_path = folder / f"faces-{digest}.u8", folder / f"faces-{digest}.json"
    try:  # a complete cache of this key: its JSON, and the rows of the size it announces
        meta = json.loads(meta_path.read_text())
        if meta["key"] == blob and rows_path.stat().st_size == meta["count"] * int(np.prod(meta["shape"])):
            return rows_path, meta
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        check_writable(folder)  # creates it; a read-only cache folder fails here with one line
    except WriteError as error:
        advice = "set FACEGAN_CACHE or --data.cache_dir to a folder you can write to, or --data.cache false"
        raise WriteError(folder, error, advice) from error
    for tmp in remove_abandoned(folder, "faces-*"):
        log.info("FaceDataModule: removed %s, left by an interrupted cache build", tmp)
    size = dataset.image_size
    skipped: list[int] = []
    with atomic_write(rows_path) as out:  # rows first: without the JSON they are never used
        for rows in decoded_rows(dataset, num_workers, "caching", skipped):
            out.write(rows.numpy().tobytes())
    count = len(dataset) - len(skipped)
    meta = {"key": blob, "count": count, "shape": [3, size, size], "dtype": "uint8", "skipped": skipped}
    with atomic_write(meta_path, "w") as out:
        json.dump(meta, out)
    log.info("FaceDataModule: cached %d images in %s", count, rows_path)
    return rows_path, meta


class Uint8Rows(Dataset):
    """uint8 ``(3, S, S)`` rows by index, a batch gathered at once (``__getitems__``): the cache's and
    the shards'. The data module scales them to ``[-1, 1]`` and flips them on the device, after the
    transfer (a quarter of the float32 bytes cross the bus); :class:`FromUint8` does so for FID."""

    count: int
    _rows: Any  # opened on first use in each process: not pickled to loader workers

    def __len__(self) -> int:
        return self.count

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_rows": None}

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> torch.Tensor:  # (B, 3, S, S) uint8
        raise NotImplementedError


class CachedFaces(Uint8Rows):
    """The rows of a cache file, memory-mapped."""

    def __init__(self, rows_path: Path, count: int, image_size: int) -> None:
        self.rows_path, self.count, self.image_size = rows_path, count, image_size
        self._rows: np.ndarray | None = None

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        if self._rows is None:  # opened lazily, so each loader worker maps the file itself
            shape = (self.count, 3, self.image_size, self.image_size)
            self._rows = np.memmap(self.rows_path, dtype=np.uint8, mode="r", shape=shape)
        return torch.from_numpy(self._rows[np.asarray(indices)])  # one gather from the mapped file


class DeviceBatches:
    """Shuffled uint8 training batches drawn from ``images`` (``(N, 3, S, S)`` uint8), copied to ``device``.

    Epoch ``e`` is the permutation drawn from ``seed + e``, as ``DistributedSampler``'s: the same in
    every process (a resume replays it), process ``rank`` taking every ``world_size``-th index. The
    last partial batch is dropped.
    """

    def __init__(self, images: torch.Tensor, batch_size: int, device: torch.device, world_size: int = 1,
                 rank: int = 0, seed: int = 0, epoch: Callable[[], int] = lambda: 0) -> None:  # fmt: skip
        self.images = images.to(device)  # (N, 3, S, S) uint8; no copy when already there
        self.batch_size, self.world_size, self.rank = batch_size, world_size, rank
        self.seed, self.epoch = seed, epoch

    def __len__(self) -> int:
        return (self.images.shape[0] // self.world_size) // self.batch_size

    def __iter__(self) -> Iterator[torch.Tensor]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch())
        order = torch.randperm(self.images.shape[0], generator=generator).to(self.images.device)
        mine = order[self.rank :: self.world_size]
        for i in range(len(self)):
            yield self.images[mine[i * self.batch_size : (i + 1) * self.batch_size]]


class FromUint8(Dataset):
    """float ``[-1, 1]`` view of uint8 rows (FID's real images from the cache or shards)."""

    def __init__(self, dataset: Uint8Rows) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> torch.Tensor:
        return from_uint8(self.dataset[index])

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        return list(from_uint8(self.dataset.__getitems__(indices)).unbind(0))


def unflipped(dataset: Dataset) -> Dataset:
    """The images of a training dataset exactly as preprocessed, but never flipped (for FID)."""
    if isinstance(dataset, Uint8Rows):
        return FromUint8(dataset)
    if isinstance(dataset, ProceduralFaces) and dataset.flip:
        return ProceduralFaces(dataset.num_images, dataset.image_size, dataset.seed)
    if isinstance(dataset, FaceImageDataset) and dataset.flip:
        return replace(dataset, flip=False)  # counts its skipped files anew
    return dataset
