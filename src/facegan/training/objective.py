"""The GAN objective, given the networks at every call (as R3GAN's ``AdversarialTraining`` and
StyleGAN2-ADA's ``StyleGAN2Loss``; it never sees the LightningModule): D's loss, lazy R1/R2, LeCam,
G's loss, and the augmentation of everything D sees (DiffAugment) at its adaptive strength (ADA). Losses
are pure functions of D's logits (``sigmoid(logit)``: P(real); never Sigmoid + BCELoss, which breaks
under AMP), float32 under autocast; R1/R2 run in float32 with autocast off.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

Net = Callable[[Tensor], Tensor]  # D, or its compiled forward: images (B, 3, S, S) -> logits (B,)


def bce_with_logits(logits: Tensor, target: float | Tensor) -> Tensor:
    """Mean binary cross-entropy of ``sigmoid(logits)`` against any real ``target``:
    ``t * softplus(-l) + (1 - t) * softplus(l) == softplus(l) - t * l``."""
    return (F.softplus(logits) - target * logits).mean()


KERAS_LOGIT_CLIP = math.log((1.0 - 1e-7) / 1e-7)  # Keras' BCE clips probabilities to [1e-7, 1 - 1e-7]


def nonsaturating_d_loss(real_logits: Tensor, fake_logits: Tensor, label_noise: float = 0.0) -> Tensor:
    """Discriminator loss of the original GAN: BCE with targets 1 (real) and 0 (fake). ``label_noise``
    is the Keras DCGAN face example's "important trick": Keras labels fakes 1, reals 0, plus
    ``label_noise * U(0, 1)``, so here real targets are ``1 - noise``, fake ones ``-noise``. A target
    below 0 makes BCE on raw logits unbounded below, so the logits are clipped as Keras clips
    probabilities (``|logit| <= 16.118``): the loss is Keras' exactly, its gradient zero beyond the clip."""
    if not label_noise:
        return bce_with_logits(real_logits, 1.0) + bce_with_logits(fake_logits, 0.0)
    real_target = 1.0 - label_noise * torch.rand_like(real_logits)
    fake_target = -label_noise * torch.rand_like(fake_logits)
    real, fake = (logits.clamp(-KERAS_LOGIT_CLIP, KERAS_LOGIT_CLIP) for logits in (real_logits, fake_logits))
    return bce_with_logits(real, real_target) + bce_with_logits(fake, fake_target)


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
    """Relativistic pairing loss (Jolicoeur-Martineau 2019; R3GAN): D scores each real image above its
    paired fake, ``softplus(l_fake - l_real)``; only differences matter (no win by shifting all scores)."""
    if label_noise:
        raise ValueError("`label_noise` applies to the 'nonsaturating' loss only; set it to 0 for 'rpgan'")
    return F.softplus(fake_logits - real_logits).mean()


def rpgan_g_loss(fake_logits: Tensor, real_logits: Tensor) -> Tensor:
    """Generator side of the relativistic pairing loss: ``softplus(l_real - l_fake)`` on the same pairs."""
    return F.softplus(real_logits - fake_logits).mean()


def gradient_penalty(images: Tensor, logits: Tensor) -> Tensor:
    """Zero-centered gradient penalty, the batch mean of ``|d logit / d image|^2``, differentiable into D:
    R1 (Mescheder et al. 2018) on reals, R2 on fakes. ``logits`` must come from ``images`` (requiring
    grad); compute it in float32, as float16's squared input gradients overflow or underflow."""
    (grad,) = torch.autograd.grad(logits.sum(), images, create_graph=True)
    return grad.square().sum(dim=tuple(range(1, grad.ndim))).mean()


LOSSES: dict[str, tuple[Callable[..., Tensor], Callable[..., Tensor]]] = {  # (D's loss, G's loss)
    "nonsaturating": (nonsaturating_d_loss, nonsaturating_g_loss),
    "hinge": (hinge_d_loss, hinge_g_loss),
    "rpgan": (rpgan_d_loss, rpgan_g_loss),  # G's takes the paired real logits too
}


