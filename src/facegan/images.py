"""Conversions between facegan's image convention and the outside world.

Inside facegan an image batch is always a float tensor ``(N, C, H, W)`` in ``[-1, 1]``.
Everything that leaves the package (FID, sample grids, PNG files) converts through here, so
grids and FID see exactly the same pixels.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def to_unit(images: Tensor) -> Tensor:
    """Map ``[-1, 1]`` images to float ``[0, 1]``, clamped (generators may overshoot)."""
    return ((images.float() + 1.0) * 0.5).clamp_(0.0, 1.0)


def to_uint8(images: Tensor) -> Tensor:
    """Map ``[-1, 1]`` images to ``uint8`` ``[0, 255]`` with rounding (not truncation)."""
    return (to_unit(images) * 255.0).round_().to(torch.uint8)


def from_uint8(images: Tensor) -> Tensor:
    """Map ``uint8`` images (any shape) to float ``[-1, 1]``."""
    return images.float().div_(127.5).sub_(1.0)


def batch_images(batch: Any) -> Tensor:
    """The images of a batch: the batch itself, or the first item of ``(images, labels...)``."""
    return batch[0] if isinstance(batch, list | tuple) else batch


def check_batch(images: Tensor, image_size: int, owner: str = "FaceGAN") -> None:
    """Raise ``ValueError`` unless ``images`` is a float ``(B, 3, S, S)`` batch in ``[-1, 1]``.

    Meant for the first batch of a run (it reads the batch's range: one host sync). A batch entirely
    in ``[0, 1]`` is refused: it is what torchvision's ``ToTensor`` gives, not facegan's convention.
    """
    expected = f"(B, 3, {image_size}, {image_size})"
    if images.ndim != 4 or tuple(images.shape[1:]) != (3, image_size, image_size):
        raise ValueError(
            f"{owner}: a training batch has shape {tuple(images.shape)}, but the model was built for "
            f"image_size={image_size}: batches must be {expected}. Make the data and the model agree "
            "(the CLI links --data.image_size to the model; in Python pass the same image_size to both)"
        )
    if not images.is_floating_point():
        raise ValueError(
            f"{owner}: a training batch has dtype {images.dtype}; facegan trains on float images in "
            "[-1, 1] (facegan.images.from_uint8 converts uint8)"
        )
    low, high = float(images.min()), float(images.max())
    if low < -1.001 or high > 1.001 or low >= 0.0:
        raise ValueError(
            f"{owner}: a training batch has values in [{low:.3f}, {high:.3f}]; facegan trains on images "
            "in [-1, 1] (after torchvision's ToTensor, add Normalize((0.5,) * 3, (0.5,) * 3))"
        )
