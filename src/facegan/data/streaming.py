"""Training from prepared shards (:mod:`facegan.data.shards`), local or remote, with LitData.

The training split streams through LitData's ``StreamingDataLoader``: shuffled per epoch (the order
of the chunks, then all images inside each chunk, from ``seed`` and the epoch; a batch draws from
one or two chunks, ~5,000 images at 64 px with ``prepare``'s 64 MB chunks), and under DDP each rank of each node reads
its own share (LitData reads the world size and rank from ``torch.distributed``); Lightning saves
the loader's ``state_dict()`` in the checkpoint and restores it, so a resume continues the epoch
where it stopped. Validation, test and FID's real images read rows by index (:class:`ShardRows`).
Batches are uint8, like the memmap cache's: the data module scales and flips them on the device.
"""

from __future__ import annotations

import json
import os
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from facegan.data.shards import META_NAME, SHARDS_FORMAT, is_remote, require_litdata, split_url
from facegan.data.workers import leave_job_sigterm_to_the_trainer


def is_prepared(root: str | None) -> bool:
    """Whether ``root`` is prepared shards: a URL, or a folder holding :data:`META_NAME`."""
    if root is None:
        return False
    return is_remote(str(root)) or (Path(root).expanduser() / META_NAME).is_file()


def read_meta(root: str, storage_options: dict | None = None) -> dict[str, Any]:
    """The metadata of prepared shards at ``root`` (a folder, or a URL: fetched with LitData's downloader)."""
    try:
        if is_remote(root):
            require_litdata()
            from litdata.streaming.downloader import get_downloader

            with tempfile.TemporaryDirectory(prefix="facegan-shards-") as tmp:
                local = os.path.join(tmp, META_NAME)
                url = f"{root.rstrip('/')}/{META_NAME}"
                get_downloader(root, tmp, [], storage_options or {}).download_file(url, local)
                meta = json.loads(Path(local).read_text())
        else:
            meta = json.loads((Path(root).expanduser() / META_NAME).read_text())
    except (OSError, ValueError) as error:  # missing, unreachable, not JSON
        raise FileNotFoundError(
            f"FaceDataModule: {root!r} is not a prepared folder ({META_NAME} unreadable: {error}); "
            "write one with `python -m facegan prepare --root IMAGES --out DIR --image-size S`"
        ) from error
    if meta.get("format") != SHARDS_FORMAT:
        raise ValueError(
            f"FaceDataModule: {root!r} was prepared in format {meta.get('format')!r}, this facegan reads "
            f"{SHARDS_FORMAT}; prepare it again"
        )
    return meta


def collate_rows(items: list[dict[str, Any]]) -> torch.Tensor:
    """Shard rows -> a ``(B, 3, S, S)`` uint8 batch (the names stay behind)."""
    return torch.stack([item["image"] for item in items])


class ShardRows(Dataset):
    """One split's rows by index, as uint8 ``(3, S, S)`` images (evaluation loaders, FID's reals).

    The LitData dataset is opened on first use in each process (loader workers open their own).
    """

    def __init__(self, url: str, count: int, cache_dir: str | None = None) -> None:
        self.url, self.count, self.cache_dir = url, count, cache_dir
        self._rows: Any = None

    def _dataset(self) -> Any:
        if self._rows is None:
            litdata = require_litdata()
            self._rows = litdata.StreamingDataset(
                self.url, cache_dir=self.cache_dir, shuffle=False, batch_decode=0
            )
        return self._rows

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < self.count:
            raise IndexError(f"ShardRows: index {index} out of range for {self.count} images")
        return self._dataset()[index]["image"]

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        return torch.stack([self[i] for i in indices])  # (B, 3, S, S) uint8

    def name(self, index: int) -> str:
        """The source file name of row ``index``."""
        return self._dataset()[index]["name"]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_rows": None}


def train_loader(url: str, batch_size: int, num_workers: int, seed: int, cache_dir: str | None = None,
                 pin_memory: bool = False, persistent_workers: bool = False) -> Any:  # fmt: skip
    """A ``StreamingDataLoader`` of shuffled uint8 training batches; the last partial batch is dropped.

    Every process must pass the same ``seed`` (the epoch's order is drawn from it and the epoch, and
    split among the ranks from it); ``seed_everything`` gives one to all.
    """
    litdata = require_litdata()
    from facegan.data.resumable import ResumableStreamingDataLoader

    # batch_decode=0: one row decoded per image read. LitData's "auto" decoded windows of rows that the
    # shuffled reads then missed (measured: 28 rows deserialized per image, 7,900 vs 91,800 images/s
    # at 64 px in process on 2 cores). item_shuffle_window=0: a full permutation inside each chunk
    # (the default, blocks of 256, gave batches of 64 from 256 neighbouring files), as fast here.
    dataset = litdata.StreamingDataset(url, cache_dir=cache_dir, shuffle=True, drop_last=True, seed=seed,
                                       batch_decode=0, item_shuffle_window=0)  # fmt: skip
    return ResumableStreamingDataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        drop_last=True,  # constant training batch size (BatchNorm)
        collate_fn=collate_rows,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers and num_workers > 0,
        worker_init_fn=partial(leave_job_sigterm_to_the_trainer, trainer_pid=os.getpid())
        if num_workers
        else None,
    )


class Shards:
    """Prepared shards at ``root`` (a folder or URL), checked against a data module's settings."""

    def __init__(self, root: str, image_size: int, crop_size: int | None, cache_dir: str | None) -> None:
        require_litdata()  # at setup, not at the first batch
        self.root, self.cache_dir = str(root), cache_dir
        self.meta = read_meta(self.root)
        prepared = self.meta["image_size"], self.meta["crop_size"]
        if image_size != prepared[0] or (crop_size is not None and crop_size != prepared[1]):
            raise ValueError(
                f"FaceDataModule: {self.root!r} was prepared at image_size={prepared[0]}, crop_size="
                f"{prepared[1]}, but image_size={image_size}, crop_size={crop_size} were asked; set "
                f"--data.image_size {prepared[0]} (and leave crop_size unset), or prepare again"
            )

    def rows(self, split: str) -> ShardRows:
        return ShardRows(split_url(self.root, split), self.meta["splits"][split]["count"], self.cache_dir)

    def train_loader(self, batch_size: int, num_workers: int, seed: int, pin_memory: bool = False,
                     persistent_workers: bool = False) -> Any:  # fmt: skip
        """The training split's ``StreamingDataLoader`` (:func:`train_loader`)."""
        url = split_url(self.root, "train")
        return train_loader(
            url, batch_size, num_workers, seed, self.cache_dir, pin_memory, persistent_workers
        )

    def fingerprint(self, split: str) -> dict[str, Any]:
        """The source's fingerprint of ``split`` (same pixels, same key), as recorded by ``prepare``."""
        return dict(self.meta["splits"][split]["fingerprint"])
