"""LitData's classes as the training split streams through them (imports LitData).

Shuffled per epoch (the order of the chunks, then all images inside each chunk, from ``seed`` and the
epoch; a batch draws from one or two chunks, ~5,000 images at 64 px in ``prepare``'s 64 MB chunks);
under DDP each rank reads its own share (LitData reads the world size and rank from
``torch.distributed``). Lightning checkpoints the loader's ``state_dict()``, so a resume continues the
epoch where it stopped. Batches are uint8: the data module scales and flips them on the device.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from litdata import StreamingDataLoader, StreamingDataset
from litdata.streaming.sampler import ChunkedIndex

from facegan.data.streaming import ChunkCheck


class CheckedStreamingDataset(StreamingDataset):
    """A ``StreamingDataset`` whose chunks pass ``check`` (``None``: unchecked, e.g. a bucket's).

    The loader reads rows by ``ChunkedIndex``, which names the chunk: ``check`` hashes that chunk's
    file once (per training process) before LitData maps and deserializes it.
    """

    def __init__(self, *args: Any, check: ChunkCheck | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.check = check

    def __getitem__(self, index: Any) -> Any:
        if self.check is not None and isinstance(index, ChunkedIndex):
            self.check.verify(index.chunk_index)
        return super().__getitem__(index)


class ResumableStreamingDataLoader(StreamingDataLoader):
    """A ``StreamingDataLoader`` whose restored state resumes one epoch, after which epochs go on.

    LitData replays the state given to ``load_state_dict`` while its ``restore`` flag is set, and
    clears the flag only when an epoch's iterator runs to ``StopIteration``. Lightning ends an epoch by
    its batch count instead, so after a mid-epoch resume the *next* epoch replayed the rest of the
    resumed one (measured: epoch 1 repeated epoch 0's last 5 batches; LitData issue #770). Here an
    iteration that yielded a batch uses the restored state up (one that yielded none, e.g. an iterator
    made and dropped before training, leaves it for the next).
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
