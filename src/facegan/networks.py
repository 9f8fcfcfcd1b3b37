"""Generator and discriminator families, as plain ``nn.Module``s (no Lightning here).

Every generator maps ``z (N, latent_dim)`` to images ``(N, 3, S, S)`` in ``[-1, 1]``; every
discriminator maps such images to one logit each, ``(N,)``. :func:`build_networks` is the single
entry point used by :class:`facegan.FaceGAN`; :data:`ARCHITECTURES` lists what it accepts.

- ``dcgan``: Radford et al. 2015, "Unsupervised Representation Learning with Deep Convolutional
  GANs": G = transposed convs + BatchNorm + ReLU, tanh output; D = strided convs + BatchNorm +
  LeakyReLU(0.2) (no BatchNorm on the first layer); weights ~ N(0, 0.02). Widths double at every
  halving of the resolution, so the same recipe serves 32, 64 and 128 px.
- ``keras``: the classic Keras DCGAN face example scaled to 128 px (latent 128, no BatchNorm,
  Glorot-uniform init, dropout before the last dense layer), layer for layer.
- ``resnet``: the SNGAN ResNet pair (Miyato et al. 2018, as in Mimicry's SNGAN at 64 px): G = dense
  4x4 projection + pre-activation residual blocks with nearest x2 upsampling + BatchNorm, ReLU, 3x3
  conv, tanh; D = residual blocks with average-pool downsampling, ReLU, global sum pooling, dense.
  Meant to be trained with spectral normalization in D (its default) and the hinge loss.

``spectral_norm`` (Miyato et al. 2018) wraps every conv and dense layer of D in
``torch.nn.utils.parametrizations.spectral_norm`` (one power iteration per forward in training); a
spectrally normalized ``dcgan`` D drops its BatchNorm layers, as SNGAN's "standard CNN" does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

ARCHITECTURES = ("dcgan", "keras", "resnet")
SUPPORTED_SIZES = {"dcgan": (32, 64, 128), "keras": (128,), "resnet": (32, 64, 128)}
SPECTRAL_NORM_DEFAULT = {"dcgan": False, "keras": False, "resnet": True}


@dataclass(frozen=True)
class NetworkConfig:
    """Everything needed to rebuild a generator/discriminator pair."""

    arch: str = "dcgan"
    image_size: int = 64
    latent_dim: int = 128
    g_channels: int = 64  # dcgan/resnet: width of G's last hidden layer (ngf in the paper)
    d_channels: int = 64  # dcgan/resnet: width of D's first layer (ndf in the paper)
    spectral_norm: bool = False  # spectral normalization of every D layer

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"`arch` must be one of {ARCHITECTURES}, but got {self.arch!r}")
        sizes = SUPPORTED_SIZES[self.arch]
        if self.image_size not in sizes:
            raise ValueError(
                f"`image_size` must be one of {sizes} for arch={self.arch!r}, but got {self.image_size}"
            )
        for name in ("latent_dim", "g_channels", "d_channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, but got {value!r}")


def build_generator(config: NetworkConfig) -> nn.Module:
    """The generator of ``config``, freshly initialised (``.latent_dim`` tells its input size)."""
    if config.arch == "dcgan":
        return DCGANGenerator(config.image_size, config.latent_dim, config.g_channels)
    if config.arch == "resnet":
        return ResNetGenerator(config.image_size, config.latent_dim, config.g_channels)
    return KerasGenerator(config.latent_dim)


def build_discriminator(config: NetworkConfig) -> nn.Module:
    """The discriminator of ``config``, freshly initialised (spectrally normalized if configured)."""
    discriminator: nn.Module
    if config.arch == "dcgan":
        discriminator = DCGANDiscriminator(
            config.image_size, config.d_channels, batch_norm=not config.spectral_norm
        )
    elif config.arch == "resnet":
        discriminator = ResNetDiscriminator(config.image_size, config.d_channels)
    else:
        discriminator = KerasDiscriminator()
    if config.spectral_norm:
        apply_spectral_norm(discriminator)
    return discriminator


def build_networks(config: NetworkConfig) -> tuple[nn.Module, nn.Module]:
    """Return ``(generator, discriminator)`` for ``config``, freshly initialised."""
    return build_generator(config), build_discriminator(config)


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Spectrally normalize every conv and dense layer of ``module`` in place; return it."""
    for m in list(module.modules()):
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.utils.parametrizations.spectral_norm(m)
    return module


