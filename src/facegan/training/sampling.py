"""Images out of a generator with BatchNorm: "standing statistics" recomputed for the current weights.

``eval()`` switches BatchNorm to its running statistics, which lag behind a generator whose weights
change every step, so ``eval()`` outputs can be far worse than the batch-statistics outputs seen in
training. As in BigGAN, facegan resets them and averages the batch statistics of a few fresh
batches produced by the *current* weights (``torch.optim.swa_utils.update_bn`` does exactly that:
reset, cumulative average, momentum restored), in a copy of the generator; ``eval()`` then matches
training-mode outputs while making each image independent of the rest of its batch. A no-op for
generators without BatchNorm.
"""

from __future__ import annotations

import copy

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
    """A copy of a generator with standing statistics, made again whenever its weights or buffers change.

    The copy, not the generator, gets the recomputed statistics: sampling never changes the module it
    samples from (its running statistics are part of the training's state and of its checkpoints).
    :meth:`net` compares the generator's parameters with the copy's and its buffers with a snapshot
    taken when the copy was made: a training step, ``load_state_dict``, a user's own optimizer step or
    a training-mode forward (which moves the running statistics) all trigger a new copy, and nothing
    else does. Generators without BatchNorm are returned as they are, never copied.
    """

    def __init__(self, latent_dim: int, num_batches: int, seed: int, batch_size: int = 64) -> None:
        self.latent_dim, self.num_batches, self.seed, self.batch_size = (
            latent_dim,
            num_batches,
            seed,
            batch_size,
        )
        self._generator_id: int | None = None
        self._copy: nn.Module | None = None
        self._buffers: list[torch.Tensor] = []  # the generator's buffers when the copy was made

    def _unchanged(self, generator: nn.Module) -> bool:
        if self._copy is None or self._generator_id != id(generator):
            return False
        params, copied = list(generator.parameters()), list(self._copy.parameters())
        buffers = list(generator.buffers())
        same = lambda a, b: a.device == b.device and torch.equal(a, b)  # noqa: E731 (a moved module: new copy)
        return (
            len(params) == len(copied)
            and len(buffers) == len(self._buffers)
            and all(same(now, then) for now, then in zip(params, copied, strict=True))
            and all(same(now, then) for now, then in zip(buffers, self._buffers, strict=True))
        )

    @torch.no_grad()
    def net(self, generator: nn.Module) -> nn.Module:
        """``generator`` itself without BatchNorm, else its copy with standing statistics."""
        if not has_batchnorm(generator):
            return generator
        if not self._unchanged(generator):
            self._copy = None  # free the old copy before making the new one
            fresh = copy.deepcopy(generator).requires_grad_(False)
            recompute_batchnorm_stats(fresh, self.latent_dim, self.num_batches, self.batch_size, self.seed)
            self._generator_id, self._copy = id(generator), fresh
            self._buffers = [b.detach().clone() for b in generator.buffers()]
        assert self._copy is not None
        return self._copy


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
