"""DivergenceMonitor: a non-finite loss or a collapsed discriminator stops training (or warns), and
the last good checkpoint stays intact."""

from __future__ import annotations

import logging

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from facegan.callbacks import DivergenceMonitor, TrainingDiverged
from facegan.io.checkpoints import load_checkpoint
from tests.test_module import tiny_data, tiny_gan, tiny_trainer


class PoisonDiscriminator(L.Callback):
    """Blow D's weights up to NaN at the start of epoch 1 (what a diverging update does)."""

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            with torch.no_grad():
                next(pl_module.discriminator.parameters()).fill_(float("nan"))


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    torch.manual_seed(0)
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer = tiny_trainer(
        max_epochs=3,
        callbacks=[PoisonDiscriminator(), DivergenceMonitor(check_every=1), checkpoint],
        enable_checkpointing=True,
    )
    with pytest.raises(TrainingDiverged) as error:
        trainer.fit(tiny_gan(), tiny_data())
    last = tmp_path / "last.ckpt"
    # step 3: the 4th batch's row in the logs (global_step, 2 per batch, would say 8)
    assert f"train/d_loss is nan at step 3 (epoch 1). Last good checkpoint: {last}" in str(error.value)
    good = load_checkpoint(last)
    assert good["epoch"] == 0 and all(torch.isfinite(t).all() for t in good["state_dict"].values())


def test_collapsed_discriminator_is_detected_and_warn_only_carries_on(caplog):
    torch.manual_seed(0)
    gan = tiny_gan(g_lr=0.0, d_lr=2e-3)  # G frozen: D learns to separate and wins
    monitor = DivergenceMonitor(action="warn", check_every=1, window=10)
    with caplog.at_level(logging.WARNING, logger="facegan.callbacks.divergence"):
        # One epoch of 64 batches, whose diagnostics are logged at its last only: the monitor reads
        # each batch's own from the module, not the logged metrics.
        trainer = tiny_trainer(limit_train_batches=64, log_every_n_steps=100, callbacks=[monitor])
        trainer.fit(gan, tiny_data(num_procedural=512))
    messages = [r.message for r in caplog.records if "collapsed" in r.message]
    assert len(messages) == 1  # warned once, training went on to the end
    assert "of reals and" in messages[0] and "Last good checkpoint: none written yet" in messages[0]


def test_a_collapse_is_detected_under_the_hinge_loss_too(caplog):
    """Hinge logits sit near +-1 (sigmoid 0.73): D's sign accuracy shows the collapse where P(real) cannot."""
    torch.manual_seed(0)
    gan = tiny_gan(loss="hinge", g_lr=0.0, d_lr=2e-3)
    monitor = DivergenceMonitor(action="warn", check_every=1, window=10)
    with caplog.at_level(logging.WARNING, logger="facegan.callbacks.divergence"):
        trainer = tiny_trainer(max_epochs=8, limit_train_batches=8, callbacks=[monitor])
        trainer.fit(gan, tiny_data())
    assert any("collapsed" in r.message for r in caplog.records)
    assert float(trainer.callback_metrics["train/d_real"]) < 0.99  # what the old P(real) rule needed


def test_settings_are_validated():
    with pytest.raises(ValueError, match="`action` must be 'stop' or 'warn'"):
        DivergenceMonitor(action="ignore")
    with pytest.raises(ValueError, match=r"`max_accuracy` must be in \(0.5, 1\], but got 0.3"):
        DivergenceMonitor(max_accuracy=0.3)
