"""GAN losses as pure functions of discriminator logits (never Sigmoid + BCELoss: breaks under AMP).

Convention: a logit is D's "realness" score; ``sigmoid(logit)`` is the probability D assigns to
"real". Every function returns a scalar (the batch mean).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

LOSSES = ("nonsaturating", "hinge", "rpgan")


def bce_with_logits(logits: Tensor, target: float | Tensor) -> Tensor:
    """Mean binary cross-entropy of ``sigmoid(logits)`` against ``target`` (any real target).

    ``t * softplus(-l) + (1 - t) * softplus(l) == softplus(l) - t * l``  # -log(sigmoid) terms
    """
    return (F.softplus(logits) - target * logits).mean()


KERAS_EPSILON = 1e-7  # Keras' backend epsilon: its BCE clips probabilities to [eps, 1 - eps]
KERAS_LOGIT_CLIP = math.log((1.0 - KERAS_EPSILON) / KERAS_EPSILON)  # the same clip on logits: 16.118


def nonsaturating_d_loss(real_logits: Tensor, fake_logits: Tensor, label_noise: float = 0.0) -> Tensor:
    """Discriminator loss of the original GAN: BCE with targets 1 (real) and 0 (fake).

    ``label_noise > 0`` is the Keras DCGAN face example's trick ("add random noise to the labels -
    important trick!"). Keras labels generated images 1 and real ones 0 and adds
    ``label_noise * U(0, 1)`` to every label; in facegan's convention (``sigmoid(logit)`` = P(real))
    that is real targets ``1 - noise`` in ``[0.95, 1]`` and fake targets ``-noise`` in ``[-0.05, 0]``.
    A target below 0 makes BCE on raw logits unbounded below (it rewards ever more negative fake
    logits without limit), so, as Keras' BCE clips probabilities to ``[1e-7, 1 - 1e-7]``, the logits
    are clipped to the same range (``|logit| <= 16.118``): the loss is then Keras' formula exactly,
    bounded, and its gradient vanishes beyond the clip, as in Keras.
    """
    if not label_noise:
        return bce_with_logits(real_logits, 1.0) + bce_with_logits(fake_logits, 0.0)
    real_target = 1.0 - label_noise * torch.rand_like(real_logits)
    fake_target = -label_noise * torch.rand_like(fake_logits)
    clip = KERAS_LOGIT_CLIP
    return bce_with_logits(real_logits.clamp(-clip, clip), real_target) + bce_with_logits(
        fake_logits.clamp(-clip, clip), fake_target
    )


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


def rpgan_d_loss(real_logits: Tensor, fake_logits: Tensor, label_noise: float = 0.0) -> Tensor:
    """Relativistic pairing loss (Jolicoeur-Martineau 2019; R3GAN): each real image is paired with
    one generated image and D learns to score the real one higher: ``softplus(l_fake - l_real)``
    ``== -log(sigmoid(l_real - l_fake))``. Only differences of logits matter, so D cannot win by
    shifting all its scores."""
    if label_noise:
        raise ValueError("`label_noise` applies to the 'nonsaturating' loss only; set it to 0 for 'rpgan'")
    return F.softplus(fake_logits - real_logits).mean()


def rpgan_g_loss(fake_logits: Tensor, real_logits: Tensor) -> Tensor:
    """Generator side of the relativistic pairing loss: ``softplus(l_real - l_fake)`` on the same
    pairs (``real_logits`` from D on the real batch, without gradient into G)."""
    return F.softplus(real_logits - fake_logits).mean()


def gradient_penalty(images: Tensor, logits: Tensor) -> Tensor:
    """Zero-centered gradient penalty: mean over the batch of ``|d logit / d image|^2``, differentiable.

    R1 (Mescheder et al. 2018) on real images, R2 on generated ones (R3GAN uses both). ``images`` must
    require grad and ``logits`` must come from them; for R2 they are the fakes detached from G, so the
    penalty trains D only. The graph is kept (``create_graph=True``) so the penalty can be
    back-propagated into D. Compute it in float32: under a float16 autocast the squared input
    gradients overflow or underflow.
    """
    (grad,) = torch.autograd.grad(logits.sum(), images, create_graph=True)
    return grad.square().sum(dim=tuple(range(1, grad.ndim))).mean()


def get_losses(
    name: str,
) -> tuple[Callable[[Tensor, Tensor, float], Tensor], Callable[[Tensor], Tensor]]:
    """Return ``(d_loss, g_loss)`` for a loss name from :data:`LOSSES`."""
    if name == "nonsaturating":
        return nonsaturating_d_loss, nonsaturating_g_loss
    if name == "hinge":
        return hinge_d_loss, hinge_g_loss
    if name == "rpgan":  # G's loss takes the paired real logits too (see Players.g_loss)
        return rpgan_d_loss, rpgan_g_loss  # type: ignore[return-value]
    raise ValueError(f"`loss` must be one of {LOSSES}, but got {name!r}")


def discriminator_metrics(real_logits: Tensor, fake_logits: Tensor, images_seen: Tensor) -> dict[str, Tensor]:
    """What a D step logs besides its loss: D's mean P(real) and sign accuracy on reals and fakes
    (sign accuracy means the same for every loss), and the images shown so far in thousands."""
    return {
        "train/d_real": torch.sigmoid(real_logits).mean(),
        "train/d_fake": torch.sigmoid(fake_logits).mean(),
        "train/d_acc_real": (real_logits > 0).float().mean(),
        "train/d_acc_fake": (fake_logits < 0).float().mean(),
        "train/kimg": images_seen.float() / 1000.0,
    }
