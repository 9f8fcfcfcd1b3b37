"""Generator and discriminator families as plain ``nn.Module``s (no Lightning): one file per family,
:mod:`~facegan.nets.registry` builds them from a :class:`NetworkConfig`, :mod:`~facegan.nets.custom`
records and rebuilds a user's own networks."""

from facegan.nets.registry import (
    ARCHITECTURES,
    FAMILIES,
    NetworkConfig,
    build_discriminator,
    build_generator,
    build_networks,
)

__all__ = [
    "ARCHITECTURES",
    "FAMILIES",
    "NetworkConfig",
    "build_discriminator",
    "build_generator",
    "build_networks",
]
