import math

import pytest
import torch

from facegan.training.losses import (
    bce_with_logits,
    get_losses,
    hinge_d_loss,
    hinge_g_loss,
    nonsaturating_d_loss,
    nonsaturating_g_loss,
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


def test_label_noise_moves_targets_up_by_at_most_the_noise():
    torch.manual_seed(0)
    logits = torch.zeros(10_000)
    clean = nonsaturating_d_loss(logits, logits)
    noisy = nonsaturating_d_loss(logits, logits, label_noise=0.05)
    # At logit 0 the loss is softplus(0) * 2 - (t_real + t_fake) * 0 == clean: targets do not matter...
    assert noisy.item() == pytest.approx(clean.item())
    # ...but gradients do: d/dl [softplus(l) - t l] = sigmoid(l) - t, so noise lowers it by E[U] * 0.05.
    logits.requires_grad_(True)
    nonsaturating_d_loss(logits, logits.detach(), label_noise=0.05).backward()
    mean_grad = logits.grad.mean().item() * logits.numel()
    assert mean_grad == pytest.approx(0.5 - 1.0 - 0.025, abs=2e-3)


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
        ValueError, match=r"`loss` must be one of \('nonsaturating', 'hinge'\), but got 'wgan'"
    ):
        get_losses("wgan")
