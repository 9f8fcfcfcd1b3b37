"""DiffAugment: differentiable, exact geometry, and applied to everything D sees (real and fake)."""

from __future__ import annotations

import pytest
import torch

from facegan.training.objective import AUGMENTATIONS, color, cutout, diff_augment, parse_policy, translation
from tests.test_module import tiny_data, tiny_gan, tiny_trainer


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_every_augmentation_is_differentiable_and_keeps_the_shape(name):
    torch.manual_seed(0)
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    y = AUGMENTATIONS[name](x)
    assert y.shape == x.shape
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_translation_shifts_by_whole_pixels_and_fills_with_zeros():
    torch.manual_seed(1)
    x = (torch.rand(16, 3, 16, 16) + 1.0).requires_grad_(True)  # no zeros inside
    y = translation(x)  # up to 2 px each way at 16 px
    upstream = torch.randn_like(y)
    (grad,) = torch.autograd.grad(y, x, upstream)
    shifts = set()
    for src, out, up, got in zip(x.detach(), y.detach(), upstream, grad, strict=True):
        matches = []
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                expected, expected_grad = torch.zeros_like(src), torch.zeros_like(src)
                ys, xs = slice(max(0, -dy), min(16, 16 - dy)), slice(max(0, -dx), min(16, 16 - dx))
                ys_src, xs_src = slice(max(0, dy), min(16, 16 + dy)), slice(max(0, dx), min(16, 16 + dx))
                expected[:, ys, xs] = src[:, ys_src, xs_src]
                expected_grad[:, ys_src, xs_src] = up[:, ys, xs]  # the adjoint: the opposite shift
                if torch.equal(out, expected):
                    matches.append((dy, dx))
                    assert torch.equal(got, expected_grad)
        assert len(matches) == 1
        shifts.add(matches[0])
    assert len(shifts) > 3  # random per image


def test_cutout_zeroes_one_half_size_square_per_image():
    torch.manual_seed(2)
    x = torch.rand(8, 3, 16, 16) + 1.0
    y = cutout(x)
    zero = y == 0
    assert torch.equal(zero[:, 0], zero[:, 1]) and torch.equal(zero[:, 0], zero[:, 2])  # all channels
    for mask, src, out in zip(zero[:, 0], x, y, strict=True):
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert mask.sum() == 64 and len(rows) == len(cols) == 8  # one 8x8 square
        assert torch.equal(out[:, ~mask], src[:, ~mask])


def test_color_equals_diffaugments_three_steps_with_the_same_draws():
    """The reference (DiffAugment's rand_brightness, rand_saturation, rand_contrast, one after another),
    with the same per-image draws in the same order, in float64."""
    x = torch.rand(8, 3, 16, 16, dtype=torch.float64) * 2 - 1
    torch.manual_seed(5)
    b, s, c = (torch.rand(8, 1, 1, 1, dtype=torch.float64) for _ in range(3))
    b, s, c = b - 0.5, s * 2, c + 0.5  # U(-0.5, 0.5), U(0, 2), U(0.5, 1.5)
    expected = x + b
    gray = expected.mean(dim=1, keepdim=True)
    expected = (expected - gray) * s + gray
    mean = expected.mean(dim=(1, 2, 3), keepdim=True)
    expected = (expected - mean) * c + mean
    torch.manual_seed(5)
    assert torch.allclose(color(x), expected, rtol=0, atol=1e-12)


def test_color_changes_each_image_differently_but_not_a_gray_images_saturation():
    torch.manual_seed(3)
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    y = color(x)
    shift = (y - x).mean(dim=(1, 2, 3))
    assert shift.std() > 0.05  # per-image brightness
    gray = torch.rand(4, 1, 16, 16).expand(4, 3, 16, 16)
    out = color(gray)
    assert torch.allclose(out[:, 0], out[:, 1], atol=1e-6)  # still gray


def test_policy_parsing_and_errors():
    assert parse_policy("color, translation,cutout") == ("color", "translation", "cutout")
    assert parse_policy("") == ()
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(diff_augment(x, ""), x)
    with pytest.raises(ValueError, match=r"unknown \['flip'\].*'color', 'cutout', 'translation'"):
        parse_policy("translation,flip")
    with pytest.raises(ValueError, match="augment"):
        tiny_gan(augment="zoom")


def test_discriminator_sees_augmented_reals_and_fakes_in_both_updates():
    torch.manual_seed(0)
    gan = tiny_gan(augment="cutout")
    seen: list[torch.Tensor] = []
    gan.discriminator.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    tiny_trainer(limit_train_batches=2).fit(gan, tiny_data())
    assert len(seen) == 2 * 3  # per batch: D(real), D(fake) for D's update, D(fake) for G's update
    for images in seen:  # every batch, real or fake, has its 16x16 square of zeros per image
        assert ((images == 0).all(dim=1).flatten(1).sum(1) >= 256).all()
