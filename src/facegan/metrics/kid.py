"""Kernel Inception Distance (Bińkowski et al. 2018) from the Inception features FID already computes.

FID is strongly biased by the number of images (with 1-2k generated images it reads far higher than
with 50k); KID is an unbiased estimate (the squared MMD under the polynomial kernel
``(x . y / d + 1)^3``), so tables report both. KID needs the features themselves, not only their
sums: :class:`FeatureTap` records what the FID metric's Inception network outputs while it updates,
so KID costs no second Inception pass. The estimate averages ``subsets`` random subsets of
``subset_size`` images of each side, as torchmetrics' ``KernelInceptionDistance`` does (same kernel,
same estimator; its ``poly_mmd``), with a seeded generator so a result can be repeated.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle
from torchmetrics.image.kid import poly_mmd

SUBSETS, SUBSET_SIZE = 100, 1000  # torchmetrics' (and torch-fidelity's) defaults


class FeatureTap:
    """Collects the outputs of ``network`` (the metric's Inception) while it is active.

    Example::

        with FeatureTap(metric.inception) as tap:
            metric.update(images, real=False)
        features = tap.features()  # (N, 2048)
    """

    def __init__(self, network: nn.Module) -> None:
        self.network = network
        self.batches: list[Tensor] = []
        self._handle: RemovableHandle | None = None

    def __enter__(self) -> FeatureTap:
        self._handle = self.network.register_forward_hook(
            lambda module, args, out: self.batches.append(out.detach())
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()

    def features(self) -> Tensor:
        """``(N, D)`` float32 features on the CPU, in the order they were computed."""
        if not self.batches:
            return torch.empty(0, 0)
        return torch.cat([batch.reshape(batch.shape[0], -1) for batch in self.batches]).float().cpu()


def kid(real: Tensor, fake: Tensor, subsets: int = SUBSETS, subset_size: int = SUBSET_SIZE, seed: int = 0
        ) -> tuple[float, float, int]:  # fmt: skip
    """``(KID mean, its std over subsets, the subset size used)`` of two ``(N, D)`` feature sets.

    ``subset_size`` is capped at the smaller set (a small evaluation uses all its images, in
    ``subsets`` random orders: then the std is 0 and the mean is the full-set estimate).
    """
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ValueError(
            f"KID needs at least 2 images on each side, but got {len(real)} real and {len(fake)} generated"
        )
    if size == len(real) == len(fake):  # every subset is the whole set: the estimate is order-free
        return float(poly_mmd(real, fake)), 0.0, size
    generator = torch.Generator().manual_seed(seed)
    scores = []
    for _ in range(subsets):
        f_real = real[torch.randperm(len(real), generator=generator)[:size]]
        f_fake = fake[torch.randperm(len(fake), generator=generator)[:size]]
        scores.append(poly_mmd(f_real, f_fake))
    stacked = torch.stack(scores)
    return float(stacked.mean()), float(stacked.std(unbiased=False)), size
