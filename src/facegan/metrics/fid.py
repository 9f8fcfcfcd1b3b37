"""FID from a torchmetrics metric whose real half is set once and whose generated half is refilled.

The real statistics (feature sum, covariance sum, count) are the metric's ``real_*`` states: they are
computed once from any source (:mod:`facegan.metrics.real_images`), cached on disk (:mod:`facegan.metrics.real_stats`) and put
back with :func:`set_real_states`; each evaluation only feeds generated images (:func:`generated_fid`).
Under DDP, give rank 0 the real states and the other ranks zeros: ``compute()`` sums every rank's states.
:func:`compute_fid` is the one way to read the distance: its eigenvalue step runs on one CPU thread.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

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


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the block with one intra-op CPU thread (torch's, which sets MKL's and OpenMP's), then the
    previous count again.

    FID's last step (the eigenvalues of a 2048x2048 float64 matrix product) is LAPACK work that
    collapses when its threads wait for cores other processes hold: on a busy 2-core machine 1.9 to
    77 s with 2 threads, a steady 2.7 to 4.5 s with 1 (the same value to 1e-11).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def compute_fid(metric: FrechetInceptionDistance) -> float:
    """``metric.compute()`` (FID of its real and generated halves) on one CPU thread (:func:`one_thread`).

    ``compute()`` all-reduces under DDP: call it on every rank.
    """
    with one_thread():
        return float(metric.compute())


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
    fid = compute_fid(metric)
    metric.reset()
    return fid
