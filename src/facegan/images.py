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


def grid_image(images: Tensor, nrow: int) -> Any:
    """A ``PIL.Image`` grid of ``[-1, 1]`` images, ``nrow`` per row, 2 px black between them."""
    from PIL import Image
    from torchvision.utils import make_grid

    grid = make_grid(to_uint8(images).cpu(), nrow=nrow, padding=2)  # (3, H, W) uint8, black padding
    return Image.fromarray(grid.permute(1, 2, 0).numpy())
