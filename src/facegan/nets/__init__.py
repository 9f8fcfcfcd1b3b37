"""Generator and discriminator families, as plain ``nn.Module``s (no Lightning here).

One file per family (:mod:`~facegan.nets.dcgan`, :mod:`~facegan.nets.keras`,
:mod:`~facegan.nets.resnet`); :mod:`~facegan.nets.registry` lists them and builds them from a
:class:`NetworkConfig`; :mod:`~facegan.nets.custom` records and rebuilds a user's own networks.
"""

from facegan.nets.registry import (
    ARCHITECTURES,
    FAMILIES,
    SPECTRAL_NORM_DEFAULT,
    SUPPORTED_SIZES,
    NetworkConfig,
    build_discriminator,
    build_generator,
    build_networks,
)

__all__ = [
    "ARCHITECTURES",
    "FAMILIES",
    "SPECTRAL_NORM_DEFAULT",
    "SUPPORTED_SIZES",
    "NetworkConfig",
    "build_discriminator",
    "build_generator",
    "build_networks",
]
