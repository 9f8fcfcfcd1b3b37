import math

import pytest
import torch

from facegan.training.objective import (
    bce_with_logits,
    get_losses,
    gradient_penalty,
    hinge_d_loss,
    hinge_g_loss,
    nonsaturating_d_loss,
    nonsaturating_g_loss,
    rpgan_d_loss,
    rpgan_g_loss,
)


def test_nonsaturating_losses_at_known_logits():
    zero = torch.zeros(4)
    # sigmoid(0) = 0.5: each BCE term is log 2.
    assert nonsaturating_d_loss(zero, zero).item() == pytest.approx(2 * math.log(2))
    assert nonsaturating_g_loss(zero).item() == pytest.approx(math.log(2))
    real, fake = torch.tensor([2.0]), torch.tensor([-1.0])
    expected = -math.log(1 / (1 + math.exp(-2.0))) - math.log(1 - 1 / (1 + math.exp(1.0)))
    assert nonsaturating_d_loss(real, fake).item() == pytest.approx(expected, rel=1e-6)
    assert nonsaturating_g_loss(torch.tensor([3.0])).item() == pytest.approx(
        math.log1p(math.exp(-3.0)), rel=1e-6
    )


def test_bce_matches_torch_for_soft_targets_and_stays_finite_for_huge_logits():
    logits = torch.tensor([-3.0, 0.5, 4.0])
    target = torch.tensor([0.02, 1.03, 0.5])
    reference = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert bce_with_logits(logits, target).item() == pytest.approx(reference.item(), rel=1e-6)
    assert torch.isfinite(bce_with_logits(torch.tensor([1e4, -1e4]), 1.0))


def keras_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, u_real, u_fake) -> torch.Tensor:
    """The Keras face example's D loss, in its own terms and in float64: labels 1 for generated and 0 for
    real images, plus 0.05 * U(0, 1); D outputs sigmoid probabilities of "generated"; BCE clips them to
    [1e-7, 1 - 1e-7] and averages over the concatenated batch."""
    eps = 1e-7
    p_generated = torch.sigmoid(-torch.cat([fake_logits, real_logits]).double())  # D(x) of a Keras D
    labels = torch.cat([torch.ones_like(u_fake), torch.zeros_like(u_real)]).double()
    labels = labels + 0.05 * torch.cat([u_fake, u_real]).double()
    p = p_generated.clamp(eps, 1 - eps)
    return -(labels * torch.log(p) + (1 - labels) * torch.log(1 - p)).mean()


def test_label_noise_is_the_keras_formula_translated_to_logits():
    real = torch.tensor([-30.0, -3.0, 0.0, 0.7, 5.0, 40.0])
    fake = torch.tensor([-40.0, -5.0, -0.2, 0.0, 2.0, 30.0])
    torch.manual_seed(1)
    ours = nonsaturating_d_loss(real, fake, label_noise=0.05)
    torch.manual_seed(1)
    u_real, u_fake = torch.rand_like(real), torch.rand_like(fake)  # the draws the loss made, in order
    # facegan sums the real and fake means; Keras averages the concatenated batch of equal halves.
    assert ours.item() == pytest.approx(2 * keras_d_loss(real, fake, u_real, u_fake).item(), rel=1e-5)


def test_label_noise_keeps_the_loss_bounded_and_its_targets_in_the_seeds_ranges():
    torch.manual_seed(0)
    n = 10_000
    confident = nonsaturating_d_loss(torch.full((n,), 100.0), torch.full((n,), -100.0), label_noise=0.05)
    # Bounded below: each half is at least -0.05 * 16.118 (a fake target of -0.05 at the clip).
    assert confident.item() > -0.05 * 16.2
    assert torch.isfinite(confident)
    # Gradient of one term: sigmoid(l) - t at l = 0 gives the target directly.
    real = torch.zeros(n, requires_grad=True)
    fake = torch.zeros(n, requires_grad=True)
    nonsaturating_d_loss(real, fake, label_noise=0.05).backward()
    real_targets = 0.5 - real.grad * n  # t_real = sigmoid(0) - n * dL/dl
    fake_targets = 0.5 - fake.grad * n
    assert real_targets.min() >= 0.95 and real_targets.max() <= 1.0  # real: [0.95, 1]
    assert fake_targets.min() >= -0.05 and fake_targets.max() <= 0.0  # fake: [-0.05, 0]
    assert real_targets.mean().item() == pytest.approx(0.975, abs=2e-3)
    assert fake_targets.mean().item() == pytest.approx(-0.025, abs=2e-3)
    # Beyond the clip, as in Keras, D gets no gradient from a sample.
    far = torch.tensor([100.0], requires_grad=True)
    nonsaturating_d_loss(far, torch.tensor([-100.0]), label_noise=0.05).backward()
    assert far.grad.item() == 0.0


def test_hinge_losses_at_known_logits():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    # relu(1 - real) = [0, 0.5] -> 0.25; relu(1 + fake) = [0, 1] -> 0.5
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.75)
    assert hinge_g_loss(fake).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="label_noise"):
        hinge_d_loss(real, fake, 0.05)


def test_get_losses_names_the_allowed_values():
    assert get_losses("hinge") == (hinge_d_loss, hinge_g_loss)
    with pytest.raises(
        ValueError, match=r"`loss` must be one of \('nonsaturating', 'hinge', 'rpgan'\), but got 'wgan'"
    ):
        get_losses("wgan")


def test_relativistic_pairing_losses_at_known_logits():
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0])
    # -log(sigmoid(real - fake)) per pair (Jolicoeur-Martineau 2019), averaged
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert rpgan_d_loss(real, fake).item() == pytest.approx(
        -(math.log(sig(2)) + math.log(sig(-1))) / 2, rel=1e-6
    )
    assert rpgan_g_loss(fake, real).item() == pytest.approx(
        -(math.log(sig(-2)) + math.log(sig(1))) / 2, rel=1e-6
    )
    shifted = rpgan_d_loss(real + 5.0, fake + 5.0)  # only differences matter
    assert shifted.item() == pytest.approx(rpgan_d_loss(real, fake).item(), rel=1e-6)
    with pytest.raises(ValueError, match="`label_noise` applies to the 'nonsaturating' loss only"):
        rpgan_d_loss(real, fake, 0.05)


def test_r2_on_a_linear_discriminator_is_the_squared_weight_norm_and_trains_d_only():
    torch.manual_seed(0)
    generator = torch.nn.Linear(4, 12)
    w = torch.randn(12)
    fake = generator(torch.randn(5, 4))
    detached = fake.detach().requires_grad_(True)  # R2 looks at D only
    penalty = gradient_penalty(detached, detached @ w)  # D(x) = w . x: d D / d x = w for every image
    assert penalty.item() == pytest.approx(w.square().sum().item(), rel=1e-6)
    d = torch.nn.Linear(12, 1)
    penalty = gradient_penalty(detached, d(detached).squeeze(1))
    penalty.backward()
    assert d.weight.grad is not None and generator.weight.grad is None
    assert torch.allclose(d.weight.grad, 2 * d.weight.detach(), atol=1e-6)  # d |w|^2 / d w = 2w
