"""Differentiable augmentation of everything the discriminator sees (DiffAugment, Zhao et al. 2020).

D is shown augmented reals *and* augmented fakes, and G is trained through the same augmentation,
so D cannot memorise the training images and G is not pushed to reproduce the augmentations (they
are applied on both sides). Every operation is made of differentiable tensor arithmetic on the
batch's device, with its own random parameters per image.

Policies are comma-separated names from :data:`AUGMENTATIONS`, e.g. ``"translation"`` or
``"color,translation,cutout"``; ``""`` disables augmentation.

Its strength: adaptive augmentation (ADA, StyleGAN2-ADA, Karras et al. 2020, :class:`AdaptiveStrength`).
With ``ada_target`` set, each operation of the policy is applied to each image D sees with
probability ``p`` (otherwise always: ``p = 1``). ``p`` starts at 0 and follows D's overfitting
signal ``r_t``: every :data:`INTERVAL` D updates, ``p`` moves by
``sign(r_t - target) * N / (ada_kimg * 1000)`` (``N``: the real images of those updates, all
processes'), so it can go from 0 to 1 in ``ada_kimg`` thousand images (ADA: 500), clamped to [0, 1].

``r_t`` is ADA's ``E[sign(D(aug(real)))]`` for the absolute losses (``nonsaturating``, ``hinge``): the
share of reals D calls real minus the share it calls fake. A relativistic D's scores have no zero
(only differences count), so for ``rpgan`` it is ``E[sign(D(aug(real)) - D(aug(fake)))]`` on the
loss's pairs: pairs D orders right minus pairs it orders wrong. Both are 0 for a D that cannot tell
and 1 for one that has memorised the reals; ADA's target is 0.6.

The signs are summed on the device and the images counted on the host (no host sync per step); both
are all-reduced over the processes once per interval, so ``p`` is the same on every rank. The state (``p``, the last ``r_t`` and the partial
sums of the current interval) goes into checkpoints, so a resumed fit continues exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


def _uniform(x: Tensor, low: float, high: float) -> Tensor:
    """One value per image, shaped to broadcast over ``(N, C, H, W)``."""
    return torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).uniform_(low, high)


def color(x: Tensor) -> Tensor:
    """Random brightness (+U(-0.5, 0.5)), saturation (x U(0, 2)) and contrast (x U(0.5, 1.5))."""
    x = x + _uniform(x, -0.5, 0.5)
    gray = x.mean(dim=1, keepdim=True)
    x = (x - gray) * _uniform(x, 0.0, 2.0) + gray
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _uniform(x, 0.5, 1.5) + mean


def translation(x: Tensor, ratio: float = 0.125) -> Tensor:
    """Shift each image by up to ``ratio`` of its size in each direction, filling with zeros."""
    n, _, h, w = x.shape
    max_y, max_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    shift_y = torch.randint(-max_y, max_y + 1, (n, 1, 1), device=x.device)
    shift_x = torch.randint(-max_x, max_x + 1, (n, 1, 1), device=x.device)
    # Index a zero-padded copy: source row y + shift (+1 for the pad), clamped onto the zero border.
    rows = (torch.arange(h, device=x.device)[None, :, None] + shift_y + 1).clamp(0, h + 1)  # (N, H, 1)
    cols = (torch.arange(w, device=x.device)[None, None, :] + shift_x + 1).clamp(0, w + 1)  # (N, 1, W)
    padded = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1)  # (N, H+2, W+2, C)
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded[batch, rows, cols].permute(0, 3, 1, 2)  # (N, C, H, W)


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


# ------------------------------------------------------------------- adaptive strength (ADA)
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

    @property
    def adaptive(self) -> bool:
        return self.target is not None

    def observe(self, signal: Tensor, weight: float = 1.0) -> None:
        """Count one D update's ``signal`` ``(B,)``; ``weight`` 0 (a stand-in batch) counts no image."""
        if not self.adaptive:
            return
        signs = torch.sign(signal.detach().float()).sum() * weight
        self.signs = signs if self.signs is None else self.signs + signs
        self.count += signal.shape[0] * weight
        self.steps += 1

    def update(self, all_reduce_sum: Callable[[Tensor], Tensor]) -> bool:
        """At the end of an interval: ``r_t`` over every process and ``p`` adjusted; whether it did.

        ``all_reduce_sum`` sums a tensor over the processes (the identity in one process); every
        process calls it at the same D update, since all count the same updates.
        """
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
        if not self.adaptive:
            return {}
        return {"train/aug_p": self.p} | ({} if self.r_t is None else {"train/r_t": self.r_t})

    def state_dict(self) -> dict[str, Any]:
        sums = None if self.signs is None else [float(self.signs), self.count]  # [signs, images]
        return {"p": self.p, "r_t": self.r_t, "sums": sums, "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.p, self.r_t, self.steps = state["p"], state["r_t"], state["steps"]
        signs, self.count = state["sums"] or (None, 0.0)
        self.signs = None if signs is None else torch.tensor(signs, dtype=torch.float32, device=device)
