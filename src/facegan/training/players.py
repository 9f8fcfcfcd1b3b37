"""How the training step runs the two players: compiled or eager forwards, augmentation, R1."""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor, nn

from facegan.training.augment import diff_augment
from facegan.training.losses import gradient_penalty


class Players:
    """G and D as the training step uses them: ``owner.generator`` and ``owner.discriminator``, looked
    up at every call (a network swapped in later is used), and ``owner.augment_policy``.

    ``compile()`` swaps in ``torch.compile`` forwards; they share the networks' parameters and are
    kept out of the module tree (and so out of ``state_dict`` and checkpoints, whose keys stay those
    of the plain networks). R1 always runs the eager D: its double backward is not supported by
    compiled graphs.
    """

    def __init__(self, owner: nn.Module) -> None:
        self.owner = owner
        self.compiled: dict[str, Any] = {}

    @property
    def generator(self) -> nn.Module:
        return self.owner.generator  # type: ignore[return-value]

    @property
    def discriminator(self) -> nn.Module:
        return self.owner.discriminator  # type: ignore[return-value]

    def compile(self) -> None:
        if not self.compiled:
            self.compiled = {"g": torch.compile(self.generator), "d": torch.compile(self.discriminator)}

    def fakes(self, z: Tensor) -> Tensor:
        """``G(z)``: ``(B, 3, S, S)``."""
        return self.compiled.get("g", self.generator)(z)

    def augment(self, images: Tensor) -> Tensor:
        """What D sees in training: ``images`` through the DiffAugment policy (if any)."""
        policy = cast(tuple[str, ...], self.owner.augment_policy)
        return diff_augment(images, policy) if policy else images

    def logits(self, images: Tensor) -> Tensor:
        """D's float32 logits ``(B,)`` of augmented ``images`` (losses stay float32 under autocast)."""
        return self.compiled.get("d", self.discriminator)(self.augment(images)).float()

    def r1(self, real: Tensor) -> Tensor:
        """R1 penalty on ``real`` through the augmentation, in float32 with autocast off (eager D)."""
        with torch.autocast(device_type=real.device.type, enabled=False):
            real = real.detach().float().requires_grad_(True)
            return gradient_penalty(real, self.discriminator(self.augment(real)).float())
