"""A preprocessed dataset cache: every image decoded, cropped and resized once, then memory-mapped.

Decoding JPEGs, not the networks, limits a small GAN's speed on a GPU. The first use of a split
decodes its images once (loader workers in parallel, a progress bar) into one raw ``uint8`` file of
``(N, 3, S, S)`` rows; later epochs and runs read batches of rows straight from the page cache.

The file name is a digest of everything the pixels depend on (the data module's fingerprint: source
kind, every file's resolved path, size and modification time, the split, the crop and the
resolution; plus :data:`CACHE_FORMAT`), so any change builds a new cache. A build writes temporary
files and renames them into place only when complete (rows first, then the JSON that vouches for
them), so an interrupted build never leaves a cache that is used: readers accept a cache only when
the JSON exists, its key matches and the rows file has exactly the announced size. The temporary
files of a build whose process was killed outright (SIGKILL, out of memory) are deleted by the next
build on the same host.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from facegan.data.decode import FaceImageDataset
from facegan.io.atomic import WriteError, atomic_write, check_writable, remove_abandoned

log = logging.getLogger(__name__)

CACHE_FORMAT = 1


def cache_paths(folder: Path, key: dict[str, Any]) -> tuple[Path, Path, str]:
    blob = json.dumps({"format": CACHE_FORMAT, **key}, sort_keys=True, default=str)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:32]
    return folder / f"faces-{digest}.u8", folder / f"faces-{digest}.json", blob


class _Uint8Rows(Dataset):
    """``(index, uint8 image or None)`` of a :class:`FaceImageDataset` (None: skipped bad image)."""

    def __init__(self, dataset: FaceImageDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None]:
        return index, self.dataset.load_or_skip(index)


def _collate(items: list[tuple[int, torch.Tensor | None]]) -> list[tuple[int, torch.Tensor | None]]:
    return items


def decoded_rows(
    dataset: FaceImageDataset, num_workers: int, verb: str
) -> Iterator[tuple[int, torch.Tensor | None]]:
    """``(index, uint8 (3, S, S) image or None for a skipped bad one)`` of every image of ``dataset``,
    in order, decoded by ``num_workers`` loader workers, with a progress bar ("facegan: <verb> ...")."""
    loader = DataLoader(_Uint8Rows(dataset), batch_size=64, num_workers=num_workers, collate_fn=_collate)
    desc = f"facegan: {verb} {len(dataset)} images at {dataset.image_size} px"
    for items in tqdm(loader, desc=desc, unit="batch"):
        yield from items


def decode_all(dataset: FaceImageDataset, num_workers: int = 0) -> torch.Tensor:
    """Every readable image of ``dataset`` decoded once into memory: ``(N, 3, S, S)`` uint8 (skipped bad
    images are left out, as in a cache)."""
    size = dataset.image_size
    rows = torch.empty(len(dataset), 3, size, size, dtype=torch.uint8)
    count = 0
    for _, image in decoded_rows(dataset, num_workers, "decoding"):
        if image is not None:
            rows[count] = image
            count += 1
    return rows[:count]


def build_cache(
    dataset: FaceImageDataset, folder: Path, key: dict[str, Any], num_workers: int = 0
) -> tuple[Path, dict[str, Any]]:
    """``(rows file, description)`` of ``dataset``'s cache under ``folder``, built first if needed."""
    rows_path, meta_path, blob = cache_paths(folder, key)
    meta = load_meta(rows_path, meta_path, blob)
    if meta is not None:
        return rows_path, meta
    try:
        check_writable(folder)  # creates it; a read-only cache folder fails here with one line
    except WriteError as error:
        advice = "set FACEGAN_CACHE or --data.cache_dir to a folder you can write to, or --data.cache false"
        raise WriteError(folder, error, advice) from error
    for tmp in remove_abandoned(folder, "faces-*"):
        log.info("FaceDataModule: removed %s, left by an interrupted cache build", tmp)
    size = dataset.image_size
    count, skipped = 0, []
    with atomic_write(rows_path) as out:  # rows first: without the JSON they are never used
        for index, image in decoded_rows(dataset, num_workers, "caching"):
            if image is None:
                skipped.append(index)
                continue
            out.write(image.numpy().tobytes())
            count += 1
    meta = {"key": blob, "count": count, "shape": [3, size, size], "dtype": "uint8", "skipped": skipped}
    with atomic_write(meta_path, "w") as out:
        json.dump(meta, out)
    log.info("FaceDataModule: cached %d images in %s", count, rows_path)
    return rows_path, meta


def load_meta(rows_path: Path, meta_path: Path, blob: str) -> dict[str, Any] | None:
    """The cache's description if it is complete and matches ``blob``, else ``None``."""
    try:
        meta = json.loads(meta_path.read_text())
        expected = meta["count"] * int(np.prod(meta["shape"]))
        if meta["key"] == blob and rows_path.stat().st_size == expected:
            return meta
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


class CachedFaces(Dataset):
    """The rows of a cache as ``uint8`` ``(3, S, S)`` images (batched reads via ``__getitems__``).

    Returns uint8: :class:`facegan.FaceDataModule` converts to ``[-1, 1]`` and flips on the device,
    after the transfer (a quarter of the float32 bytes cross the bus).
    """

    def __init__(self, rows_path: Path, count: int, image_size: int) -> None:
        self.rows_path, self.count, self.image_size = rows_path, count, image_size
        self._rows: np.ndarray | None = None

    def _array(self) -> np.ndarray:
        if self._rows is None:  # opened lazily, so each loader worker maps the file itself
            shape = (self.count, 3, self.image_size, self.image_size)
            self._rows = np.memmap(self.rows_path, dtype=np.uint8, mode="r", shape=shape)
        return self._rows

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(np.array(self._array()[index]))

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        """A whole batch in one gather from the mapped file: ``(B, 3, S, S)`` uint8."""
        return torch.from_numpy(self._array()[np.asarray(indices)])

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_rows": None}


def collate_uint8(batch: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """Batches of :class:`CachedFaces` arrive stacked (``__getitems__``); single items get stacked."""
    return batch if isinstance(batch, torch.Tensor) else torch.stack(batch)
