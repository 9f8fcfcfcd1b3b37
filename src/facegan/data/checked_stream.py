"""LitData's ``StreamingDataset``, each chunk verified before its first image is read (imports LitData).

The training loader reads rows by ``ChunkedIndex``, which names the chunk: :class:`ChunkCheck`
hashes that chunk's file once (per training process) before LitData maps and deserializes it.
"""

from __future__ import annotations

from typing import Any

from litdata import StreamingDataset
from litdata.streaming.sampler import ChunkedIndex

from facegan.data.streaming import ChunkCheck


class CheckedStreamingDataset(StreamingDataset):
    """A ``StreamingDataset`` whose chunks pass ``check`` (``None``: unchecked, e.g. a bucket's)."""

    def __init__(self, *args: Any, check: ChunkCheck | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.check = check

    def __getitem__(self, index: Any) -> Any:
        if self.check is not None and isinstance(index, ChunkedIndex):
            self.check.verify(index.chunk_index)
        return super().__getitem__(index)
