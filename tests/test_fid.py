"""FIDMonitor: FID of a set against itself, agreement with torchmetrics, the real-statistics cache,
logging during fit, checkpoints free of Inception, and the offline error. 32 px, a few images."""

from __future__ import annotations

import csv
import logging
import urllib.error
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import Dataset
from torchmetrics.image.fid import FrechetInceptionDistance

from facegan import FaceDataModule, FaceGAN
from facegan.callbacks import FIDMonitor, SampleGridMonitor
from facegan.cli.tools import main
from facegan.images import to_uint8

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread


@pytest.fixture(scope="module")
def data() -> FaceDataModule:
    datamodule = FaceDataModule(image_size=32, num_procedural=64, batch_size=8, num_workers=0)
    datamodule.setup()
    return datamodule


@pytest.fixture(scope="module")
def gan() -> FaceGAN:
    torch.manual_seed(0)
    return FaceGAN(image_size=32, g_channels=8, d_channels=8)


def fake_trainer(datamodule: object) -> SimpleNamespace:
    """What FIDMonitor reads from a Trainer, single process (a real fit is tested below)."""
    strategy = SimpleNamespace(root_device=torch.device("cpu"), barrier=lambda name=None: None)
    return SimpleNamespace(
        datamodule=datamodule, world_size=1, global_rank=0, is_global_zero=True, strategy=strategy,
        current_epoch=0, global_step=0, loggers=[], checkpoint_callbacks=[],
    )  # fmt: skip


class Replay(L.LightningModule):
    """A "generator" whose samples are, in order, the given images."""

    def __init__(self, images: torch.Tensor) -> None:
        super().__init__()
        self.save_hyperparameters({"latent_dim": 4})
        self.images, self.position = images, 0

    def sample(self, z: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        out = self.images[self.position : self.position + len(z)]
        self.position += len(z)
        return out


class Counting(Dataset):
    def __init__(self, dataset: Dataset) -> None:
        self.dataset, self.reads = dataset, 0

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> torch.Tensor:
        self.reads += 1
        return self.dataset[index]


def test_fid_of_a_set_against_itself_is_zero(weights, data, tmp_path):
    real = data.real_dataset("val")  # 8 images
    images = torch.stack([real[i] for i in range(len(real))])
    monitor = FIDMonitor(
        num_fake=len(real), split="val", batch_size=3, weights_path=weights, cache_dir=str(tmp_path)
    )
    module = Replay(images)
    monitor.setup(fake_trainer(data), module, "fit")
    entry = monitor.evaluate(fake_trainer(data), module)
    assert abs(entry["fid"]) < 1e-2
    assert (entry["num_fake"], entry["num_real"]) == (8, 8)  # what the model card reports with the FID
    assert monitor.last_fid == entry["fid"] and monitor.history == [entry]


def test_fid_matches_torchmetrics_on_the_same_images(weights, data, gan, tmp_path):
    monitor = FIDMonitor(num_fake=8, num_real=8, batch_size=8, weights_path=weights, cache_dir=str(tmp_path))
    monitor.setup(fake_trainer(data), gan, "fit")
    fid = monitor.evaluate(fake_trainer(data), gan)["fid"]

    reference = FrechetInceptionDistance(
        feature=2048, antialias=False, feature_extractor_weights_path=weights
    )
    real = data.real_dataset("train")  # 64 images; the monitor takes 8 evenly spaced ones
    reference.update(to_uint8(torch.stack([real[i] for i in range(0, 64, 8)])), real=True)
    seeded = torch.Generator().manual_seed(0)
    reference.update(
        to_uint8(gan.sample(z=torch.randn(8, gan.hparams.latent_dim, generator=seeded))), real=False
    )
    expected = float(reference.compute())
    assert abs(fid - expected) <= 1e-4 * abs(expected), (fid, expected)


def test_real_statistics_cache_is_written_then_hit_and_keyed(weights, data, tmp_path, caplog):
    counted = Counting(data.real_dataset("train"))
    counting_data = SimpleNamespace(real_dataset=lambda split: counted, fingerprint=data.fingerprint)
    settings = dict(num_fake=2, num_real=4, weights_path=weights, cache_dir=str(tmp_path))

    first = FIDMonitor(**settings)
    with caplog.at_level(logging.INFO, logger="facegan.callbacks.fid"):
        first.setup(fake_trainer(counting_data), Replay(torch.zeros(0)), "fit")
    assert first.cache_hit is False and counted.reads == 4
    assert first.cache_path is not None and first.cache_path.is_file()
    assert [p.name for p in tmp_path.iterdir()] == [first.cache_path.name]  # no temp file left behind
    assert "cache miss" in caplog.text and str(first.cache_path) in caplog.text

    second = FIDMonitor(**settings)  # a new run with the same data and settings
    second.setup(fake_trainer(counting_data), Replay(torch.zeros(0)), "fit")
    assert second.cache_hit is True and counted.reads == 4 and second.cache_path == first.cache_path
    for name in ("real_features_sum", "real_features_cov_sum", "real_features_num_samples"):
        assert torch.equal(getattr(second.fid.metric, name), getattr(first.fid.metric, name))
    assert int(second.fid.metric.real_features_num_samples) == 4

    third = FIDMonitor(**{**settings, "num_real": 3})  # another key: num_real
    third.setup(fake_trainer(counting_data), Replay(torch.zeros(0)), "fit")
    assert third.cache_hit is False and counted.reads == 7 and third.cache_path != first.cache_path

    small = FaceDataModule(image_size=16, num_procedural=64, batch_size=8, num_workers=0)  # another key: size
    fourth = FIDMonitor(**settings)
    fourth.setup(fake_trainer(small), Replay(torch.zeros(0)), "fit")
    assert fourth.cache_hit is False and fourth.cache_path not in (first.cache_path, third.cache_path)


def test_fit_logs_val_fid_for_checkpoints_and_keeps_inception_out_of_them(weights, tmp_path):
    torch.manual_seed(0)
    gan = FaceGAN(image_size=32, g_channels=8, d_channels=8)
    data = FaceDataModule(image_size=32, num_procedural=64, batch_size=8, num_workers=0)
    monitor = FIDMonitor(
        num_fake=8, split="val", every_n_kimg=0.008, weights_path=weights, cache_dir=str(tmp_path / "cache")
    )
    best = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/fid", auto_insert_metric_name=False)
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=0,
        accelerator="cpu",
        callbacks=[monitor, best],
        logger=CSVLogger(tmp_path),
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(gan, datamodule=data)

    # every 8 images (one batch); the epoch end and the fit end reuse the second one (same step)
    assert [entry["kimg"] for entry in monitor.history] == pytest.approx([0.008, 0.016])
    assert monitor.history[-1]["step"] == trainer.global_step
    assert float(trainer.callback_metrics["val/fid"]) == pytest.approx(monitor.last_fid)
    assert float(trainer.callback_metrics["val/fid_seconds"]) > 0
    assert float(best.best_model_score) == pytest.approx(monitor.last_fid)
    with open(Path(trainer.logger.log_dir) / "metrics.csv") as file:
        logged = [row for row in csv.DictReader(file) if row.get("val/fid")]
    # every_n_kimg results go to the loggers at Lightning's step (batches, not global_step = 2 per batch)
    assert [int(row["step"]) for row in logged][:2] == [0, 1]

    path = tmp_path / "final.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    keys = list(checkpoint["state_dict"]) + [
        key for state in checkpoint["callbacks"].values() for key in state
    ]
    assert not [key for key in keys if "inception" in key.lower() or "features" in key]
    assert checkpoint["callbacks"][monitor.state_key] == {"history": monitor.history}
    resumed = FIDMonitor(num_fake=8, split="val")
    resumed.load_state_dict(checkpoint["callbacks"][resumed.state_key])
    assert resumed.history == monitor.history and resumed.last_fid == monitor.last_fid
    assert path.stat().st_size < 5_000_000  # Inception alone would be ~95 MB
    main(["export", "--ckpt", str(path), "--out", str(tmp_path / "export")])  # the card reports the last FID
    card = (tmp_path / "export" / "README.md").read_text()
    real = len(data.real_dataset("val"))
    assert f"| FID | {monitor.last_fid:.2f} | 8 | {real:,} | 0.0 |" in card


