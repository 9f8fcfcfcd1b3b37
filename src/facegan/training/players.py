"""How the training step runs the two players: compiled or eager forwards, augmentation, R1/R2, G's loss."""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor, nn

from facegan.training import distributed
from facegan.training.ada import AdaptiveStrength
from facegan.training.augment import diff_augment
from facegan.training.losses import gradient_penalty, rpgan_g_loss


class Players:
    """G and D as the training step uses them: ``owner.generator`` and ``owner.discriminator``, looked
    up at every call (a network swapped in later is used), ``owner.augment_policy`` at the strength
    of ``ada`` (fixed at 1, or adaptive with ``owner.hparams.ada_target``).

    ``compile()`` swaps in ``torch.compile`` forwards; they share the networks' parameters and are
    kept out of the module tree (and so out of ``state_dict`` and checkpoints, whose keys stay those
    of the plain networks). R1 and R2 always run the eager D: their double backward is not supported
    by compiled graphs.
    """

    def __init__(self, owner: nn.Module) -> None:
        self.owner = owner
        self.compiled: dict[str, Any] = {}
        hp = cast(Any, owner).hparams
        self.ada = AdaptiveStrength(hp.ada_target, hp.ada_kimg)

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
        """What D sees in training: ``images`` through the DiffAugment policy (if any) at strength ``p``."""
        policy = cast(tuple[str, ...], self.owner.augment_policy)
        return diff_augment(images, policy, self.ada.p) if policy else images

    def logits(self, images: Tensor) -> Tensor:
        """D's float32 logits ``(B,)`` of augmented ``images`` (losses stay float32 under autocast)."""
        return self.compiled.get("d", self.discriminator)(self.augment(images)).float()

    def penalty(self, images: Tensor) -> Tensor:
        """Zero-centered gradient penalty on ``images`` (R1 on reals, R2 on fakes: detached, so it
        trains D only) through the augmentation, in float32 with autocast off (eager D)."""
        with torch.autocast(device_type=images.device.type, enabled=False):
            images = images.detach().float().requires_grad_(True)
            return gradient_penalty(images, self.discriminator(self.augment(images)).float())

    def regularization(
        self, real: Tensor, fake: Tensor, d_updates: int
    ) -> tuple[Tensor | float, dict[str, Tensor]]:
        """``(penalty to add to D's loss, what to log)``: R1 on ``real`` and R2 on ``fake``, each
        ``gamma / 2 * |grad|^2``, lazily every ``r1_every`` D updates and then scaled by it."""
        hp = cast(Any, self.owner).hparams
        total: Tensor | float = 0.0
        logs: dict[str, Tensor] = {}
        if d_updates % hp.r1_every:
            return total, logs
        for name, gamma, images in (("r1", hp.r1_gamma, real), ("r2", hp.r2_gamma, fake)):
            if gamma > 0:
                value = self.penalty(images)
                total = total + (0.5 * gamma * hp.r1_every) * value
                logs[f"train/{name}"] = value.detach()
        return total, logs

    def adapt(self, real_logits: Tensor, fake_logits: Tensor, weight: float) -> dict[str, float]:
        """After a D update: feed the adaptive strength its overfitting signal (``D(real)``, or
        ``D(real) - D(fake)`` for the relativistic loss) and, once per interval, adjust ``p`` (one
        all-reduce over the processes); what to log."""
        if not self.ada.adaptive:
            return {}
        relativistic = cast(Any, self.owner).hparams.loss == "rpgan"
        self.ada.observe(real_logits - fake_logits if relativistic else real_logits, weight)
        self.ada.update(lambda sums: distributed.all_reduce_sum(cast(Any, self.owner), sums))
        return self.ada.metrics()

    def g_loss(self, fake: Tensor, real: Tensor) -> Tensor:
        """G's loss on ``fake`` through the current D; the relativistic one pairs them with ``real``."""
        owner = cast(Any, self.owner)
        fake_logits = self.logits(fake)
        if owner.hparams.loss != "rpgan":
            return owner.g_loss_fn(fake_logits)
        with torch.no_grad():  # D is frozen and the reals need no gradient: only their scores
            real_logits = self.logits(real)
        return rpgan_g_loss(fake_logits, real_logits)
