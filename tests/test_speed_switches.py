"""GPU-oriented switches, checked on the CPU: channels_last, fused Adam, torch.compile."""

from __future__ import annotations

import pytest
import torch

from tests.test_module import tiny_data, tiny_gan, tiny_trainer


def test_channels_last_trains_with_nhwc_weights_and_matches_the_default_layout():
    results = {}
    for channels_last in (False, True):
        torch.manual_seed(0)
        gan = tiny_gan(channels_last=channels_last)
        tiny_trainer(limit_train_batches=2).fit(gan, tiny_data())
        results[channels_last] = gan
    conv = results[True].discriminator.net[2].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    for a, b in zip(results[False].parameters(), results[True].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)  # same training, another memory layout


def test_fused_adam_is_used_when_asked_and_by_default_on_the_cpu():
    """torch's fused Adam runs on the CPU too (7x faster per step at widths 32): on by default there."""
    for fused, expected in ((True, True), (None, True), (False, False)):
        optimizers = tiny_gan(fused_adam=fused).configure_optimizers()
        assert [bool(opt.defaults.get("fused")) for opt in optimizers] == [expected, expected]
    gan = tiny_gan(fused_adam=True)
    before = [p.detach().clone() for p in gan.generator.parameters()]
    tiny_trainer(limit_train_batches=1).fit(gan, tiny_data())
    assert any(not torch.equal(a, b) for a, b in zip(before, gan.generator.parameters(), strict=True))


@pytest.mark.slow
def test_compiled_networks_train_and_checkpoints_keep_plain_keys():
    torch.manual_seed(0)
    gan = tiny_gan(compile=True, r1_gamma=1.0, r1_every=1)  # R1 runs on the eager D
    before = [p.detach().clone() for p in gan.parameters()]
    trainer = tiny_trainer(limit_train_batches=2)
    trainer.fit(gan, tiny_data())
    assert set(gan.compiled) == {"g", "d"}
    assert torch.isfinite(trainer.callback_metrics["train/r1"])
    assert any(not torch.equal(a, b) for a, b in zip(before, gan.parameters(), strict=True))
    keys = gan.state_dict().keys()
    assert not any("_orig_mod" in key for key in keys)
    assert set(keys) == set(tiny_gan().state_dict().keys())