# --------------------------------------------------------------------------------------- DCGAN
def _dcgan_init(module: nn.Module) -> None:
    """N(0, 0.02) for conv weights, N(1, 0.02) for BatchNorm scales, zero biases (Radford et al.)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _num_halvings(image_size: int) -> int:
    """Number of stride-2 stages between 4x4 and ``image_size`` (64 px -> 4)."""
    return int(math.log2(image_size // 4))


class DCGANGenerator(nn.Module):
    """``z (N, latent_dim) -> (N, 3, S, S)``: 4x4 projection, then one x2 upsampling per stage."""

    def __init__(self, image_size: int = 64, latent_dim: int = 128, channels: int = 64) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        n = _num_halvings(image_size)
        widths = [channels * 2 ** (n - 1 - i) for i in range(n)]  # 64 px, 64 -> [512, 256, 128, 64]
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, widths[0], 4, 1, 0, bias=False),  # (N, w0, 4, 4)
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        ]
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),  # doubles H and W
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ConvTranspose2d(widths[-1], 3, 4, 2, 1, bias=False), nn.Tanh()]  # (N, 3, S, S)
        self.net = nn.Sequential(*layers)
        _dcgan_init(self)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z[:, :, None, None])  # (N, latent_dim, 1, 1) -> (N, 3, S, S)


class DCGANDiscriminator(nn.Module):
    """``(N, 3, S, S) -> (N,)`` logits: one stride-2 conv per halving down to 4x4, then a 4x4 conv."""

    def __init__(self, image_size: int = 64, channels: int = 64, batch_norm: bool = True) -> None:
        super().__init__()
        n = _num_halvings(image_size)
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


# --------------------------------------------------------------------------------------- Keras
def _keras_init(module: nn.Module) -> None:
    """Keras defaults: Glorot-uniform kernels, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


class KerasGenerator(nn.Module):
    """Dense(16*16*128) -> 3 x [ConvTranspose(k4, s2, same) + LeakyReLU(0.2)] -> Conv(3, k4, same).

    The Keras model ends in a sigmoid (images in [0, 1]); ``2 * sigmoid(x) - 1`` keeps the layer
    and maps to facegan's [-1, 1] convention.
    """

    def __init__(self, latent_dim: int = 128) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.dense = nn.Linear(latent_dim, 16 * 16 * 128)
        self.net = nn.Sequential(
            nn.ConvTranspose2d(128, 128, 4, 2, 1),  # (N, 128, 32, 32); k4/s2/p1 == Keras "same"
            nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(128, 256, 4, 2, 1),  # (N, 256, 64, 64)
            nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(256, 512, 4, 2, 1),  # (N, 512, 128, 128)
            nn.LeakyReLU(0.2),
            nn.ZeroPad2d((1, 2, 1, 2)),  # TF "same" for an even kernel: 1 before, 2 after
            nn.Conv2d(512, 3, 4, 1),  # (N, 3, 128, 128)
        )
        _keras_init(self)

    def forward(self, z: Tensor) -> Tensor:
        x = self.dense(z).view(-1, 128, 16, 16)  # Keras Reshape((16, 16, 128)), channels first here
        return torch.sigmoid(self.net(x)) * 2.0 - 1.0


class KerasDiscriminator(nn.Module):
    """3 x [Conv(k4, s2, same) + LeakyReLU(0.2)] -> Flatten -> Dropout(0.2) -> Dense(1).

    The Keras model ends in a sigmoid; facegan's losses take logits, so the sigmoid lives in the
    loss (numerically stable, AMP-safe) and this module returns the Dense output.
    """

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 64, 4, 2, 1),  # (N, 64, 64, 64); k4/s2 "same" pads 1 on each side
            nn.LeakyReLU(0.2),
            nn.Conv2d(64, 128, 4, 2, 1),  # (N, 128, 32, 32)
            nn.LeakyReLU(0.2),
            nn.Conv2d(128, 128, 4, 2, 1),  # (N, 128, 16, 16)
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Dropout(0.2),
            nn.Linear(16 * 16 * 128, 1),
        )
        _keras_init(self)

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images).flatten()  # (N,)


# -------------------------------------------------------------------------------------- ResNet
def _resnet_init(module: nn.Module) -> None:
    """SNGAN's init: Xavier-uniform, gain sqrt(2) in residual paths, 1 elsewhere; zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            gain = 1.0 if getattr(m, "plain_init", False) else math.sqrt(2.0)
            nn.init.xavier_uniform_(m.weight, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _plain(layer: nn.Module) -> nn.Module:
    layer.plain_init = True  # type: ignore[assignment]  # see _resnet_init
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
        self.latent_dim = latent_dim
        n = _num_halvings(image_size)
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
        n = _num_halvings(image_size)
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


# ----------------------------------------------------------------------------- BatchNorm sampling
@torch.no_grad()
def recompute_batchnorm_stats(
    generator: nn.Module, latent_dim: int, num_batches: int = 16, batch_size: int = 64, seed: int = 0
) -> None:
    """Replace the running statistics of ``generator``'s BatchNorm layers by "standing statistics".

    Running averages (momentum 0.1) lag behind a generator whose weights change every step, so
    ``eval()`` outputs can be far worse than the batch-statistics outputs seen in training. As in
    BigGAN, we reset them and average the batch statistics of ``num_batches`` fresh batches
    produced by the *current* weights; ``eval()`` then matches training-mode outputs while making
    each image independent of the rest of its batch. A no-op for generators without BatchNorm.
    The latents come from their own seeded RNG, so the global RNG (and training) is untouched.
    """
    norms = [m for m in generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    was_training = generator.training
    momenta = [m.momentum for m in norms]
    device = next(generator.parameters()).device
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the batches below
    rng = torch.Generator(device=device).manual_seed(seed)
    generator.train()
    for _ in range(num_batches):
        generator(torch.randn(batch_size, latent_dim, device=device, generator=rng))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    generator.train(was_training)
