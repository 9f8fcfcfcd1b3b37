"""Train/val/test splits: CelebA's ``list_eval_partition.txt``, or a seeded random split."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
SPLIT_CODES = {"0": "train", "1": "val", "2": "test"}  # list_eval_partition.txt convention


def read_partition(path: Path) -> dict[str, str]:
    """``list_eval_partition.txt`` -> ``{file name: "train" | "val" | "test"}``."""
    splits = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[1] not in SPLIT_CODES:
            raise ValueError(
                f"{path}, line {lineno}: expected '<file name> <0|1|2>' (CelebA partition format), "
                f"got {line!r}"
            )
        splits[parts[0]] = SPLIT_CODES[parts[1]]
    return splits


def partition_split(names: Sequence[str], partition: Path) -> dict[str, list[int]]:
    """Indices of ``names`` per split, as the partition file lists their base names (others unused)."""
    splits = read_partition(partition)
    indices: dict[str, list[int]] = {split: [] for split in SPLITS}
    unlisted = 0
    for i, name in enumerate(names):
        split = splits.get(name.rsplit("/", 1)[-1])
        if split is None:
            unlisted += 1
        else:
            indices[split].append(i)
    if unlisted:
        log.warning("%d images are not listed in %s and are not used", unlisted, partition)
    return indices


def random_split(count: int, val_fraction: float, test_fraction: float, seed: int) -> dict[str, list[int]]:
    """A seeded random split of ``range(count)``, each split's indices sorted."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    n_val = int(round(count * val_fraction))
    n_test = int(round(count * test_fraction))
    return {
        "val": sorted(order[:n_val].tolist()),
        "test": sorted(order[n_val : n_val + n_test].tolist()),
        "train": sorted(order[n_val + n_test :].tolist()),
    }
