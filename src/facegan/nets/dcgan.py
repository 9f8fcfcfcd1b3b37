"""DCGAN (Radford et al. 2015): G = transposed convs + BatchNorm + ReLU, tanh; D = strided convs +
BatchNorm (not on the first layer) + LeakyReLU(0.2); weights ~ N(0, 0.02). Widths double at every
halving of the resolution, so the same recipe serves 32, 64 and 128 px."""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import Tensor, nn


def num_halvings(image_size: int) -> int:
    """Number of stride-2 stages between 4x4 and ``image_size`` (64 px -> 4); every family's."""
    return int(math.log2(image_size // 4))


Layer = nn.Conv2d | nn.ConvTranspose2d | nn.Linear  # the layers whose weights each family initializes


def init_weights(module: nn.Module, init: Callable[[Layer], object], batch_norm: bool = False) -> None:
    """``init(layer)`` for every conv and dense layer, zero biases; with ``batch_norm``, BatchNorm scales
    ``N(1, 0.02)`` and zero shifts (Radford et al.). Every family's, in ``modules()`` order."""
    for m in module.modules():
        if isinstance(m, Layer):
            init(m)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif batch_norm and isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _dcgan_init(module: nn.Module) -> None:
    """N(0, 0.02) for conv weights (Radford et al.)."""
    init_weights(module, lambda m: nn.init.normal_(m.weight, 0.0, 0.02), batch_norm=True)


class DCGANGenerator(nn.Module):
    """``z (N, latent_dim) -> (N, 3, S, S)``: 4x4 projection, then one x2 upsampling per stage."""

    def __init__(self, image_size: int = 64, latent_dim: int = 128, channels: int = 64) -> None:
        super().__init__()
        self.image_size, self.latent_dim, self.channels = image_size, latent_dim, channels
        n = num_halvings(image_size)
        widths = [channels * 2 ** (n - 1 - i) for i in range(n)]  # 64 px, 64 -> [512, 256, 128, 64]
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip([latent_dim, *widths[:-1]], widths, strict=True)):
            stride, padding = (1, 0) if i == 0 else (2, 1)  # 1x1 -> 4x4, then doubling H and W
            conv = nn.ConvTranspose2d(c_in, c_out, 4, stride, padding, bias=False)
            layers += [conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        layers += [nn.ConvTranspose2d(widths[-1], 3, 4, 2, 1, bias=False), nn.Tanh()]  # (N, 3, S, S)
        self.net = nn.Sequential(*layers)
        _dcgan_init(self)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z[:, :, None, None])  # (N, latent_dim, 1, 1) -> (N, 3, S, S)


class DCGANDiscriminator(nn.Module):
    """``(N, 3, S, S) -> (N,)`` logits: one stride-2 conv per halving down to 4x4, then a 4x4 conv."""

    def __init__(self, image_size: int = 64, channels: int = 64, batch_norm: bool = True) -> None:
        super().__init__()
        self.image_size, self.channels, self.batch_norm = image_size, channels, batch_norm
        n = num_halvings(image_size)
        widths = [channels * 2**i for i in range(n)]  # 64 px, 64 -> [64, 128, 256, 512]
        layers: list[nn.Module] = [
            nn.Conv2d(3, widths[0], 4, 2, 1, bias=False),  # no BatchNorm on the input layer
            nn.LeakyReLU(0.2, inplace=True),
        ]
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [
                nn.Conv2d(c_in, c_out, 4, 2, 1, bias=not batch_norm),  # halves H and W
                nn.BatchNorm2d(c_out) if batch_norm else nn.Identity(),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        layers += [nn.Conv2d(widths[-1], 1, 4, 1, 0, bias=False)]  # (N, 1, 1, 1)
        self.net = nn.Sequential(*layers)
        _dcgan_init(self)

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images).flatten()  # (N,)
