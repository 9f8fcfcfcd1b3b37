"""Generator and discriminator families as plain ``nn.Module``s (no Lightning), one file per family;
here the registry (:data:`FAMILIES`) and the one way to build them, from a :class:`NetworkConfig`
(:mod:`~facegan.nets.custom` records and rebuilds a user's own networks).

Every generator maps ``z (N, latent_dim)`` to ``(N, 3, S, S)`` in ``[-1, 1]`` (``r3gan``'s: clamped in
eval mode only) and has a ``latent_dim`` attribute; every discriminator maps such images to ``(N,)``
logits. Each keeps its ``__init__`` arguments as attributes of the same name, so an instance can also be
given as one's own network. A spectrally normalized ``dcgan`` D drops its BatchNorm (SNGAN's "standard CNN").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from facegan.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from facegan.nets.keras import KerasDiscriminator, KerasGenerator
from facegan.nets.r3gan import R3GANDiscriminator, R3GANGenerator, check_widths
from facegan.nets.resnet import ResNetDiscriminator, ResNetGenerator


@dataclass(frozen=True)
class NetworkConfig:
    """Everything needed to rebuild a generator/discriminator pair."""

    arch: str = "dcgan"
    image_size: int = 64
    latent_dim: int = 128
    g_channels: int = 64  # dcgan/resnet: width of G's last hidden layer (ngf in the paper)
    d_channels: int = 64  # dcgan/resnet: width of D's first layer (ndf in the paper)
    spectral_norm: bool = False  # spectral normalization of every D layer
    blocks_per_stage: int = 2  # r3gan: residual blocks per resolution

    def __post_init__(self) -> None:
        if not isinstance(self.arch, str) or self.arch not in FAMILIES:
            raise ValueError(f"`arch` must be one of {tuple(FAMILIES)}, but got {self.arch!r}")
        sizes = FAMILIES[self.arch].sizes
        if self.image_size not in sizes:
            raise ValueError(
                f"`image_size` must be one of {sizes} for arch={self.arch!r}, but got {self.image_size}"
            )
        for name in ("latent_dim", "g_channels", "d_channels", "blocks_per_stage"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, but got {value!r}")
        if self.arch == "r3gan":
            check_widths(self.image_size, self.g_channels, "g_channels")
            check_widths(self.image_size, self.d_channels, "d_channels")
            if self.spectral_norm:  # its blocks' last layers start at zero: sigma 0, NaN weights
                raise ValueError(
                    "`spectral_norm` does not apply to arch='r3gan' (its residual blocks start at zero; "
                    "R1 + R2 keep its D in check): leave it unset (null) or false"
                )


@dataclass(frozen=True)
class Family:
    """One network family: the sizes it supports and how to build its two networks."""

    sizes: tuple[int, ...]
    spectral_norm_default: bool
    generator: Callable[[NetworkConfig], nn.Module]
    discriminator: Callable[[NetworkConfig], nn.Module]


FAMILIES: dict[str, Family] = {
    "dcgan": Family(
        (32, 64, 128),
        False,
        lambda c: DCGANGenerator(c.image_size, c.latent_dim, c.g_channels),
        lambda c: DCGANDiscriminator(c.image_size, c.d_channels, batch_norm=not c.spectral_norm),
    ),
    "keras": Family((128,), False, lambda c: KerasGenerator(c.latent_dim), lambda c: KerasDiscriminator()),
    "resnet": Family(
        (32, 64, 128),
        True,
        lambda c: ResNetGenerator(c.image_size, c.latent_dim, c.g_channels),
        lambda c: ResNetDiscriminator(c.image_size, c.d_channels),
    ),
    "r3gan": Family(
        (32, 64, 128),
        False,  # no normalization of any kind: R1 + R2 keep D in check
        lambda c: R3GANGenerator(c.image_size, c.latent_dim, c.g_channels, c.blocks_per_stage),
        lambda c: R3GANDiscriminator(c.image_size, c.d_channels, c.blocks_per_stage),
    ),
}


def build_generator(config: NetworkConfig) -> nn.Module:
    """The generator of ``config``, freshly initialised (``.latent_dim`` tells its input size)."""
    return FAMILIES[config.arch].generator(config)


def build_discriminator(config: NetworkConfig) -> nn.Module:
    """The discriminator of ``config``, freshly initialised; with ``spectral_norm``, every conv and
    dense layer spectrally normalized (Miyato et al. 2018; one power iteration per training forward)."""
    discriminator = FAMILIES[config.arch].discriminator(config)
    if config.spectral_norm:
        for m in list(discriminator.modules()):
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
                nn.utils.parametrizations.spectral_norm(m)
    return discriminator


def build_networks(config: NetworkConfig) -> tuple[nn.Module, nn.Module]:
    """Return ``(generator, discriminator)`` for ``config``, freshly initialised."""
    return build_generator(config), build_discriminator(config)
