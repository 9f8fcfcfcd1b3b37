"""Reading prepared shards (:mod:`facegan.data.shards`), local or remote, with LitData (imported here).

Training streams through a ``StreamingDataLoader`` (shuffled chunks, then the images inside each; each
DDP rank reads its share; Lightning checkpoints its state, so a resume continues the epoch); other
splits and FID read rows by index. The metadata, and a local folder's chunks, are checked first.
"""

from __future__ import annotations

import bisect
import itertools
import json
import multiprocessing
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from litdata import StreamingDataLoader, StreamingDataset
from litdata.streaming.downloader import get_downloader
from litdata.streaming.sampler import ChunkedIndex

from facegan.data.cache import Uint8Rows
from facegan.data.shards import (
    META_NAME,
    SHARDS_FORMAT,
    DamagedShardsError,
    file_sha256,
    is_remote,
    split_url,
)
from facegan.data.sources import SPLITS

PREPARE = "python -m facegan prepare --root IMAGES --out DIR --image-size S --overwrite"


def read_meta(root: str) -> dict[str, Any]:
    """The metadata of the shards at ``root`` (a folder, or a URL: LitData's downloader fetches it),
    checked for what ``prepare`` writes. ``chunks`` may be absent (shards of an earlier facegan)."""
    where = split_url(root, META_NAME)
    try:
        if is_remote(root):
            with tempfile.TemporaryDirectory(prefix="facegan-shards-") as tmp:
                local = os.path.join(tmp, META_NAME)
                get_downloader(root, tmp, [], {}).download_file(where, local)
                meta = json.loads(Path(local).read_text())
        else:
            meta = json.loads(Path(where).read_text())
    except (OSError, ValueError) as error:  # missing, unreachable, not JSON
        raise FileNotFoundError(
            f"FaceDataModule: {root!r} is not a prepared folder ({META_NAME} unreadable: {error}); "
            "write one with `python -m facegan prepare --root IMAGES --out DIR --image-size S`"
        ) from error
    if not isinstance(meta, dict):
        raise _damaged(where, f"it holds a JSON {type(meta).__name__}, not an object")
    if "format" in meta and meta["format"] != SHARDS_FORMAT:
        raise ValueError(
            f"FaceDataModule: {root!r} was prepared in format {meta['format']!r}, this facegan reads "
            f"{SHARDS_FORMAT}; prepare it again"
        )
    if meta.get("format") != SHARDS_FORMAT:
        raise _damaged(where, f"`format` is {meta.get('format')!r}, not {SHARDS_FORMAT}")
    if not _count(meta.get("image_size"), 1):
        raise _damaged(where, f"`image_size` is {meta.get('image_size')!r}, not a positive integer")
    if not (meta.get("crop_size") is None or _count(meta["crop_size"], 1)):
        raise _damaged(where, f"`crop_size` is {meta['crop_size']!r}, not a positive integer or null")
    splits = meta.get("splits")
    if not isinstance(splits, dict):
        raise _damaged(where, "`splits` is missing" if splits is None else "`splits` is not an object")
    for split in SPLITS:
        info = splits.get(split)
        if not isinstance(info, dict):
            raise _damaged(where, f"`splits.{split}` is missing or not an object")
        if not _count(info.get("count")):
            raise _damaged(where, f"`splits.{split}.count` is {info.get('count')!r}, not a count")
        if not isinstance(info.get("fingerprint"), dict):
            raise _damaged(where, f"`splits.{split}.fingerprint` is missing or not an object")
        chunks = info.get("chunks", [])
        if not (isinstance(chunks, list) and all(_chunk_record(chunk) for chunk in chunks)):
            raise _damaged(where, f"`splits.{split}.chunks` is not a list of {{file, items, bytes, sha256}}")
        if "chunks" in info and sum(chunk["items"] for chunk in chunks) != info["count"]:
            raise _damaged(where, f"`splits.{split}.chunks` hold other than its {info['count']} images")
    return meta


def _damaged(where: str, what: str) -> ValueError:
    return ValueError(f"FaceDataModule: {where} is damaged: {what}; prepare the shards again ({PREPARE})")


