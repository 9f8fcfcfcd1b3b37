"""The R3GAN pair (Huang et al., NeurIPS 2024, "The GAN is dead; long live the GAN! A Modern GAN
Baseline"): a modernized ResNet for G and D without normalization layers (``sample()`` needs no
standing statistics). Blocks are inverted bottlenecks with grouped 3x3 convs, the last layer starting at
zero (fix-up), the others scaled by ``L ** -1/4`` for ``L`` blocks; He init, the only biases the
activations'. Widths: the paper's FFHQ presets (768 up to 32 px, halving above). Train it with the
``rpgan`` loss and R1 + R2 (the paper's recipe).
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facegan.nets.dcgan import num_halvings

LEAK = 0.2
ACTIVATION_GAIN = math.sqrt(2.0 / (1.0 + LEAK**2))  # keeps the variance through a leaky ReLU
GROUP_CHANNELS = 16  # channels per group of the grouped convolution (768 x 2 / 96 in the paper)


def stage_widths(image_size: int, base: int) -> list[int]:
    """Width of each stage, from 4x4 up to ``image_size``: ``base`` up to 32 px, then halving."""
    sizes = [4 * 2**i for i in range(num_halvings(image_size) + 1)]
    return [base // max(1, size // 32) for size in sizes]  # 64 px: base / 2, 128 px: base / 4


def check_widths(image_size: int, base: int, name: str) -> None:
    """``ValueError`` naming ``name`` unless every stage's width is a positive multiple of 8."""
    widths = stage_widths(image_size, base)
    if any(w < 8 or w % 8 for w in widths):
        factor = 8 * base // widths[-1] if widths[-1] else 8
        raise ValueError(
            f"`{name}` must be a multiple of {factor} for arch='r3gan' at {image_size} px (its stages "
            f"are {widths} wide; grouped convolutions need multiples of 8), but got {base}"
        )


def _he(layer: nn.Conv2d | nn.Linear, gain: float = 1.0) -> nn.Module:
    """He ("MSR") init: ``N(0, gain^2 / fan_in)``; gain 0 starts the layer at zero."""
    fan_in = layer.weight[0].numel()
    nn.init.normal_(layer.weight, 0.0, gain / math.sqrt(fan_in))
    return layer


