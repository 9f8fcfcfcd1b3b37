"""The SNGAN ResNet pair (Miyato et al. 2018, as Mimicry's SNGAN-64): G = dense 4x4 projection,
pre-activation residual blocks with nearest x2 upsampling, BN-ReLU-conv3-tanh; D = residual blocks with
average pooling, ReLU, global sum pooling, dense. Train it with spectral norm in D (its default) and hinge."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from facegan.nets.dcgan import init_weights, num_halvings


def _resnet_init(module: nn.Module) -> None:
    """SNGAN's init: Xavier-uniform, gain sqrt(2) in residual paths, 1 elsewhere; zero biases."""
    init_weights(module, lambda m: nn.init.xavier_uniform_(m.weight, getattr(m, "init_gain", math.sqrt(2.0))))


def _plain(layer: nn.Module) -> nn.Module:
    layer.init_gain = 1.0  # type: ignore[assignment]  # see _resnet_init
    return layer


class GBlock(nn.Module):
    """Pre-activation residual block, x2 nearest upsampling: BN-ReLU-up-conv3-BN-ReLU-conv3 + up-conv1."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            nn.BatchNorm2d(c_in),
            nn.ReLU(),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(c_in, c_out, 3, 1, 1),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, 1, 1),
        )
        self.shortcut = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"), _plain(nn.Conv2d(c_in, c_out, 1))
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.residual(x) + self.shortcut(x)


class DBlock(nn.Module):
    """Residual block, optionally halving: [ReLU]-conv3-ReLU-conv3-[avgpool] + conv1-[avgpool].

    ``first`` is SNGAN's "optimized" input block: no ReLU on the raw image, shortcut pools first.
    """

    def __init__(self, c_in: int, c_out: int, downsample: bool, first: bool = False) -> None:
        super().__init__()
        pool: list[nn.Module] = [nn.AvgPool2d(2)] if downsample else []
        pre: list[nn.Module] = [] if first else [nn.ReLU()]
        self.residual = nn.Sequential(
            *pre, nn.Conv2d(c_in, c_out, 3, 1, 1), nn.ReLU(), nn.Conv2d(c_out, c_out, 3, 1, 1), *pool
        )
        conv = _plain(nn.Conv2d(c_in, c_out, 1))
        self.shortcut: nn.Module
        if first:
            self.shortcut = nn.Sequential(*pool, conv)
        elif downsample or c_in != c_out:
            self.shortcut = nn.Sequential(conv, *pool)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.residual(x) + self.shortcut(x)


class ResNetGenerator(nn.Module):
    """``z (N, latent_dim) -> (N, 3, S, S)``: dense to 4x4, one :class:`GBlock` per doubling.

    Widths halve at every doubling down to ``channels`` at full resolution (64 px, 64 -> 1024, 512,
    256, 128, 64: Mimicry's SNGAN-64 generator).
    """

    def __init__(self, image_size: int = 64, latent_dim: int = 128, channels: int = 64) -> None:
        super().__init__()
        self.image_size, self.latent_dim, self.channels = image_size, latent_dim, channels
        n = num_halvings(image_size)
        widths = [channels * 2 ** (n - i) for i in range(n + 1)]  # 64 px, 64 -> [1024, ..., 64]
        self.top = widths[0]
        self.dense = _plain(nn.Linear(latent_dim, 4 * 4 * widths[0]))
        self.blocks = nn.Sequential(*(GBlock(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)))
        self.out = nn.Sequential(
            nn.BatchNorm2d(widths[-1]), nn.ReLU(), _plain(nn.Conv2d(widths[-1], 3, 3, 1, 1)), nn.Tanh()
        )
        _resnet_init(self)

    def forward(self, z: Tensor) -> Tensor:
        x = self.dense(z).view(-1, self.top, 4, 4)
        return self.out(self.blocks(x))


class ResNetDiscriminator(nn.Module):
    """``(N, 3, S, S) -> (N,)``: :class:`DBlock` s halving down to 4x4, one more, ReLU, sum-pool, dense.

    Widths double from ``channels`` (64 px, 64 -> 64, 128, 256, 512, 1024: Mimicry's SNGAN-64 D).
    """

    def __init__(self, image_size: int = 64, channels: int = 64) -> None:
        super().__init__()
        self.image_size, self.channels = image_size, channels
        n = num_halvings(image_size)
        widths = [channels * 2**i for i in range(n + 1)]
        blocks: list[nn.Module] = [DBlock(3, widths[0], downsample=True, first=True)]
        blocks += [DBlock(a, b, downsample=True) for a, b in zip(widths[:-2], widths[1:-1], strict=True)]
        blocks += [DBlock(widths[-2], widths[-1], downsample=False)]
        self.blocks = nn.Sequential(*blocks)
        self.dense = _plain(nn.Linear(widths[-1], 1))
        _resnet_init(self)

    def forward(self, images: Tensor) -> Tensor:
        features = torch.relu(self.blocks(images)).sum(dim=(2, 3))  # (N, C): global sum pooling
        return self.dense(features).flatten()  # (N,)
