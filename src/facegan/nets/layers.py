"""Building blocks shared by several network families."""

from __future__ import annotations

import math

from torch import nn


def num_halvings(image_size: int) -> int:
    """Number of stride-2 stages between 4x4 and ``image_size`` (64 px -> 4)."""
    return int(math.log2(image_size // 4))


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Spectrally normalize every conv and dense layer of ``module`` in place; return it.

    Miyato et al. 2018, through ``torch.nn.utils.parametrizations.spectral_norm`` (one power
    iteration per forward in training).
    """
    for m in list(module.modules()):
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.utils.parametrizations.spectral_norm(m)
    return module