def get_losses(name: str) -> tuple[Callable[..., Tensor], Callable[..., Tensor]]:
    """``(d_loss, g_loss)`` of a loss name from :data:`LOSSES`."""
    if name not in LOSSES:
        raise ValueError(f"`loss` must be one of {tuple(LOSSES)}, but got {name!r}")
    return LOSSES[name]


def discriminator_metrics(real_logits: Tensor, fake_logits: Tensor) -> dict[str, Tensor]:
    """What a D step logs besides its loss: D's mean P(real) and sign accuracy on reals and fakes."""
    return {
        "train/d_real": torch.sigmoid(real_logits).mean(),
        "train/d_fake": torch.sigmoid(fake_logits).mean(),
        "train/d_acc_real": (real_logits > 0).float().mean(),
        "train/d_acc_fake": (fake_logits < 0).float().mean(),
    }


# -------------------------------------------------- augmentation of what D sees: DiffAugment and ADA
# DiffAugment (Zhao et al. 2020): D sees augmented reals *and* fakes, G is trained through the same
# differentiable ops (random per image), so D cannot memorise the reals. ADA (Karras et al. 2020): every
# INTERVAL D updates, the probability p of each op moves by sign(r_t - target) * N / (ada_kimg * 1000)
# (N: those updates' real images, all processes'), clamped to [0, 1]. r_t is E[sign(D(aug(real)))], for
# `rpgan` (whose scores have no zero) E[sign(D(aug(real)) - D(aug(fake)))]: 0 for a D that cannot tell,
# 1 for one that memorised the reals. Signs are summed on the device, images counted on the host, both
# all-reduced once per interval (no host sync per step; p is the same on every rank).


def _uniform(x: Tensor, low: float, high: float) -> Tensor:
    """One value per image, shaped to broadcast over ``(N, C, H, W)``."""
    return torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).uniform_(low, high)


def color(x: Tensor) -> Tensor:
    """Random brightness (+U(-0.5, 0.5)), saturation (x U(0, 2)) and contrast (x U(0.5, 1.5)), in that order.

    The three steps ``x + b``, ``(x - gray) * s + gray``, ``(x - mean) * c + mean`` compose to one affine map
    of ``x`` and its gray image: ``c*s*x + c*(1-s)*gray(x) + (1-c)*mean(x) + b`` (brightness moves the gray
    image and the mean by ``b``; saturation keeps the mean). One pass over the batch instead of nine."""
    brightness, saturation, contrast = _uniform(x, -0.5, 0.5), _uniform(x, 0.0, 2.0), _uniform(x, 0.5, 1.5)
    gray = x.mean(dim=1, keepdim=True)
    mean = gray.mean(dim=(2, 3), keepdim=True)
    offset = gray * ((1 - saturation) * contrast) + (mean * (1 - contrast) + brightness)
    return torch.addcmul(offset, x, saturation * contrast)


def translation(x: Tensor, ratio: float = 0.125) -> Tensor:
    """Shift each image by up to ``ratio`` of its size in each direction, filling with zeros."""
    n, _, h, w = x.shape
    max_y, max_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    shift_y = torch.randint(-max_y, max_y + 1, (n, 1, 1), device=x.device)
    shift_x = torch.randint(-max_x, max_x + 1, (n, 1, 1), device=x.device)
    # Gather from a zero-padded copy: source row y + shift (+1 for the pad), clamped onto the zero border.
    rows = (torch.arange(h, device=x.device)[None, :, None] + shift_y + 1).clamp(0, h + 1)  # (N, H, 1)
    cols = (torch.arange(w, device=x.device)[None, None, :] + shift_x + 1).clamp(0, w + 1)  # (N, 1, W)
    source = (rows * (w + 2) + cols).reshape(n, 1, h * w).expand(-1, x.shape[1], -1)  # (N, C, H*W)
    padded = F.pad(x, (1, 1, 1, 1)).reshape(n, x.shape[1], -1)  # (N, C, (H+2)*(W+2))
    # gather's backward is a scatter-add: 3-4x faster on a CPU than advanced indexing's index_put
    return padded.gather(2, source).reshape(x.shape)


