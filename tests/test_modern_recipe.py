"""The R3GAN recipe inside FaceGAN: arch='r3gan' with loss='rpgan' and R1 + R2 trains D and G (and
the EMA) in a real fit; R2 reaches D only; G's relativistic loss pairs its fakes with real scores;
settings that do not apply are refused."""

from __future__ import annotations

import pytest
import torch

from facegan.io.export import export_generator, load_generator
from tests.test_module import tiny_data, tiny_gan, tiny_trainer


def r3gan(**kwargs):
    settings = dict(
        arch="r3gan", g_channels=16, d_channels=16, loss="rpgan", r1_gamma=1.0, r2_gamma=1.0, r1_every=1
    )
    return tiny_gan(**{**settings, **kwargs})


def test_a_fit_updates_g_d_and_the_ema_and_logs_both_penalties(tmp_path):
    torch.manual_seed(0)
    gan = r3gan(ema_kimg=1.0, augment="translation")
    before = {name: p.detach().clone() for name, p in gan.named_parameters()}
    logged: list[str] = []
    original = gan.log_dict
    gan.log_dict = lambda values, **kw: logged.extend(values) or original(values, **kw)
    tiny_trainer(limit_train_batches=2).fit(gan, tiny_data())
    changed = {name for name, p in gan.named_parameters() if not torch.equal(p, before[name])}
    assert any(n.startswith("generator.") for n in changed) and any(
        n.startswith("discriminator.") for n in changed
    )
    ema = dict(gan.generator_ema.named_parameters())
    assert any(not torch.equal(p, before[f"generator_ema.{n}"]) for n, p in ema.items())
    assert {"train/r1", "train/r2"} <= set(logged) and gan.d_updates == 2
    images = gan.sample(3)
    assert images.shape == (3, 3, 32, 32) and images.abs().max() <= 1  # eval mode clamps (no tanh)
    export = export_generator(gan, tmp_path / "export")
    z = torch.randn(2, 16)
    assert torch.equal(load_generator(export)(z), gan.sample(z=z))  # blocks_per_stage travels, in [-1, 1]


def test_r2_trains_d_only_and_is_zero_centered_on_fakes():
    torch.manual_seed(0)
    gan = r3gan(r1_gamma=0.0)
    fake = gan.generator(torch.randn(4, 16))
    real = torch.rand(4, 3, 32, 32) * 2 - 1
    penalty, logs = gan.objective.regularization(gan.discriminator, real, fake, d_updates=0)
    assert set(logs) == {"train/r2"}
    penalty.backward()
    assert all(p.grad is None for p in gan.generator.parameters())  # the fakes were detached
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in gan.discriminator.parameters())
    lazy = r3gan(r1_every=4)
    assert lazy.objective.regularization(lazy.discriminator, real, fake, d_updates=1) == (
        0.0,
        {},
    )  # only every 4th D update
    assert set(lazy.objective.regularization(lazy.discriminator, real, fake, 4)[1]) == {
        "train/r1",
        "train/r2",
    }


def test_the_generator_loss_is_softplus_of_real_minus_fake_scores_from_the_current_d():
    torch.manual_seed(0)
    gan = r3gan()
    real = torch.rand(4, 3, 32, 32) * 2 - 1
    fake = gan.generator(torch.randn(4, 16))
    expected = torch.nn.functional.softplus(gan.discriminator(real) - gan.discriminator(fake)).mean()
    got = gan.objective.generator_loss(gan.discriminator, fake, real)
    torch.testing.assert_close(got, expected)
    got.backward()
    assert all(p.grad is not None for p in gan.generator.parameters() if p.requires_grad)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(arch="dcgan", blocks_per_stage=3), "`blocks_per_stage` applies to arch='r3gan' only"),
        (dict(r2_gamma=-1.0), "`r2_gamma` must be >= 0"),
        (dict(arch="r3gan", g_channels=12), "`g_channels` must be a multiple of 8 for arch='r3gan' at 32 px"),
        (dict(loss="rpgan", label_noise=0.05), "`label_noise` applies to loss='nonsaturating' only"),
    ],
)
def test_settings_that_do_not_apply_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        tiny_gan(**settings)
