"""Views of a dataset as training or FID wants it: randomly flipped, or uint8 rows as ``[-1, 1]``."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from facegan.data.cache import CachedFaces
from facegan.data.decode import FaceImageDataset
from facegan.data.streaming import ShardRows
from facegan.images import from_uint8


class Flipped(Dataset):
    """Random horizontal flips over a dataset of ``(3, S, S)`` tensors."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.dataset[index]
        return image.flip(-1) if torch.rand(()) < 0.5 else image

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        """Batched path (the DataLoader calls it when present): render together, flip each."""
        getitems = getattr(self.dataset, "__getitems__", None)
        images = getitems(indices) if getitems else [self.dataset[i] for i in indices]
        flips = (torch.rand(len(images)) < 0.5).tolist()
        return [image.flip(-1) if flip else image for image, flip in zip(images, flips, strict=True)]


class FromUint8(Dataset):
    """float ``[-1, 1]`` view of a uint8 dataset (FID's real images from the cache or shards)."""

    def __init__(self, dataset: CachedFaces | ShardRows) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> torch.Tensor:
        return from_uint8(self.dataset[index])

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        return list(from_uint8(self.dataset.__getitems__(indices)).unbind(0))


def unflipped(dataset: Dataset) -> Dataset:
    """The images of a training dataset exactly as preprocessed, but never flipped (for FID)."""
    if isinstance(dataset, (CachedFaces, ShardRows)):
        return FromUint8(dataset)
    if isinstance(dataset, Flipped):
        return dataset.dataset
    if isinstance(dataset, FaceImageDataset) and dataset.flip:
        return FaceImageDataset(
            dataset.source,
            dataset.indices,
            dataset.image_size,
            dataset.crop_size,
            False,
            dataset.skip_bad_images,
            dataset.max_skipped_fraction,
        )
    return dataset