def _conv(c_in: int, c_out: int, kernel: int = 1, groups: int = 1, gain: float = 1.0) -> nn.Module:
    return _he(nn.Conv2d(c_in, c_out, kernel, 1, (kernel - 1) // 2, groups=groups, bias=False), gain)


class BiasedLeakyReLU(nn.Module):
    """A learned per-channel bias, then leaky ReLU(0.2): the only biases of the network."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x + self.bias.view(1, -1, 1, 1), LEAK)


class ResidualBlock(nn.Module):
    """Inverted bottleneck with a grouped 3x3 convolution; the identity at initialization."""

    def __init__(self, channels: int, expansion: int, total_blocks: int) -> None:
        super().__init__()
        wide = channels * expansion
        gain = ACTIVATION_GAIN * total_blocks ** (-1 / 4)  # 3 layers per block: L^(-1 / (2*3 - 2))
        self.residual = nn.Sequential(
            _conv(channels, wide, gain=gain),
            BiasedLeakyReLU(wide),
            _conv(wide, wide, 3, groups=wide // GROUP_CHANNELS if wide >= GROUP_CHANNELS else 1, gain=gain),
            BiasedLeakyReLU(wide),
            _conv(wide, channels, gain=0.0),  # zero: the block starts as the identity
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.residual(x)


class Resample(nn.Module):
    """Bilinear x2 up- or downsampling, a 1x1 conv where the width changes (at the lower resolution).
    Down is the antialiased filter ``[1, 3, 3, 1] / 8`` per axis, stride 2, edges replicated, as a fixed
    depthwise conv: unlike ``F.interpolate(antialias=True)`` on CPU, it runs in bfloat16 and has the
    double backward R1/R2 need."""

    def __init__(self, c_in: int, c_out: int, up: bool) -> None:
        super().__init__()
        self.up = up
        self.project = _conv(c_in, c_out) if c_in != c_out else nn.Identity()
        taps = torch.tensor([1.0, 3.0, 3.0, 1.0]) / 8.0
        self.register_buffer("kernel", torch.outer(taps, taps)[None, None], persistent=False)  # (1, 1, 4, 4)

    def forward(self, x: Tensor) -> Tensor:
        if self.up:
            return F.interpolate(self.project(x), scale_factor=2.0, mode="bilinear", align_corners=False)
        channels = x.shape[1]
        kernel = cast(Tensor, self.kernel).to(x.dtype).expand(channels, 1, 4, 4)
        x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, stride=2, groups=channels)
        return self.project(x)


class R3GANGenerator(nn.Module):
    """``z (N, latent_dim)`` -> images ``(N, 3, S, S)``: unbounded in training (about ``[-1, 1]`` once
    trained), clamped to ``[-1, 1]`` in eval mode."""

    def __init__(self, image_size: int = 64, latent_dim: int = 64, channels: int = 768, blocks: int = 2,
                 expansion: int = 2) -> None:  # fmt: skip
        super().__init__()
        self.image_size, self.latent_dim, self.channels = image_size, latent_dim, channels
        self.blocks, self.expansion = blocks, expansion
        widths = stage_widths(image_size, channels)
        total = blocks * len(widths)
        self.basis = nn.Parameter(torch.randn(widths[0], 4, 4))  # a learned 4x4 image per channel
        self.modulation = _he(nn.Linear(latent_dim, widths[0], bias=False))
        stages: list[nn.Module] = []
        for i, width in enumerate(widths):
            layers = [] if i == 0 else [Resample(widths[i - 1], width, up=True)]
            stages.append(
                nn.Sequential(*layers, *(ResidualBlock(width, expansion, total) for _ in range(blocks)))
            )
        self.stages = nn.Sequential(*stages)
        self.to_rgb = _conv(widths[-1], 3)

    def forward(self, z: Tensor) -> Tensor:
        x = self.basis.unsqueeze(0) * self.modulation(z)[:, :, None, None]  # (N, W0, 4, 4)
        images = self.to_rgb(self.stages(x))  # (N, 3, S, S)
        # trained unbounded as the paper's (no tanh); clamped in eval mode, facegan's range
        return images if self.training else images.clamp(-1.0, 1.0)


class R3GANDiscriminator(nn.Module):
    """Images ``(N, 3, S, S)`` -> one logit each ``(N,)``; G's stages in reverse."""

    def __init__(
        self, image_size: int = 64, channels: int = 768, blocks: int = 2, expansion: int = 2
    ) -> None:
        super().__init__()
        self.image_size, self.channels, self.blocks, self.expansion = image_size, channels, blocks, expansion
        widths = stage_widths(image_size, channels)[::-1]  # from S down to 4x4
        total = blocks * len(widths)
        self.from_rgb = _conv(3, widths[0])
        stages: list[nn.Module] = []
        for i, width in enumerate(widths):
            down = [Resample(width, widths[i + 1], up=False)] if i + 1 < len(widths) else []
            stages.append(
                nn.Sequential(*(ResidualBlock(width, expansion, total) for _ in range(blocks)), *down)
            )
        self.stages = nn.Sequential(*stages)
        depthwise = nn.Conv2d(widths[-1], widths[-1], 4, 1, 0, groups=widths[-1], bias=False)
        self.basis = _he(depthwise)  # each channel's 4x4 map -> one number
        self.to_logit = _he(nn.Linear(widths[-1], 1, bias=False))

    def forward(self, images: Tensor) -> Tensor:
        x = self.stages(self.from_rgb(images))  # (N, W, 4, 4)
        return self.to_logit(self.basis(x).flatten(1)).squeeze(1)  # (N,)