def cutout(x: Tensor, ratio: float = 0.5) -> Tensor:
    """Zero one square of ``ratio`` times the image size per image, at a random position."""
    n, _, h, w = x.shape
    size_y, size_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h - size_y + 1, (n, 1, 1), device=x.device)
    left = torch.randint(0, w - size_x + 1, (n, 1, 1), device=x.device)
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    inside = (ys >= top) & (ys < top + size_y) & (xs >= left) & (xs < left + size_x)  # (N, H, W)
    return x * (~inside).unsqueeze(1).to(x.dtype)


AUGMENTATIONS = {"color": color, "translation": translation, "cutout": cutout}


def parse_policy(policy: str) -> tuple[str, ...]:
    """``"color, translation"`` -> ``("color", "translation")``; unknown names raise ``ValueError``."""
    names = tuple(name.strip() for name in policy.split(",") if name.strip())
    unknown = [name for name in names if name not in AUGMENTATIONS]
    if unknown:
        raise ValueError(
            f"`augment` policy {policy!r}: unknown {unknown}; use comma-separated names from "
            f"{sorted(AUGMENTATIONS)}, e.g. 'translation' or 'color,translation,cutout', or '' for none"
        )
    return names


def diff_augment(x: Tensor, policy: tuple[str, ...] | str, p: float = 1.0) -> Tensor:
    """Apply the augmentations of ``policy`` in order, each to each image with probability ``p``
    (adaptive augmentation, :class:`AdaptiveStrength`); the identity for an empty policy or ``p = 0``."""
    names = parse_policy(policy) if isinstance(policy, str) else policy
    if p <= 0:
        return x
    for name in names:
        augmented = AUGMENTATIONS[name](x)
        if p < 1:
            chosen = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < p
            augmented = torch.where(chosen, augmented, x)
        x = augmented
    return x


INTERVAL = 4  # D updates between adjustments (ADA's ada_interval)


