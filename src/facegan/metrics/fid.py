"""FID from a torchmetrics metric whose real half is set once and whose generated half is refilled.

The real statistics (feature sum, covariance sum, count) are the metric's ``real_*`` states: they are
computed once from any source (:mod:`facegan.metrics.real_images`), cached on disk (:mod:`facegan.metrics.real_stats`) and put
back with :func:`set_real_states`; each evaluation only feeds generated images (:func:`generated_fid`).
Under DDP, give rank 0 the real states and the other ranks zeros: ``compute()`` sums every rank's states.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torchmetrics.image.fid import FrechetInceptionDistance

from facegan.metrics.kid import FeatureTap

REAL_STATES = ("real_features_sum", "real_features_cov_sum", "real_features_num_samples")


def real_states(metric: FrechetInceptionDistance) -> dict[str, Tensor]:
    """The metric's real-image statistics, on the CPU."""
    return {name: getattr(metric, name).cpu() for name in REAL_STATES}


def set_real_states(metric: FrechetInceptionDistance, states: Sequence[Tensor] | None) -> None:
    """Set the real states to ``(features sum, cov sum, count)``; ``None`` -> zeros."""
    for i, name in enumerate(REAL_STATES):
        value = torch.zeros_like(getattr(metric, name)) if states is None else states[i]
        setattr(metric, name, value.to(metric.device, getattr(metric, name).dtype))


@torch.no_grad()
def generated_fid(
    metric: FrechetInceptionDistance,
    sample: Callable[[Tensor], Tensor],
    latents: Tensor,
    batch_size: int,
    features: list[Tensor] | None = None,
) -> float:
    """FID of ``sample(z)`` (uint8 images) over ``latents`` against the metric's real states.

    ``features``: a list to append the generated images' Inception features to (for KID; the same
    forward pass). ``compute()`` all-reduces under DDP, so call it on every rank, each with its share.
    """
    metric.reset()  # the generated half only (reset_real_features=False)
    tap = FeatureTap(metric.inception)
    with tap if features is not None else contextlib.nullcontext():  # collect features only if asked
        for z in latents.split(batch_size):
            metric.update(sample(z).to(metric.device), real=False)
    if features is not None:
        features.append(tap.features())
    fid = float(metric.compute())
    metric.reset()
    return fid
