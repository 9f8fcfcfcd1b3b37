"""This process's random states (torch CPU and CUDA, Python, NumPy), as checkpoints carry them.

Not Lightning's ``_collect_rng_states``: it keeps NumPy's state as an ndarray, which
``torch.load(weights_only=True)`` refuses, and facegan only ever loads checkpoints that way. Here
every state is a tensor or a plain type.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import numpy as np
import torch


def rng_states() -> dict[str, Any]:
    """The current random states, loadable with ``weights_only=True``."""
    np_state = cast(tuple[Any, ...], np.random.get_state(legacy=True))  # (name, keys, pos, ...)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": list(random.getstate()[1]),
        "python_version": random.getstate()[0],
        "python_gauss": random.getstate()[2],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
    }


def set_rng_states(state: dict[str, Any]) -> None:
    """Restore states written by :func:`rng_states` (CUDA only when the device count matches)."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))


@contextmanager
def random_streams_kept() -> Iterator[None]:
    """Run a block without advancing any of the process's random streams (those of :func:`rng_states`).

    Callbacks observe a run and must not change it: building a network (its layers' initialisation),
    iterating a ``DataLoader`` (its base seed) or a cache miss draw from the global streams, which
    would make the training depend on whether a metric is attached or its cache was warm.
    """
    state = rng_states()
    try:
        yield
    finally:
        set_rng_states(state)