def test_settings_and_interfaces_are_checked(data):
    with pytest.raises(ValueError, match=r"FIDMonitor: `num_fake` must be an integer >= 2, but got 1"):
        FIDMonitor(num_fake=1)
    with pytest.raises(ValueError, match=r"FIDMonitor: `every_n_kimg` must be null or > 0"):
        FIDMonitor(every_n_kimg=0)
    with pytest.raises(TypeError, match=r"FIDMonitor: no real images: give FIDMonitor\(real=...\)"):
        FIDMonitor().setup(fake_trainer(None), Replay(torch.zeros(0)), "fit")  # before reading any weight
    with pytest.raises(ValueError, match=r"FIDMonitor: `real_range` must be \[low, high\].*but got \(1, 0\)"):
        FIDMonitor(real_range=(1, 0))


def test_missing_weights_offline_error_names_every_way_to_provide_them(data, tmp_path, monkeypatch):
    import torch_fidelity.feature_extractor_inceptionv3 as inception

    def offline(*args, **kwargs):
        raise urllib.error.URLError("simulated: no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # empty: no hub copy of the weights
    monkeypatch.delenv("FACEGAN_FID_WEIGHTS", raising=False)
    monkeypatch.setattr(inception, "load_state_dict_from_url", offline)  # CI may be online: no 95 MB download
    monitor = FIDMonitor(cache_dir=str(tmp_path / "cache"))
    with pytest.raises(RuntimeError) as error:
        monitor.setup(fake_trainer(data), Replay(torch.zeros(0)), "fit")
    message = str(error.value)
    for part in ("weights-inception-2015-12-05-6726825d.pth", "weights_path", "FACEGAN_FID_WEIGHTS"):
        assert part in message
    assert "$TORCH_HOME/hub/checkpoints/" in message and str(tmp_path / "torch") in message

    with pytest.raises(RuntimeError, match="is not a file"):
        FIDMonitor(weights_path=str(tmp_path / "missing.pth")).setup(
            fake_trainer(data), Replay(torch.zeros(0)), "fit"
        )


def test_every_n_kimg_follows_the_modules_image_count(monkeypatch):
    """The schedule reads ``images_seen`` after each batch (FaceGAN's is a Python int: no device sync,
    see tests/test_module.py); the batch itself is never looked at."""

    class Module:
        images_seen = 4  # resumed: 4 images already seen

    monitor = FIDMonitor(every_n_kimg=0.01)  # every 10 images
    evaluated = []
    monkeypatch.setattr(
        monitor, "evaluate", lambda trainer, module: evaluated.append(monitor.schedule.seen) or {}
    )
    monkeypatch.setattr(FIDMonitor, "_log", staticmethod(lambda trainer, entry: None))
    trainer = SimpleNamespace(world_size=1)
    module = Module()
    monitor.on_train_start(trainer, module)
    for i in range(6):  # batches of 3 images: 7, 10, 13, 16, 19, 22 seen
        module.images_seen += 3
        monitor.on_train_batch_end(trainer, module, None, None, i)
    assert evaluated == [10, 22]  # at 10, then at the first count past 20


def fid_every_two_epochs_fit(tmp_path, checkpoint: ModelCheckpoint, weights: str | None) -> L.Trainer:
    monitor = FIDMonitor(
        num_fake=8, split="val", every_n_epochs=2, at_fit_end=False, cache_dir=str(tmp_path / "cache"),
        weights_path=weights or str(tmp_path / "never-read.pth"),
    )  # fmt: skip
    trainer = L.Trainer(
        max_epochs=4, limit_train_batches=1, limit_val_batches=1, accelerator="cpu", logger=False,
        callbacks=[monitor, checkpoint], enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    gan = FaceGAN(image_size=32, g_channels=8, d_channels=8)
    trainer.fit(gan, datamodule=FaceDataModule(image_size=32, num_procedural=64, batch_size=8, num_workers=0))
    return trainer


def test_a_checkpoint_on_val_fid_that_checks_on_epochs_without_fid_is_refused_before_training(tmp_path):
    # Lightning raises "could not find the monitored key" at the first epoch without FID, mid-run.
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/fid")
    with pytest.raises(
        ValueError, match=r"ModelCheckpoint\(monitor='val/fid'\) checks every 1 epoch.*every 2 epochs"
    ):
        fid_every_two_epochs_fit(tmp_path, checkpoint, weights=None)  # refused before the weights are read
    assert not (tmp_path / "ckpt").exists()


def test_a_checkpoint_on_val_fid_every_n_epochs_keeps_the_best_measured_model(weights, tmp_path):
    torch.manual_seed(0)
    checkpoint = ModelCheckpoint(
        dirpath=tmp_path / "ckpt", monitor="val/fid", every_n_epochs=2, save_top_k=2, filename="{epoch}"
    )
    trainer = fid_every_two_epochs_fit(tmp_path, checkpoint, weights)
    monitor = next(cb for cb in trainer.callbacks if isinstance(cb, FIDMonitor))
    assert [entry["epoch"] for entry in monitor.history] == [1, 3]  # validation ran every epoch
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["epoch=1.ckpt", "epoch=3.ckpt"]
    best = min(monitor.history, key=lambda entry: entry["fid"])
    assert checkpoint.best_model_score == pytest.approx(best["fid"])


def test_monitors_leave_the_training_run_bit_identical(weights, tmp_path):
    """With or without FIDMonitor (cold or warm cache) or SampleGridMonitor, the same seed trains the
    same weights: callbacks draw from their own generators, never from the training's streams."""

    def train(*callbacks) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        gan = FaceGAN(image_size=32, latent_dim=16, g_channels=8, d_channels=8)
        trainer = L.Trainer(
            accelerator="cpu", max_epochs=2, limit_train_batches=2, limit_val_batches=0, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            default_root_dir=tmp_path, callbacks=list(callbacks),
        )  # fmt: skip
        trainer.fit(gan, FaceDataModule(image_size=32, batch_size=8, num_procedural=64, num_workers=0))
        return {name: value.detach().clone() for name, value in gan.state_dict().items()}

    def fid() -> FIDMonitor:
        return FIDMonitor(num_fake=2, num_real=4, weights_path=weights, cache_dir=str(tmp_path / "cache"))

    plain = train()
    cold, warm = fid(), fid()
    for name, run in {
        "FIDMonitor, cold cache": train(cold),
        "FIDMonitor, warm cache": train(warm),
        "SampleGridMonitor": train(SampleGridMonitor(num_images=4)),
    }.items():
        assert run.keys() == plain.keys()
        changed = [key for key in plain if not torch.equal(run[key], plain[key])]
        assert changed == [], f"{name} changed {changed}"
    assert (cold.cache_hit, warm.cache_hit) == (False, True) and len(cold.history) == 2
