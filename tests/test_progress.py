"""ProgressMonitor: images/s from a known clock, the learning rates, at Lightning's logging steps."""

from __future__ import annotations

import csv

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from facegan.callbacks import ProgressMonitor
from facegan.callbacks import progress as progress_module
from tests.test_module import tiny_data, tiny_gan, tiny_trainer

BATCH, LOAD_AND_STEP, STEP_END = 8, 0.25, 0.5  # seconds the fake clock moves per batch (0.75 in all)


class FakeClock(L.Callback):
    """Moves the monitor's clock: 0.75 s per batch, and 100 s of validation and epoch-end work each."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def on_train_batch_start(self, *args) -> None:
        self.now += LOAD_AND_STEP

    def on_train_batch_end(self, *args) -> None:  # runs before ProgressMonitor's (list order)
        self.now += STEP_END

    def on_validation_batch_end(self, *args) -> None:
        self.now += 100.0

    def on_train_epoch_end(self, *args) -> None:  # an epoch-end FID, grid, checkpoint
        self.now += 100.0


def rows(logger: CSVLogger) -> list[dict[str, str]]:
    with open(f"{logger.log_dir}/metrics.csv") as file:
        return list(csv.DictReader(file))


def test_images_per_second_and_learning_rates_at_the_logging_steps(tmp_path, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(progress_module, "perf_counter", clock)
    logger = CSVLogger(tmp_path)
    trainer = tiny_trainer(
        logger=logger,
        log_every_n_steps=2,
        max_epochs=2,
        limit_train_batches=4,
        limit_val_batches=1,
        callbacks=[clock, ProgressMonitor()],
    )
    trainer.fit(tiny_gan(g_lr=1e-4, d_lr=3e-4), tiny_data(batch_size=BATCH))
    logged = rows(logger)
    speed = [row for row in logged if row.get("train/images_per_sec")]
    # Logged where Lightning logs the losses: every 2nd batch (steps 1, 3, 5, 7 of 8).
    assert [int(row["step"]) for row in speed] == [1, 3, 5, 7]
    assert sorted({int(row["step"]) for row in logged if row.get("train/d_loss")}) == [1, 3, 5, 7]
    # 2 batches x 8 images per 2 x 0.75 s; validation and the epoch boundary (200 s each time) excluded.
    expected = 2 * BATCH / (2 * (LOAD_AND_STEP + STEP_END))
    assert [float(row["train/images_per_sec"]) for row in speed] == pytest.approx([expected] * 4)
    assert {float(row["train/g_lr"]) for row in speed} == {1e-4}
    assert {float(row["train/d_lr"]) for row in speed} == {3e-4}
    assert trainer.callbacks[1].images_per_sec == pytest.approx(expected)


def test_a_monitor_never_changes_training_and_without_names_logs_the_throughput_only(tmp_path):
    def train(callbacks, logger):
        L.seed_everything(0)
        model = tiny_gan()
        tiny_trainer(logger=logger, log_every_n_steps=1, callbacks=callbacks).fit(model, tiny_data())
        return {name: value.detach().clone() for name, value in model.named_parameters()}

    logger = CSVLogger(tmp_path, name="monitored")
    with_monitor = train([ProgressMonitor(optimizer_names=[])], logger)
    without = train([], CSVLogger(tmp_path, name="plain"))
    for name, value in without.items():
        assert torch.equal(with_monitor[name], value), name
    speed = [row for row in rows(logger) if row.get("train/images_per_sec")]
    assert len(speed) == 3 and all(float(row["train/images_per_sec"]) > 0 for row in speed)
    assert not any(row.get("train/g_lr") or row.get("train/d_lr") for row in rows(logger))


def test_optimizer_names_must_match_the_optimizers(tmp_path):
    trainer = tiny_trainer(callbacks=[ProgressMonitor(optimizer_names=["g"])])
    with pytest.raises(
        ValueError, match=r"ProgressMonitor: `optimizer_names` \['g'\] names 1 optimizers, but"
    ):
        trainer.fit(tiny_gan(), tiny_data())


@pytest.mark.parametrize(
    ("names", "message"),
    [(["g", "g"], "must be distinct"), (["g/x", "d"], "without '/'"), (["", "d"], "non-empty names")],
)
def test_bad_optimizer_names_are_refused(names, message):
    with pytest.raises(ValueError, match=f"ProgressMonitor: `optimizer_names` .*{message}"):
        ProgressMonitor(optimizer_names=names)


def test_the_images_are_the_modules_count_and_the_batch_is_never_read(tmp_path, monkeypatch):
    """No device read per step: the images are FaceGAN's host count (``images_seen``, a Python int);
    the batch is not looked at (on the meta device it has no data: reading it would raise)."""
    monitor = ProgressMonitor()
    trainer = tiny_trainer(logger=CSVLogger(tmp_path), log_every_n_steps=1, callbacks=[monitor])
    model = tiny_gan()
    trainer.fit(model, tiny_data())
    clock = FakeClock()
    monkeypatch.setattr(progress_module, "perf_counter", clock)
    monitor.on_train_epoch_start(trainer, model)
    clock.now += 0.5
    batch = (torch.empty(5, 3, 32, 32, device="meta"), torch.empty(5, device="meta"))
    model.feed.seen += 5  # what the training step adds for a batch of 5 images
    monitor.on_train_batch_end(trainer, model, None, batch, 0)
    assert monitor.images_per_sec == pytest.approx(5 / 0.5)
