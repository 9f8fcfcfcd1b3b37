"""The decoded training set held whole on the training device, shuffled batches drawn there."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch


class DeviceBatches:
    """Shuffled uint8 training batches drawn from ``images`` (``(N, 3, S, S)`` uint8), copied to ``device``.

    Epoch ``e`` is one permutation drawn from ``seed + e`` (as ``DistributedSampler`` does; ``epoch``
    returns the trainer's current epoch), so every process draws the same one even though each has
    its own random streams, a resume replays the epoch it stopped in, and process ``rank`` of
    ``world_size`` takes every ``world_size``-th index: together the processes see each image once
    per epoch. The last partial batch is dropped.
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
