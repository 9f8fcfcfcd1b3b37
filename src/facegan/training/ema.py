"""Exponential moving average (EMA) of generator weights, as StyleGAN2-ADA keeps ``G_ema``.

The average is parametrised by a half-life in images, not by a per-step decay: with a batch of
``B`` images, each update keeps ``beta = 0.5 ** (B / half_life_images)`` of the average, so the
half-life means the same whatever the batch size. Early in training the weights move fast and an
average over a long half-life would lag far behind them; the ramp-up caps the half-life at
``rampup * images_seen`` (StyleGAN2-ADA's ``ema_rampup``, 0.05 there).
"""

from __future__ import annotations

import torch
from torch import nn


def ema_beta(
    batch_images: int, half_life_kimg: float, images_seen: int, rampup: float | None = None
) -> float:
    """Fraction of the average kept by one update that follows ``batch_images`` new images.

    Args:
        batch_images: images shown since the previous update (all processes together).
        half_life_kimg: half-life of the average, in thousands of images.
        images_seen: images shown since the start of training (drives the ramp-up).
        rampup: cap the half-life at ``rampup * images_seen``; ``None`` disables the ramp-up.

    The counts are host integers (``FaceGAN.images_seen``), so this needs no device.
    """
    half_life = max(half_life_kimg * 1000.0, 1e-8)
    if rampup is not None:
        half_life = max(min(half_life, images_seen * rampup), 1e-8)
    return 0.5 ** (batch_images / half_life)


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """``ema <- beta * ema + (1 - beta) * model`` for parameters; buffers are copied as they are.

    Buffers (BatchNorm running statistics, counters) are not averaged: facegan recomputes the
    BatchNorm statistics of whichever generator it samples from.
    """
    for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
        p_ema.lerp_(p.detach().to(p_ema.dtype), 1.0 - beta)
    for b_ema, b in zip(ema.buffers(), model.buffers(), strict=True):
        b_ema.copy_(b)
