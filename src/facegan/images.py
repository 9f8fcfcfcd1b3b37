"""Conversions between facegan's images, float ``(N, C, H, W)`` in ``[-1, 1]``, and the outside world:
FID, sample grids and PNG files all convert here, so they see the same pixels."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def to_uint8(images: Tensor) -> Tensor:
    """Map ``[-1, 1]`` images to ``uint8`` ``[0, 255]``, clamped (generators overshoot), rounded."""
    return (((images.float() + 1.0) * 0.5).clamp_(0.0, 1.0) * 255.0).round_().to(torch.uint8)


def from_uint8(images: Tensor) -> Tensor:
    """Map ``uint8`` images (any shape) to float ``[-1, 1]``."""
    return images.float().div_(127.5).sub_(1.0)


def batch_images(batch: Any) -> Tensor:
    """The images of a batch: the batch itself, or the first item of ``(images, labels...)``."""
    return batch[0] if isinstance(batch, list | tuple) else batch


def grid_image(images: Tensor, nrow: int) -> Any:
    """A ``PIL.Image`` grid of ``[-1, 1]`` images, ``nrow`` per row, 2 px black between them."""
    from PIL import Image
    from torchvision.utils import make_grid

    grid = make_grid(to_uint8(images).cpu(), nrow=nrow, padding=2)  # (3, H, W) uint8, black padding
    return Image.fromarray(grid.permute(1, 2, 0).numpy())
