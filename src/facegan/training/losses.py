"""GAN losses as pure functions of discriminator logits (never Sigmoid + BCELoss: breaks under AMP).

Convention: a logit is D's "realness" score; ``sigmoid(logit)`` is the probability D assigns to
"real". Every function returns a scalar (the batch mean).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

LOSSES = ("nonsaturating", "hinge")


def bce_with_logits(logits: Tensor, target: float | Tensor) -> Tensor:
    """Mean binary cross-entropy of ``sigmoid(logits)`` against ``target`` (any real target).

    ``t * softplus(-l) + (1 - t) * softplus(l) == softplus(l) - t * l``  # -log(sigmoid) terms
    """
    return (F.softplus(logits) - target * logits).mean()


def nonsaturating_d_loss(real_logits: Tensor, fake_logits: Tensor, label_noise: float = 0.0) -> Tensor:
    """Discriminator loss of the original GAN: BCE with targets 1 (real) and 0 (fake).

    With ``label_noise > 0`` every target gets ``+ label_noise * U(0, 1)`` added, the trick of the
    Keras DCGAN example ("add random noise to the labels - important trick!"), which keeps D from
    becoming over-confident.
    """
    real_target: float | Tensor = 1.0
    fake_target: float | Tensor = 0.0
    if label_noise:
        real_target = 1.0 + label_noise * torch.rand_like(real_logits)
        fake_target = label_noise * torch.rand_like(fake_logits)
    return bce_with_logits(real_logits, real_target) + bce_with_logits(fake_logits, fake_target)


def nonsaturating_g_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating generator loss: ``-log(sigmoid(l)) == softplus(-l)``."""
    return F.softplus(-fake_logits).mean()


def hinge_d_loss(real_logits: Tensor, fake_logits: Tensor, label_noise: float = 0.0) -> Tensor:
    """Hinge loss (Lim & Ye 2017; SNGAN, BigGAN): ``relu(1 - l_real) + relu(1 + l_fake)``."""
    if label_noise:
        raise ValueError("`label_noise` applies to the 'nonsaturating' loss only; set it to 0 for 'hinge'")
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def hinge_g_loss(fake_logits: Tensor) -> Tensor:
    """Generator side of the hinge loss: ``-l_fake``."""
    return -fake_logits.mean()


def r1_penalty(real: Tensor, real_logits: Tensor) -> Tensor:
    """R1 (Mescheder et al. 2018): mean over the batch of ``|d logit / d real|^2``, differentiable.

    ``real`` must require grad and ``real_logits`` must come from it; the graph is kept
    (``create_graph=True``) so that the penalty itself can be back-propagated into D. Compute it
    in float32: under a float16 autocast the squared input gradients overflow or underflow.
    """
    (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    return grad.square().sum(dim=tuple(range(1, grad.ndim))).mean()


def get_losses(
    name: str,
) -> tuple[Callable[[Tensor, Tensor, float], Tensor], Callable[[Tensor], Tensor]]:
    """Return ``(d_loss, g_loss)`` for a loss name from :data:`LOSSES`."""
    if name == "nonsaturating":
        return nonsaturating_d_loss, nonsaturating_g_loss
    if name == "hinge":
        return hinge_d_loss, hinge_g_loss
    raise ValueError(f"`loss` must be one of {LOSSES}, but got {name!r}")
