"""The R3GAN pair: shapes at every size, identity blocks at initialization, no normalization layers (so
an image depends on its latent only), He-initialized layers, double backward for R1/R2, width checks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from facegan.nets import NetworkConfig
from facegan.nets.r3gan import (
    ACTIVATION_GAIN,
    R3GANDiscriminator,
    R3GANGenerator,
    ResidualBlock,
    check_widths,
    stage_widths,
)


def test_stage_widths_follow_the_papers_ffhq_presets():
    # R3GAN's FFHQ-64 preset: 3/4 of [1024, 1024, 1024, 1024, 512]; FFHQ-256 continues 256, 128 (x 3/4)
    assert stage_widths(64, 768) == [768, 768, 768, 768, 384]
    assert stage_widths(128, 768) == [768, 768, 768, 768, 384, 192]
    assert stage_widths(32, 768) == [768] * 4  # CIFAR-10's preset: 4 stages of 768


@pytest.mark.parametrize("size", [32, 64, 128])
def test_shapes_at_every_size_and_no_normalization(size):
    torch.manual_seed(0)
    g, d = R3GANGenerator(size, 16, 32), R3GANDiscriminator(size, 32)
    z = torch.randn(3, 16)
    images = g(z)
    assert images.shape == (3, 3, size, size) and torch.isfinite(images).all()
    assert d(images).shape == (3,)
    norms = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)
    assert not any(isinstance(m, norms) for m in [*g.modules(), *d.modules()])
    assert torch.allclose(g(z[1:2]), images[1:2], atol=1e-5)  # no batch statistics: per-latent images
    assert torch.equal(g.eval()(z), images.clamp(-1, 1))  # eval mode: the same images, clamped


def test_blocks_start_as_the_identity_with_he_initialized_inner_layers():
    torch.manual_seed(0)
    block = ResidualBlock(64, expansion=2, total_blocks=10)
    x = torch.randn(2, 64, 8, 8)
    assert torch.equal(block(x), x)  # the last 1x1 conv starts at zero
    first, _, grouped, _, last = block.residual
    expected = ACTIVATION_GAIN * 10 ** (-1 / 4) / math.sqrt(64)  # fan-in 64, fix-up scaled by L^-1/4
    assert first.weight.std().item() == pytest.approx(expected, rel=0.05)
    assert grouped.groups == 128 // 16 and grouped.kernel_size == (3, 3)
    assert last.weight.abs().max() == 0
    assert all(m.bias is None for m in block.modules() if isinstance(m, nn.Conv2d))


def test_gradient_penalties_can_be_back_propagated_into_d():
    torch.manual_seed(0)
    d = R3GANDiscriminator(32, 16)
    images = torch.randn(2, 3, 32, 32, requires_grad=True)
    (grad,) = torch.autograd.grad(d(images).sum(), images, create_graph=True)
    grad.square().sum().backward()  # R1/R2 need the double backward through resampling and grouped convs
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in d.parameters())


def test_widths_that_grouped_convolutions_cannot_split_are_refused():
    check_widths(64, 32, "g_channels")
    with pytest.raises(ValueError, match=r"`d_channels` must be a multiple of 16 for arch='r3gan' at 64 px"):
        check_widths(64, 24, "d_channels")


def test_spectral_norm_is_refused_for_blocks_that_start_at_zero():
    # spectral norm divides by the largest singular value, 0 for a block's last layer at init: NaN logits
    with pytest.raises(ValueError, match=r"`spectral_norm` does not apply to arch='r3gan'"):
        NetworkConfig(arch="r3gan", image_size=32, g_channels=16, d_channels=16, spectral_norm=True)


def test_parameter_counts_match_the_architecture_by_hand():
    """Counted from the design (not from the modules): a block on C channels has two 1x1 convs
    (C x 2C each), a grouped 3x3 conv (2C outputs x 16 inputs x 9) and two biases of 2C."""

    def block(c: int) -> int:
        return 2 * c * c * 2 + 2 * c * 16 * 9 + 2 * (2 * c)

    widths = [768, 768, 768, 768, 384]  # 64 px
    changes = 768 * 384  # one 1x1 conv where the width halves
    g_expected = 768 * 16 + 64 * 768 + sum(2 * block(w) for w in widths) + changes + 384 * 3
    d_expected = 3 * 384 + sum(2 * block(w) for w in widths) + changes + 768 * 16 + 768
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    g, d = R3GANGenerator(64, 64, 768), R3GANDiscriminator(64, 768)
    print(f"r3gan 64 px, width 768: G {count(g) / 1e6:.2f} M, D {count(d) / 1e6:.2f} M parameters")
    assert (count(g), count(d)) == (g_expected, d_expected)


def test_downsampling_is_torchs_antialiased_bilinear_inside_and_runs_in_bfloat16():
    from torch.nn import functional as F

    from facegan.nets.r3gan import Resample

    x = torch.randn(2, 3, 16, 16)
    reference = F.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True)
    down = Resample(3, 3, up=False)(x)
    torch.testing.assert_close(down[..., 1:-1, 1:-1], reference[..., 1:-1, 1:-1])  # edges: replicated
    up = Resample(3, 3, up=True)(x)
    torch.testing.assert_close(up, F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = R3GANDiscriminator(32, 16)(R3GANGenerator(32, 8, 16)(torch.randn(2, 8)))
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()
