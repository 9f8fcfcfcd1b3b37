"""The classic Keras DCGAN face example scaled to 128 px, layer for layer.

Latent 128, no BatchNorm, Glorot-uniform init, dropout before the last dense layer.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from facegan.nets.dcgan import init_weights


def _keras_init(module: nn.Module) -> None:
    """Keras defaults: Glorot-uniform kernels, zero biases."""
    init_weights(module, lambda m: nn.init.xavier_uniform_(m.weight))


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
