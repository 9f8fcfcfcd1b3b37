"""Adaptive augmentation strength (StyleGAN2-ADA, Karras et al. 2020) for the DiffAugment policy.

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
are all-reduced over the processes once
per interval, so ``p`` is the same on every rank. The state (``p``, the last ``r_t`` and the partial
sums of the current interval) goes into checkpoints, so a resumed fit continues exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

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
