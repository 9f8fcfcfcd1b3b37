"""LitData's ``StreamingDataLoader``, with a resumed epoch followed by a fresh one (imports LitData).

LitData's loader replays the state given to ``load_state_dict`` while its ``restore`` flag is set,
and clears the flag only when an epoch's iterator runs to ``StopIteration``. Lightning ends an epoch
by its batch count instead, so after a mid-epoch resume the *next* epoch replayed the rest of the
resumed one (measured here: epoch 1 repeated epoch 0's last 5 batches; the cause LitData issue
#770 describes for ``ParallelStreamingDataset``). Here a restored state is used by one epoch only:
an iteration that yielded a batch uses it up (one that yielded none, e.g. an iterator made and
dropped before training, leaves it for the next).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from litdata import StreamingDataLoader


class ResumableStreamingDataLoader(StreamingDataLoader):
    """A ``StreamingDataLoader`` whose restored state resumes one epoch, after which epochs go on."""

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