class AdaptiveStrength:
    """``p``, the probability of each augmentation, fixed at 1 or driven toward ``target``."""

    def __init__(self, target: float | None, kimg: float = 500.0) -> None:
        self.target, self.kimg = target, kimg
        self.p = 1.0 if target is None else 0.0
        self.r_t: float | None = None
        self.signs: Tensor | None = None  # () float32 on the device: this interval's sum of signs
        self.count = 0.0  # this interval's images (their weights), on the host
        self.steps = 0  # D updates observed in this interval

    def observe(self, signal: Tensor, weight: float = 1.0) -> None:
        """Count one D update's ``signal`` ``(B,)``; ``weight`` 0 (a stand-in batch) counts no image."""
        if self.target is None:
            return
        signs = torch.sign(signal.detach().float()).sum() * weight
        self.signs = signs if self.signs is None else self.signs + signs
        self.count += signal.shape[0] * weight
        self.steps += 1

    def update(self, all_reduce_sum: Callable[[Tensor], Tensor]) -> bool:
        """At the end of an interval: ``r_t`` over every process (``all_reduce_sum``, which every process
        calls at the same D update) and ``p`` adjusted; whether it did."""
        if self.target is None or self.steps < INTERVAL or self.signs is None:
            return False
        sums = torch.stack([self.signs, self.signs.new_tensor(self.count)])  # one collective for both
        signs, count = all_reduce_sum(sums).tolist()
        self.signs, self.count, self.steps = None, 0.0, 0
        if count <= 0:
            return False
        self.r_t = signs / count
        direction = math.copysign(1.0, self.r_t - self.target) if self.r_t != self.target else 0.0
        self.p = min(max(self.p + direction * count / (self.kimg * 1000.0), 0.0), 1.0)
        return True

    def metrics(self) -> dict[str, float]:
        """``train/aug_p`` and (after the first interval) ``train/r_t``; nothing at a fixed strength."""
        if self.target is None:
            return {}
        return {"train/aug_p": self.p} | ({} if self.r_t is None else {"train/r_t": self.r_t})

    def state_dict(self) -> dict[str, Any]:
        sums = None if self.signs is None else [float(self.signs), self.count]  # [signs, images]
        return {"p": self.p, "r_t": self.r_t, "sums": sums, "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.p, self.r_t, self.steps = state["p"], state["r_t"], state["steps"]
        signs, self.count = state["sums"] or (None, 0.0)
        self.signs = None if signs is None else torch.tensor(signs, dtype=torch.float32, device=device)


# ---------------------------------------------------------------- LeCam regularization
# LeCam (Tseng et al. 2021): D's logits on reals are pulled toward an anchor that follows its mean logit on
# fakes, and those on fakes toward one following its mean on reals, which keeps D's outputs from drifting
# apart under limited data. As in the official code (google/lecam-gan, its BigGAN and StyleGAN2 versions):
# one-sided, ``relu(l_real - a_fake)^2 + relu(a_real - l_fake)^2`` (the paper's formula has no relu), on the
# logits D trains on (after augmentation), against anchors already updated with this batch, decay 0.99.


class LeCamAnchors:
    """The anchors: moving averages of D's mean logits on reals and fakes, zero-debiased (the StyleGAN2
    version's ``zero_debias=True``), from the means over every process (the same anchors on each)."""

    def __init__(self, decay: float = 0.99) -> None:
        self.decay = decay
        # (3,) float32 on the device (no host sync): the averages of [mean real, mean fake, 1], whose last
        # entry is 1 - decay^t, the debiasing divisor. None before the first update.
        self.state: Tensor | None = None

    def update(
        self,
        real_logits: Tensor,
        fake_logits: Tensor,
        weight: float = 1.0,
        all_reduce_sum: Callable[[Tensor], Tensor] = lambda tensor: tensor,
    ) -> None:
        """Move the anchors toward this D update's mean logits over every process (``all_reduce_sum``:
        one collective, called by every process); left where they are if no process had an image
        (``weight`` 0: a stand-in batch)."""
        real, fake = real_logits.detach().float(), fake_logits.detach().float()
        counts = [real.new_full((), real.numel()), fake.new_full((), fake.numel())]  # filled on the device
        total = all_reduce_sum(torch.stack([real.sum(), fake.sum(), *counts]) * weight)
        observed = torch.cat([total[:2] / total[2:], total.new_ones(1)])  # [mean real, mean fake, 1]
        state = torch.zeros_like(observed) if self.state is None else self.state
        self.state = torch.where(total[2] > 0, state.lerp(observed, 1.0 - self.decay), state)

    def anchors(self) -> Tensor:
        """``(2,)``: the real and fake anchors (0 before any image)."""
        state = torch.zeros(3) if self.state is None else self.state
        return state[:2] / state[2].clamp_min(1.0 - self.decay)  # 1 - decay: the divisor after one update

    def penalty(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        """``mean(relu(l_real - a_fake)^2) + mean(relu(a_real - l_fake)^2)``, differentiable into D."""
        anchor_real, anchor_fake = self.anchors()
        return (
            F.relu(real_logits - anchor_fake).square().mean()
            + F.relu(anchor_real - fake_logits).square().mean()
        )

    def state_dict(self) -> dict[str, Any]:
        return {"state": None if self.state is None else self.state.tolist()}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        values = state["state"]
        self.state = None if values is None else torch.tensor(values, dtype=torch.float32, device=device)


class GANObjective:
    """FaceGAN's objective for any pair of networks (the arguments are :class:`~facegan.FaceGAN`'s).

    ``D`` is whatever scores images ``(B, 3, S, S) -> (B,)`` logits (FaceGAN passes its compiled forward
    when ``compile=True``); :meth:`regularization` takes the eager network, since compiled graphs do
    not support R1's double backward. D sees every image through the policy ``augment`` at ``ada.p``.
    """

    def __init__(
        self,
        loss: str = "nonsaturating",
        label_noise: float = 0.0,
        augment: str = "",
        ada_target: float | None = None,
        ada_kimg: float = 500.0,
        r1_gamma: float = 0.0,
        r2_gamma: float = 0.0,
        r1_every: int = 16,
        lecam_weight: float = 0.0,
    ) -> None:
        self.loss, self.label_noise = loss, label_noise
        self.d_loss_fn, self.g_loss_fn = get_losses(loss)
        self.policy = parse_policy(augment)
        self.ada = AdaptiveStrength(ada_target, ada_kimg)
        self.r1_gamma, self.r2_gamma, self.r1_every = r1_gamma, r2_gamma, r1_every
        self.lecam_weight, self.lecam_anchors = lecam_weight, LeCamAnchors()

    def augment(self, images: Tensor) -> Tensor:
        """What D sees in training: ``images`` through the policy (if any) at strength ``ada.p``."""
        return diff_augment(images, self.policy, self.ada.p)

    def logits(self, D: Net, images: Tensor) -> Tensor:
        """D's float32 logits ``(B,)`` of the augmented ``images`` (losses stay float32 under autocast)."""
        return D(self.augment(images)).float()

    def discriminator_loss(self, D: Net, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(loss, real_logits, fake_logits)`` of D on ``real`` and ``fake`` (detached: trains D only)."""
        real_logits, fake_logits = self.logits(D, real), self.logits(D, fake)
        return self.d_loss_fn(real_logits, fake_logits, self.label_noise), real_logits, fake_logits

    def penalty(self, D: Net, images: Tensor) -> Tensor:
        """The gradient penalty on ``images`` (detached: trains D only) through the augmentation, in
        float32 with autocast off."""
        with torch.autocast(device_type=images.device.type, enabled=False):
            images = images.detach().float().requires_grad_(True)
            return gradient_penalty(images, self.logits(D, images))

    def regularization(
        self, D: Net, real: Tensor, fake: Tensor, d_updates: int
    ) -> tuple[Tensor | float, dict[str, Tensor]]:
        """``(penalty to add to D's loss, what to log)``: R1 on ``real`` and R2 on ``fake``, each
        ``gamma / 2 * |grad|^2``, lazily every ``r1_every`` D updates (``d_updates``: those done so
        far) and then scaled by it. ``D`` must be eager (not compiled)."""
        total: Tensor | float = 0.0
        logs: dict[str, Tensor] = {}
        if d_updates % self.r1_every:
            return total, logs
        for name, gamma, images in (("r1", self.r1_gamma, real), ("r2", self.r2_gamma, fake)):
            if gamma > 0:
                value = self.penalty(D, images)
                total = total + (0.5 * gamma * self.r1_every) * value
                logs[f"train/{name}"] = value.detach()
        return total, logs

    def lecam(
        self,
        real_logits: Tensor,
        fake_logits: Tensor,
        weight: float = 1.0,
        all_reduce_sum: Callable[[Tensor], Tensor] = lambda tensor: tensor,
    ) -> tuple[Tensor | float, dict[str, Tensor]]:
        """``(penalty to add to D's loss, what to log)``: ``lecam_weight`` times LeCam's regularizer on this
        D update's logits, after the anchors moved with them (every process calls it at every D update);
        0 and nothing, without a collective, when ``lecam_weight`` is 0."""
        if not self.lecam_weight:
            return 0.0, {}
        self.lecam_anchors.update(real_logits, fake_logits, weight, all_reduce_sum)
        value = self.lecam_anchors.penalty(real_logits, fake_logits)
        return self.lecam_weight * value, {"train/lecam": value.detach()}

    def adapt(
        self,
        real_logits: Tensor,
        fake_logits: Tensor,
        weight: float = 1.0,
        all_reduce_sum: Callable[[Tensor], Tensor] = lambda tensor: tensor,
    ) -> dict[str, Any]:
        """After a D update: feed ADA its signal (``weight`` 0 counts no image), adjust ``p`` once per
        interval from the sums over the processes (``all_reduce_sum``); what to log."""
        if self.ada.target is None:
            return {}
        self.ada.observe(real_logits - fake_logits if self.loss == "rpgan" else real_logits, weight)
        self.ada.update(all_reduce_sum)
        return self.ada.metrics()

    def generator_loss(self, D: Net, fake: Tensor, real: Tensor) -> Tensor:
        """G's loss on ``fake`` through the current D (frozen by the caller); ``rpgan`` pairs ``real``."""
        fake_logits = self.logits(D, fake)
        if self.loss != "rpgan":
            return self.g_loss_fn(fake_logits)
        with torch.no_grad():  # D is frozen and the reals need no gradient: only their scores
            real_logits = self.logits(D, real)
        return rpgan_g_loss(fake_logits, real_logits)
