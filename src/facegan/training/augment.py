"""Differentiable augmentation of everything the discriminator sees (DiffAugment, Zhao et al. 2020).

D is shown augmented reals *and* augmented fakes, and G is trained through the same augmentation,
so D cannot memorise the training images and G is not pushed to reproduce the augmentations (they
are applied on both sides). Every operation is made of differentiable tensor arithmetic on the
batch's device, with its own random parameters per image.

Policies are comma-separated names from :data:`AUGMENTATIONS`, e.g. ``"translation"`` or
``"color,translation,cutout"``; ``""`` disables augmentation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _uniform(x: Tensor, low: float, high: float) -> Tensor:
    """One value per image, shaped to broadcast over ``(N, C, H, W)``."""
    return torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).uniform_(low, high)


def color(x: Tensor) -> Tensor:
    """Random brightness (+U(-0.5, 0.5)), saturation (x U(0, 2)) and contrast (x U(0.5, 1.5))."""
    x = x + _uniform(x, -0.5, 0.5)
    gray = x.mean(dim=1, keepdim=True)
    x = (x - gray) * _uniform(x, 0.0, 2.0) + gray
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _uniform(x, 0.5, 1.5) + mean


def translation(x: Tensor, ratio: float = 0.125) -> Tensor:
    """Shift each image by up to ``ratio`` of its size in each direction, filling with zeros."""
    n, _, h, w = x.shape
    max_y, max_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    shift_y = torch.randint(-max_y, max_y + 1, (n, 1, 1), device=x.device)
    shift_x = torch.randint(-max_x, max_x + 1, (n, 1, 1), device=x.device)
    # Index a zero-padded copy: source row y + shift (+1 for the pad), clamped onto the zero border.
    rows = (torch.arange(h, device=x.device)[None, :, None] + shift_y + 1).clamp(0, h + 1)  # (N, H, 1)
    cols = (torch.arange(w, device=x.device)[None, None, :] + shift_x + 1).clamp(0, w + 1)  # (N, 1, W)
    padded = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1)  # (N, H+2, W+2, C)
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded[batch, rows, cols].permute(0, 3, 1, 2)  # (N, C, H, W)


def cutout(x: Tensor, ratio: float = 0.5) -> Tensor:
    """Zero one square of ``ratio`` times the image size per image, at a random position."""
    n, _, h, w = x.shape
    size_y, size_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h - size_y + 1, (n, 1, 1), device=x.device)
    left = torch.randint(0, w - size_x + 1, (n, 1, 1), device=x.device)
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    inside = (ys >= top) & (ys < top + size_y) & (xs >= left) & (xs < left + size_x)  # (N, H, W)
    return x * (~inside).unsqueeze(1).to(x.dtype)


AUGMENTATIONS = {"color": color, "translation": translation, "cutout": cutout}


def parse_policy(policy: str) -> tuple[str, ...]:
    """``"color, translation"`` -> ``("color", "translation")``; unknown names raise ``ValueError``."""
    names = tuple(name.strip() for name in policy.split(",") if name.strip())
    unknown = [name for name in names if name not in AUGMENTATIONS]
    if unknown:
        raise ValueError(
            f"`augment` policy {policy!r}: unknown {unknown}; use comma-separated names from "
            f"{sorted(AUGMENTATIONS)}, e.g. 'translation' or 'color,translation,cutout', or '' for none"
        )
    return names


def diff_augment(x: Tensor, policy: tuple[str, ...] | str, p: float = 1.0) -> Tensor:
    """Apply the augmentations of ``policy`` in order, each to each image with probability ``p``
    (adaptive augmentation, :mod:`facegan.training.ada`); the identity for an empty policy or ``p = 0``."""
    names = parse_policy(policy) if isinstance(policy, str) else policy
    if p <= 0:
        return x
    for name in names:
        augmented = AUGMENTATIONS[name](x)
        if p < 1:
            chosen = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < p
            augmented = torch.where(chosen, augmented, x)
        x = augmented
    return x
