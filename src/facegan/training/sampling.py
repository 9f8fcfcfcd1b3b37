"""Images out of a generator with BatchNorm: "standing statistics" recomputed for the current weights.

``eval()`` switches BatchNorm to its running statistics, which lag behind a generator whose weights
change every step, so ``eval()`` outputs can be far worse than the batch-statistics outputs seen in
training. As in BigGAN, facegan resets them and averages the batch statistics of a few fresh
batches produced by the *current* weights (``torch.optim.swa_utils.update_bn`` does exactly that:
reset, cumulative average, momentum restored); ``eval()`` then matches training-mode outputs while
making each image independent of the rest of its batch. A no-op for generators without BatchNorm.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import update_bn


@torch.no_grad()
def recompute_batchnorm_stats(
    generator: nn.Module, latent_dim: int, num_batches: int = 16, batch_size: int = 64, seed: int = 0
) -> None:
    """Replace the running statistics of ``generator``'s BatchNorm layers by standing statistics.

    The ``num_batches`` latent batches come from their own seeded RNG, so the global RNG (and
    training) is untouched.
    """
    device = next(generator.parameters()).device
    rng = torch.Generator(device=device).manual_seed(seed)
    latents = (torch.randn(batch_size, latent_dim, device=device, generator=rng) for _ in range(num_batches))
    update_bn(latents, generator)


def latents(n: int | None, z: torch.Tensor | None, latent_dim: int, device: torch.device) -> torch.Tensor:
    """``z`` checked to be ``(n, latent_dim)`` and moved to ``device``, or ``n`` fresh latents there."""
    if z is None:
        if n is None:
            raise ValueError("FaceGAN.sample: pass `n` (number of images) or `z` (latents)")
        return torch.randn(n, latent_dim, device=device)
    if z.ndim != 2 or z.shape[1] != latent_dim:
        raise ValueError(f"FaceGAN.sample: `z` must have shape (n, {latent_dim}), got {tuple(z.shape)}")
    return z.to(device)


def has_batchnorm(module: nn.Module) -> bool:
    """Whether ``module`` holds BatchNorm layers that track running statistics."""
    norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
    return any(isinstance(m, norms) and m.track_running_stats for m in module.modules())


class StandingStats:
    """Recompute a generator's standing statistics whenever its weights or buffers have changed.

    :meth:`refresh` compares the generator's parameters and buffers with a copy taken right after
    the last recomputation: a training step, ``load_state_dict``, a user's own optimizer step or a
    training-mode forward (which moves the running statistics) all trigger a recomputation, and
    nothing else does. Generators without BatchNorm are never copied or recomputed.
    """

    def __init__(self, latent_dim: int, num_batches: int, seed: int, batch_size: int = 64) -> None:
        self.latent_dim, self.num_batches, self.seed, self.batch_size = (
            latent_dim,
            num_batches,
            seed,
            batch_size,
        )
        self._generator_id: int | None = None
        self._snapshot: list[torch.Tensor] = []

    @staticmethod
    def _state(generator: nn.Module) -> list[torch.Tensor]:
        return [*generator.parameters(), *generator.buffers()]

    def _unchanged(self, generator: nn.Module) -> bool:
        state = self._state(generator)
        return (
            self._generator_id == id(generator)
            and len(state) == len(self._snapshot)
            and all(torch.equal(now, then) for now, then in zip(state, self._snapshot, strict=True))
        )

    @torch.no_grad()
    def refresh(self, generator: nn.Module) -> None:
        if not has_batchnorm(generator) or self._unchanged(generator):
            return
        recompute_batchnorm_stats(generator, self.latent_dim, self.num_batches, self.batch_size, self.seed)
        self._generator_id = id(generator)
        self._snapshot = [t.detach().clone() for t in self._state(generator)]


@torch.no_grad()
def generate(generator: nn.Module, z: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``generator(z)`` in eval mode, ``batch_size`` latents at a time, float32 clamped to ``[-1, 1]``.

    The generator's train/eval mode is restored afterwards.
    """
    was_training = generator.training
    generator.eval()
    try:
        images = torch.cat([generator(chunk) for chunk in z.split(batch_size)])
    finally:
        generator.train(was_training)
    return images.float().clamp_(-1.0, 1.0)
