"""Adaptive augmentation (StyleGAN2-ADA): ``p`` moves by ``sign(r_t - target) * N / (ada_kimg * 1000)``
every 4 D updates, from the signal the loss implies; each op applies to each image with probability
``p``; the strength is logged and resumes exactly (tests/test_resume.py runs a fit with it)."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from facegan.training.objective import INTERVAL, AdaptiveStrength, color, diff_augment
from tests.test_module import tiny_data, tiny_gan, tiny_trainer


def interval(ada: AdaptiveStrength, signal: list[float], reduce=lambda sums: sums) -> bool:
    for _ in range(INTERVAL):
        ada.observe(torch.tensor(signal))
    return ada.update(reduce)


def test_p_moves_up_when_r_t_is_above_the_target_and_down_below_it():
    # ADA's rule: 4 batches of 10 images = 40 images; 0 -> 1 in 1,000 images: steps of 0.04.
    ada = AdaptiveStrength(target=0.6, kimg=1.0)
    assert ada.p == 0.0 and ada.metrics() == {"train/aug_p": 0.0}
    for _ in range(INTERVAL - 1):
        ada.observe(torch.ones(10))
    assert not ada.update(lambda sums: sums) and ada.p == 0.0  # only at the end of an interval
    ada.observe(torch.ones(10))
    assert ada.update(lambda sums: sums)
    assert ada.r_t == 1.0 and ada.p == pytest.approx(0.04)
    assert interval(ada, [3.0] * 8 + [-0.5] * 2) and ada.r_t == pytest.approx(0.6)  # at the target: kept
    assert ada.p == pytest.approx(0.04)
    assert interval(ada, [2.0] * 7 + [-1.0] * 3)  # r_t 0.4 < 0.6: down
    assert ada.r_t == pytest.approx(0.4) and ada.p == pytest.approx(0.0, abs=1e-12)
    assert interval(ada, [-1.0] * 10) and ada.p == 0.0  # clamped at 0
    assert ada.metrics() == {"train/aug_p": 0.0, "train/r_t": -1.0}
    fast = AdaptiveStrength(target=0.6, kimg=0.01)
    assert interval(fast, [1.0] * 10) and fast.p == 1.0  # clamped at 1


def test_the_signal_is_summed_over_every_process_and_a_zero_weight_counts_nothing():
    # Another process saw 40 images all below zero: r_t over 80 images is 0, the step 80 images.
    ada = AdaptiveStrength(target=0.1, kimg=1.0)
    other = torch.tensor([-40.0, 40.0])
    assert interval(ada, [1.0] * 10, reduce=lambda sums: sums + other)
    assert ada.r_t == 0.0 and ada.p == 0.0  # 0 < 0.1: down from 0, clamped
    ada.p = 0.5
    assert interval(ada, [1.0] * 10, reduce=lambda sums: sums + other) and ada.p == pytest.approx(0.42)
    for _ in range(INTERVAL):
        ada.observe(torch.ones(10), weight=0.0)  # a stand-in batch (all its images unreadable)
    assert not ada.update(lambda sums: sums) and ada.p == pytest.approx(0.42) and ada.steps == 0


def test_a_fixed_strength_is_one_and_observes_nothing():
    ada = AdaptiveStrength(target=None)
    ada.observe(torch.ones(10))
    assert ada.p == 1.0 and ada.steps == 0 and not ada.update(lambda sums: sums) and ada.metrics() == {}


def test_the_state_round_trips_mid_interval():
    ada = AdaptiveStrength(target=0.6, kimg=1.0)
    interval(ada, [1.0] * 10)
    ada.observe(torch.tensor([1.0, -1.0, 1.0]))
    copy = AdaptiveStrength(target=0.6, kimg=1.0)
    copy.load_state_dict(ada.state_dict(), torch.device("cpu"))
    for each in (ada, copy):
        for _ in range(INTERVAL - 1):
            each.observe(torch.tensor([1.0] * 7))
        assert each.update(lambda sums: sums)
    assert copy.state_dict() == ada.state_dict() and copy.r_t == pytest.approx(22 / 24)


def test_each_op_applies_to_each_image_with_probability_p():
    torch.manual_seed(0)
    x = torch.rand(400, 3, 8, 8) * 2 - 1
    assert diff_augment(x, "color", 0.0) is x
    torch.manual_seed(1)
    always = diff_augment(x, "color", 1.0)
    torch.manual_seed(1)
    assert torch.equal(always, color(x))  # p = 1 is plain DiffAugment (same random stream)
    half = diff_augment(x, "color", 0.5)
    unchanged = (half == x).flatten(1).all(dim=1)
    assert 150 < int(unchanged.sum()) < 250  # binomial(400, 0.5): mean 200, sd 10
    assert not (half[~unchanged] == x[~unchanged]).flatten(1).all(dim=1).any()


@pytest.mark.parametrize(("loss", "moves"), [("nonsaturating", True), ("hinge", True), ("rpgan", False)])
def test_the_signal_is_d_real_or_for_the_relativistic_loss_d_real_minus_d_fake(loss, moves):
    # D is sure of every real (logit 5) but scores every fake higher (6): an absolute D overfits the
    # reals (r_t = 1), a relativistic one orders every pair wrongly (r_t = -1).
    gan = tiny_gan(loss=loss, augment="translation", ada_target=0.6, ada_kimg=1.0)
    for _ in range(INTERVAL):
        logs = gan.objective.adapt(torch.full((8,), 5.0), torch.full((8,), 6.0), 1.0)
    assert logs["train/r_t"] == (1.0 if moves else -1.0)
    assert logs["train/aug_p"] == pytest.approx(0.032 if moves else 0.0)


def test_a_fit_logs_the_strength_and_d_sees_images_at_it():
    torch.manual_seed(0)
    gan = tiny_gan(augment="color", ada_target=0.6, ada_kimg=0.01)
    logged: list[dict] = []

    class Diagnostics(L.Callback):  # each batch's, as logged where a logger writes (log_every_n_steps)
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            logged.append({key: float(value) for key, value in pl_module.diagnostics.items()})

    seen: list[float] = []
    augment = gan.objective.augment
    gan.objective.augment = lambda images: seen.append(gan.objective.ada.p) or augment(images)
    tiny_trainer(limit_train_batches=INTERVAL + 1, callbacks=[Diagnostics()]).fit(gan, tiny_data())
    rows = [row for row in logged if "train/d_real" in row]  # the D updates' rows
    assert len(rows) == INTERVAL + 1
    assert [row["train/aug_p"] for row in rows][: INTERVAL - 1] == [0.0] * (INTERVAL - 1)
    assert "train/r_t" not in rows[0] and "train/r_t" in rows[INTERVAL - 1]
    # 0.01 kimg: one interval moves p all the way (up or down); D saw the images at the p of its step.
    assert gan.objective.ada.p in (0.0, 1.0) and seen[-1] == gan.objective.ada.p


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(ada_target=0.6), "`ada_target` adapts the strength of the `augment` policy, which is empty"),
        (dict(ada_target=1.5, augment="color"), r"`ada_target` must be in \(0, 1\)"),
        (dict(ada_target=0.6, ada_kimg=0.0, augment="color"), "`ada_kimg` > 0"),
    ],
)
def test_settings_out_of_range_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        tiny_gan(**settings)