def _count(value: Any, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _chunk_record(chunk: Any) -> bool:
    return (
        isinstance(chunk, dict)
        and isinstance(chunk.get("file"), str)
        and "/" not in chunk["file"]
        and _count(chunk.get("items"))
        and _count(chunk.get("bytes"))
        and isinstance(chunk.get("sha256"), str)
    )


class ChunkCheck:
    """One split's chunk files in a local folder, checked at setup against ``prepare``'s records (listed
    by ``index.json``, present, non-empty, of their size); :meth:`verify` hashes a chunk before its first
    read, once per training process (the marks are shared by its loader workers). Without records
    (shards of an earlier facegan) only presence and emptiness are checked."""

    def __init__(self, folder: Path, chunks: list[dict[str, Any]] | None) -> None:
        self.folder = folder
        self.chunks = chunks
        self.verified: Any = multiprocessing.RawArray("b", len(chunks or ()))
        self.ends = list(itertools.accumulate(chunk["items"] for chunk in chunks or ()))
        index_path = self.folder / "index.json"
        try:
            index = json.loads(index_path.read_text())
            listed = [chunk["filename"] for chunk in index["chunks"]]
        except FileNotFoundError:
            raise DamagedShardsError(f"{index_path} is missing; {self._advice()}") from None
        except (OSError, ValueError, TypeError, KeyError) as error:
            raise DamagedShardsError(f"{index_path} is unreadable ({error}); {self._advice()}") from None
        if self.chunks is not None and listed != [chunk["file"] for chunk in self.chunks]:
            raise DamagedShardsError(f"{index_path} lists other chunks than {META_NAME}; {self._advice()}")
        sizes = [chunk["bytes"] for chunk in self.chunks] if self.chunks is not None else [None] * len(listed)
        for name, size in zip(listed, sizes, strict=True):
            path = self.folder / name
            try:
                actual = path.stat().st_size
            except FileNotFoundError:
                raise DamagedShardsError(f"chunk {path} is missing; {self._advice()}") from None
            if actual == 0 or (size is not None and actual != size):
                what = "is empty" if actual == 0 else f"has {actual} bytes, not the {size} prepare wrote"
                raise DamagedShardsError(f"chunk {path} {what}; {self._advice()}")

    def verify(self, chunk: int) -> None:
        """Hash chunk number ``chunk`` unless done already; :class:`DamagedShardsError` if it changed."""
        if self.chunks is None or not 0 <= chunk < len(self.chunks) or self.verified[chunk]:
            return
        record = self.chunks[chunk]
        path = self.folder / record["file"]
        try:
            digest = file_sha256(path)
        except OSError as error:
            raise DamagedShardsError(f"chunk {path} is unreadable ({error}); {self._advice()}") from None
        if digest != record["sha256"]:
            raise DamagedShardsError(
                f"chunk {path} is not the one prepare wrote (its SHA-256 differs: the file was changed or "
                f"damaged); {self._advice()}"
            )
        self.verified[chunk] = 1

    def _advice(self) -> str:
        return f"the prepared folder {str(self.folder.parent)!r} is damaged: run `{PREPARE}` again"


class CheckedStreamingDataset(StreamingDataset):
    """A ``StreamingDataset`` whose chunks pass ``check`` (``None``: unchecked, e.g. a bucket's) before
    LitData maps and deserializes them: the loader reads rows by ``ChunkedIndex``, which names the chunk."""

    def __init__(self, *args: Any, check: ChunkCheck | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.check = check

    def __getitem__(self, index: Any) -> Any:
        if self.check is not None and isinstance(index, ChunkedIndex):
            self.check.verify(index.chunk_index)
        return super().__getitem__(index)


class ResumableStreamingDataLoader(StreamingDataLoader):
    """A ``StreamingDataLoader`` whose restored state resumes one epoch, after which epochs go on.

    LitData replays a loaded state until an iterator hits ``StopIteration``; Lightning ends epochs by
    batch count, so the epoch after a resume replayed the resumed one's rest (LitData issue #770). Here
    an iteration that yielded a batch uses the state up (an unused iterator leaves it for the next).
    """

    restore: bool  # LitData's: replay the loaded state at the next iteration

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._restore_used = False

    def load_state_dict(self, obj: dict[str, Any]) -> None:
        super().load_state_dict(obj)
        self._restore_used = False

    def __iter__(self) -> Iterator[Any]:
        if self.restore and self._restore_used:
            self.restore = False  # the resumed epoch has been trained on: this is the next one
        self._restore_used = False
        for batch in super().__iter__():
            self._restore_used = True
            yield batch


def collate_rows(items: list[dict[str, Any]]) -> torch.Tensor:
    """Shard rows -> a ``(B, 3, S, S)`` uint8 batch (the names stay behind)."""
    return torch.stack([item["image"] for item in items])


class ShardRows(Uint8Rows):
    """One split's rows by index, opened on first use in each process; ``check`` verifies each chunk."""

    def __init__(
        self, url: str, count: int, cache_dir: str | None = None, check: ChunkCheck | None = None
    ) -> None:
        self.url, self.count, self.cache_dir, self.check = url, count, cache_dir, check
        self._rows: Any = None

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        if self._rows is None:
            self._rows = StreamingDataset(self.url, cache_dir=self.cache_dir, shuffle=False, batch_decode=0)
        for index in indices:
            if not 0 <= index < self.count:
                raise IndexError(f"ShardRows: index {index} out of range for {self.count} images")
            if self.check is not None:
                self.check.verify(bisect.bisect_right(self.check.ends, index))  # the row's chunk
        return torch.stack([self._rows[index]["image"] for index in indices])


class Shards:
    """Prepared shards at ``root`` (a folder or URL), checked against a data module's settings and, in a
    local folder, against what ``prepare`` recorded (:class:`ChunkCheck`)."""

    def __init__(self, root: str, image_size: int, crop_size: int | None, cache_dir: str | None) -> None:
        self.root, self.cache_dir = str(root), cache_dir
        self.meta = read_meta(self.root)
        prepared = self.meta["image_size"], self.meta["crop_size"]
        if image_size != prepared[0] or (crop_size is not None and crop_size != prepared[1]):
            raise ValueError(
                f"FaceDataModule: {self.root!r} was prepared at image_size={prepared[0]}, crop_size="
                f"{prepared[1]}, but image_size={image_size}, crop_size={crop_size} were asked; set "
                f"--data.image_size {prepared[0]} (and leave crop_size unset), or prepare again"
            )
        self.checks: dict[str, ChunkCheck] = {}
        local = self.root.removeprefix("local:")
        if is_remote(local):
            return  # a bucket's chunks are not hashed: LitData reads them by byte ranges
        folder = Path(local).expanduser()
        splits = self.meta["splits"]
        if any(info["count"] and "chunks" not in info for info in splits.values()):
            warnings.warn(
                f"FaceDataModule: {str(folder / META_NAME)!r} was written before facegan recorded each "
                "chunk's SHA-256, so damaged chunks go unnoticed; run `python -m facegan prepare` again "
                "to add them (the images are the same)",
                stacklevel=2,
            )
        for split in SPLITS:
            if splits[split]["count"]:
                self.checks[split] = ChunkCheck(folder / split, splits[split].get("chunks"))

    def rows(self, split: str) -> ShardRows:
        count = self.meta["splits"][split]["count"]
        return ShardRows(split_url(self.root, split), count, self.cache_dir, self.checks.get(split))

    def train_loader(self, batch_size: int, seed: int, **loader_settings: Any) -> Any:
        """Shuffled uint8 training batches, the last partial one dropped. Every process must pass the same
        ``seed`` (the epoch's order and its split among the ranks are drawn from it and the epoch)."""
        # batch_decode=0: one row decoded per read ("auto" decoded windows the shuffled reads missed: 7,900
        # vs 91,800 images/s at 64 px). item_shuffle_window=0: a full permutation inside each chunk (the
        # default, blocks of 256, gave batches of 64 from 256 neighbouring files), as fast here.
        dataset = CheckedStreamingDataset(split_url(self.root, "train"), cache_dir=self.cache_dir, shuffle=True,
                                          drop_last=True, seed=seed, batch_decode=0, item_shuffle_window=0,
                                          check=self.checks.get("train"))  # fmt: skip
        return ResumableStreamingDataLoader(
            dataset, batch_size=batch_size, drop_last=True, collate_fn=collate_rows, **loader_settings
        )

    def fingerprint(self, split: str) -> dict[str, Any]:
        """The source's fingerprint of ``split`` (same pixels, same key), as recorded by ``prepare``."""
        return dict(self.meta["splits"][split]["fingerprint"])
