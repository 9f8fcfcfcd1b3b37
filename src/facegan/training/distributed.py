"""Several processes: the helpers that training and metrics share (plain torch.distributed, importable
without Lightning), and each process's random streams. Lightning's one ``DistributedDataParallel`` over
G and D expects a gradient for every parameter in every backward, but D's never reaches G
(``find_unused_parameters`` only papers over it): facegan switches its reducer off
(:func:`disable_reducer`) and all-reduces the stepping player's gradients (:func:`average_gradients`).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from torchmetrics.utilities.distributed import gather_all_tensors

if TYPE_CHECKING:
    import lightning as L


def attached_trainer(module: L.LightningModule) -> L.Trainer | None:
    """``module.trainer``, or ``None`` outside a Trainer (e.g. in a user's own loop)."""
    try:
        return module.trainer
    except RuntimeError:  # "... is not attached to a `Trainer`."
        return None


def is_distributed(module: L.LightningModule | None = None) -> bool:
    """Whether collectives are needed: an initialised process group of several processes (and, given
    ``module``, a Trainer of several: a module outside one trains alone)."""
    trainer = None if module is None else attached_trainer(module)
    if module is not None and (trainer is None or trainer.world_size < 2):
        return False
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(module: L.LightningModule | None, tensor: Tensor) -> Tensor:
    """``tensor`` summed over the processes (a copy; ``tensor`` itself in one process)."""
    if not is_distributed(module):
        return tensor
    total = tensor.clone()
    dist.all_reduce(total)
    return total


def share(rows: Tensor) -> Tensor:
    """This process's part of ``rows`` (``tensor_split`` by rank; all of them in one process)."""
    if not is_distributed():
        return rows
    return torch.tensor_split(rows, dist.get_world_size())[dist.get_rank()]


def gather_rows(rows: Tensor) -> Tensor:
    """Every process's ``(n_rank, ...)`` rows (counts may differ) concatenated in rank order, on every
    process: the inverse of :func:`share`."""
    if not is_distributed():
        return rows
    return torch.cat([part for part in gather_all_tensors(rows) if len(part)])


def from_rank_zero(value: Any) -> Any:
    """Rank 0's ``value`` (any picklable object) on every process."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def disable_reducer(module: L.LightningModule) -> None:
    """Stop the whole-module DDP wrapper from reducing gradients (see the module docstring)."""
    trainer = attached_trainer(module)
    wrapper = getattr(trainer.strategy, "model", None) if trainer is not None else None
    if isinstance(wrapper, DistributedDataParallel):
        wrapper.require_backward_grad_sync = False  # Lightning's pre_backward then skips the reducer


def average_gradients(
    module: L.LightningModule, optimizer: torch.optim.Optimizer, images: int = 0
) -> Tensor | int:
    """Average the gradients of ``optimizer``'s parameters over the processes in one flat all-reduce,
    the same layout from every process (a missing gradient sends zeros; it stays ``None`` only if no
    process has one). ``images`` (this process's) travels along: returned summed over the processes, a
    device tensor under DDP (no host sync), ``images`` itself in one process."""
    if not is_distributed(module):
        return images
    params = [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]
    if not params:
        raise ValueError("average_gradients: the optimizer has no trainable parameters")
    missing = [p.grad is None for p in params]
    parts = [p.new_zeros(p.numel()) if p.grad is None else p.grad.reshape(-1) for p in params]
    # Filled on the device (no host-to-device copy, which would wait for the queued kernels).
    tail = parts[0].new_ones(len(params) + 1)  # 1 per parameter this process has a gradient for
    for i in (i for i, absent in enumerate(missing) if absent):
        tail[i] = 0.0
    tail[-1] = images
    flat = torch.cat([*parts, tail])
    dist.all_reduce(flat)  # one collective: the player's gradients, which ranks had them, the images
    n = flat.numel() - len(params) - 1
    grads, flags, count = flat[:n] / dist.get_world_size(), flat[n:-1], flat[-1]
    # Read on the host only where this process lacks a gradient (never in facegan's own steps).
    had = flags.tolist() if any(missing) else [1.0] * len(params)
    shares = grads.split([p.numel() for p in params])
    for p, synced, absent, anyone in zip(params, shares, missing, had, strict=True):
        if anyone == 0:  # no process computed a gradient for it: the optimizer skips it, as in one process
            continue
        if absent:
            p.grad = torch.zeros_like(p)
        p.grad.copy_(synced.view_as(p))
    return count.round().long()


def broadcast_buffers(module: L.LightningModule) -> None:
    """Give every process rank 0's buffers (BatchNorm statistics), as DDP's ``broadcast_buffers`` does."""
    if not is_distributed(module):
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)


def decorrelate_ranks(rank: int) -> None:
    """Give each process its own random streams, deterministically from the current shared state (left by
    ``seed_everything`` or a resume): else the ranks' fake batches and augmentations would be copies."""
    seed = int(torch.randint(0, 2**62, (1,))) + rank
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


# ------------------------------------------------------------------------------- random states
# Not Lightning's ``_collect_rng_states``: its NumPy ndarray is refused by ``torch.load(weights_only=True)``.


def rng_states() -> dict[str, Any]:
    """This process's random states (torch CPU and CUDA, Python, NumPy)."""
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
    """Run a block without advancing the process's random streams: else a callback that builds a network,
    iterates a ``DataLoader`` or misses a cache would change the training."""
    state = rng_states()
    try:
        yield
    finally:
        set_rng_states(state)
