"""KID from the features FID computes: equal to torchmetrics' KernelInceptionDistance on the same
features and seed, collected by a tap on the FID metric's network (no second pass)."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from facegan.metrics.fid import FeatureTap, kid


class Flat(torch.nn.Module):
    """Features of uint8 images: their first 16 pixel values in [0, 1]."""

    num_features = 16

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.float().flatten(1)[:, :16] / 255.0


def images(n: int, high: int, seed: int) -> torch.Tensor:
    return torch.randint(
        0, high, (n, 3, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


def test_kid_equals_torchmetrics_on_the_same_features_and_seed():
    real, fake = images(60, 256, 0), images(50, 200, 1)
    metric = KernelInceptionDistance(feature=Flat(), subsets=7, subset_size=20)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    torch.manual_seed(5)  # torchmetrics draws its subsets from the global generator
    expected_mean, expected_std = metric.compute()
    mean, std, size = kid(Flat()(real), Flat()(fake), subsets=7, subset_size=20, seed=5)
    assert mean == pytest.approx(expected_mean.item(), rel=1e-6) and std == pytest.approx(
        expected_std.item(), rel=1e-6
    )
    assert size == 20
    # a set against itself, all 60 images in each of 3 orders: the unbiased MMD^2 of Bińkowski et al.
    f = Flat()(real).double()
    k = (f @ f.T / 16 + 1) ** 3  # the polynomial kernel (x . y / d + 1)^3
    m = len(f)
    exact = (2 * (k.sum() - k.trace()) / (m * (m - 1)) - 2 * k.sum() / m**2).item()
    same = kid(Flat()(real), Flat()(real), subsets=3, subset_size=1000)
    assert (
        same[2] == 60
        and same[0] == pytest.approx(exact, rel=1e-4)
        and same[1] == pytest.approx(0.0, abs=1e-6)
    )


def test_the_tap_records_the_features_fid_used_without_changing_fid():
    real, fake = images(30, 256, 2), images(30, 180, 3)
    tapped = FrechetInceptionDistance(feature=Flat(), reset_real_features=False)
    plain = FrechetInceptionDistance(feature=Flat(), reset_real_features=False)
    for metric in (tapped, plain):
        metric.update(real, real=True)
    with FeatureTap(tapped.inception) as tap:
        for batch in fake.split(8):
            tapped.update(batch, real=False)
    plain.update(fake, real=False)
    assert torch.allclose(tap.features(), Flat()(fake))  # in order, one row per image
    assert tapped.compute().item() == pytest.approx(plain.compute().item(), rel=1e-6)
    tapped.update(fake[:2], real=False)  # the tap is removed on exit
    assert len(tap.features()) == 30


def test_kid_needs_two_images_a_side():
    with pytest.raises(ValueError, match="KID needs at least 2 images on each side"):
        kid(torch.zeros(1, 4), torch.zeros(5, 4))


def test_the_engines_kid_scores_run_on_one_thread_with_the_same_value(monkeypatch):
    """KID's subset scores are BLAS work that collapses under thread contention as FID's step does."""
    from facegan.metrics import fid as engine

    real, fake = images(40, 256, 4), images(30, 200, 5)
    metric = FrechetInceptionDistance(feature=Flat(), reset_real_features=False, normalize=False)
    metric.update(real, real=True)
    states = [metric.real_features_sum, metric.real_features_cov_sum, metric.real_features_num_samples]
    statistics = engine.RealStatistics(states, None, True, Flat()(real), 40)  # type: ignore[arg-type]
    threads_seen = []
    poly_mmd = engine.poly_mmd

    def spy(*args, **kwargs):
        threads_seen.append(torch.get_num_threads())
        return poly_mmd(*args, **kwargs)

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        expected = kid(Flat()(real), Flat()(fake), subsets=5, subset_size=20, seed=3)  # on 2 threads
        scorer = engine.FID(metric, {"feature": 16}, kid=True, kid_subsets=5, kid_subset_size=20, seed=3)
        scorer.set_real(statistics)
        monkeypatch.setattr(engine, "poly_mmd", spy)
        scores = scorer([fake])
        assert threads_seen == [1] * 5 and torch.get_num_threads() == 2  # one thread, then 2 again
        assert scores["kid"] == pytest.approx(expected[0], rel=1e-6)
        assert scores["kid_std"] == pytest.approx(expected[1], rel=1e-6) and scores["kid_subset_size"] == 20
    finally:
        torch.set_num_threads(threads)
