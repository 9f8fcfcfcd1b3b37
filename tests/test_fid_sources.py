"""Real images for FID from any source: loaders with a declared value range, any data module, image
files, statistics files (.npz as pytorch-fid writes them), the pixel-hash cache key; generators from a
callable. A small stand-in feature extractor keeps these fast and independent of the Inception weights
(torchmetrics takes any module as `feature`); FID itself is checked against numpy/scipy."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from facegan.callbacks import FIDMonitor
from facegan.metrics import fid as fid_engine
from facegan.metrics.fid import (
    FID,
    as_uint8,
    from_datamodule,
    from_files,
    from_loader,
    generated,
    read_stats_file,
    real_statistics,
    save_npz,
)

EXTRACTOR = {"feature": "pooled-test"}


class Pooled(torch.nn.Module):
    """Features of uint8 images: 2x2 average pools of each channel (12 numbers)."""

    num_features = 12

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(images.float() / 255.0, 2).flatten(1)


def pooled_metric() -> FrechetInceptionDistance:
    return FrechetInceptionDistance(feature=Pooled(), reset_real_features=False, normalize=False)


def reference_fid(a: np.ndarray, b: np.ndarray) -> float:
    """FID of two feature sets, the formula of Heusel et al. with scipy's sqrtm (pytorch-fid's way)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def features(images: torch.Tensor) -> np.ndarray:
    return Pooled()(images).double().numpy()


@pytest.fixture
def unit_images() -> torch.Tensor:
    return torch.rand(40, 3, 8, 8, generator=torch.Generator().manual_seed(0))  # in [0, 1]


def test_a_loader_in_a_declared_range_becomes_rounded_uint8(unit_images):
    expected = (unit_images * 255).round().to(torch.uint8)  # what uint8 images of these values are
    loader = DataLoader(TensorDataset(unit_images, torch.zeros(40)), batch_size=16)  # (images, labels)
    real = from_loader(loader, (0.0, 1.0), 30, "loader")
    got = torch.cat(list(real.batches()))
    assert real.count == 30 and torch.equal(got, expected[[i * 40 // 30 for i in range(30)]])  # evenly spaced
    signed = from_loader(DataLoader(unit_images * 2 - 1, batch_size=16), (-1.0, 1.0), 100, "loader")
    assert signed.count == 40 and (torch.cat(list(signed.batches())).int() - expected.int()).abs().max() <= 1
    as_bytes = from_loader(DataLoader(expected, batch_size=8), "uint8", 100, "loader")
    assert torch.equal(torch.cat(list(as_bytes.batches())), expected)


def test_a_wrong_range_shape_or_dtype_is_an_error_naming_the_argument(unit_images):
    with pytest.raises(
        ValueError, match=r"batch 0: image values span \[.*\], outside `real_range`=\[-0.5, 0.5\]"
    ):
        as_uint8(unit_images, (-0.5, 0.5), "real_range", "loader, batch 0")
    with pytest.raises(ValueError, match=r"`real_range`='uint8' but the images are torch.float32"):
        as_uint8(unit_images, "uint8", "real_range", "loader")
    with pytest.raises(ValueError, match=r"the images are uint8 but `real_range`=\[0.0, 1.0\]; use 'uint8'"):
        as_uint8((unit_images * 255).to(torch.uint8), (0.0, 1.0), "real_range", "loader")
    with pytest.raises(ValueError, match=r"expected image batches \(B, 3, H, W\), got shape \(40, 1, 8, 8\)"):
        as_uint8(unit_images[:, :1], (0.0, 1.0), "real_range", "loader")
    later = from_loader([unit_images[:8], unit_images[8:16] * 3], (0.0, 1.0), 100, "list")
    with pytest.raises(ValueError, match=r"list, batch 1: image values span"):  # every batch is checked
        list(later.batches())
    # generated images may overshoot a little (clamped), not by half the range
    overshoot = torch.full((1, 3, 2, 2), 1.2)
    assert torch.equal(
        next(generated(lambda z: overshoot, torch.zeros(1, 1), 1)), torch.full_like(overshoot, 255).byte()
    )
    far = torch.tensor([0.0, 255.0]).repeat(1, 3, 1, 1).reshape(1, 3, 1, 2)
    with pytest.raises(ValueError, match=r"span \[0, 255\].*`fake_range`=\[-1, 1\]"):
        next(generated(lambda z: far, torch.zeros(1, 1), 1))


class UsersData(L.LightningDataModule):
    """A user's own data module: float images in [0, 1] with labels, nothing facegan-specific."""

    def __init__(self, images: torch.Tensor) -> None:
        super().__init__()
        self.images = images

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.images, torch.arange(len(self.images))), batch_size=16)


def test_any_data_module_gives_its_split_loader_and_the_cache_is_keyed_by_pixels(
    unit_images, tmp_path, recwarn
):
    real = from_datamodule(UsersData(unit_images), "train", (0.0, 1.0), 10_000, 16)
    assert real.key is None and real.count == 40 and real.name == "UsersData.train_dataloader()"
    metric = pooled_metric()
    first = real_statistics(metric, real, EXTRACTOR, tmp_path)
    states, path, hit = first.states, first.path, first.cached
    assert not hit and path.is_file()
    expected = features((unit_images * 255).round().to(torch.uint8))
    assert torch.allclose(states[0] / states[2], torch.from_numpy(expected.mean(0)), atol=1e-9)
    again = from_datamodule(UsersData(unit_images.clone()), "train", (0.0, 1.0), 10_000, 16)
    hit_again = real_statistics(pooled_metric(), again, EXTRACTOR, tmp_path)
    assert (hit_again.path, hit_again.cached) == (path, True)
    changed = unit_images.clone()
    changed[7, 0, 0, 0] = 1.0 - changed[7, 0, 0, 0]  # one pixel of one image
    other = real_statistics(pooled_metric(), from_datamodule(UsersData(changed), "train", (0.0, 1.0), 10_000, 16),
                            EXTRACTOR, tmp_path)  # fmt: skip
    assert other.path != path and other.cached is False
    fewer = real_statistics(pooled_metric(), from_datamodule(UsersData(unit_images), "train", (0.0, 1.0), 20, 16),
                            EXTRACTOR, tmp_path)  # fmt: skip
    assert fewer.path not in (path, other.path)  # the count is part of the key
    assert not recwarn.list
    # a shuffled DataLoader is read in order (evenly spaced): the same images, the same cache file
    shuffled = DataLoader(TensorDataset(unit_images), batch_size=16, shuffle=True, drop_last=True)
    hit = real_statistics(pooled_metric(), from_loader(shuffled, (0.0, 1.0), 40, "s"), EXTRACTOR, tmp_path)
    assert (hit.path, hit.cached) == (path, True)

    class Reshuffled:  # an iterable that shuffles itself every pass: filed under what was used, warned
        def __iter__(self):
            yield unit_images[torch.randperm(40)]

    with pytest.warns(UserWarning, match="gave other images on a second pass"):
        real_statistics(pooled_metric(), from_loader(Reshuffled(), (0.0, 1.0), 40, "it"), EXTRACTOR, tmp_path)


def test_statistics_files_npz_as_pytorch_fid_writes_them_and_the_cache_file(unit_images, tmp_path):
    real_uint8 = (unit_images * 255).round().to(torch.uint8)
    fake_uint8_ = (unit_images.flip(0) ** 2 * 255).round().to(torch.uint8)
    expected = reference_fid(features(real_uint8), features(fake_uint8_))
    metric = pooled_metric()
    computed = real_statistics(metric, from_loader([real_uint8], "uint8", 40, "real"), EXTRACTOR, tmp_path)
    states, cache_file = computed.states, computed.path
    saved = save_npz(tmp_path / "real.npz", states)
    with np.load(saved) as npz:  # what pytorch-fid reads
        assert np.allclose(npz["mu"], features(real_uint8).mean(0))
        assert np.allclose(npz["sigma"], np.cov(features(real_uint8), rowvar=False))
        assert int(npz["num_images"]) == 40
        bare = tmp_path / "pytorch-fid.npz"
        np.savez(bare, mu=npz["mu"], sigma=npz["sigma"])  # no count: pytorch-fid's own files
    engine = FID(metric, EXTRACTOR, kid=False)
    for source in (saved, bare, cache_file):
        engine.set_real(source)  # read and checked as FIDMonitor and score read a statistics file
        fid = engine([fake_uint8_])["fid"]
        assert fid == pytest.approx(expected, rel=1e-6), source
    with pytest.raises(ValueError, match=r"computed with another feature extractor"):
        read_stats_file(cache_file, {"feature": 2048})
    np.savez(tmp_path / "bad.npz", mean=np.zeros(3))
    with pytest.raises(ValueError, match=r"bad.npz: a statistics .npz needs `mu` and `sigma`"):
        read_stats_file(tmp_path / "bad.npz", EXTRACTOR)
    with pytest.raises(FileNotFoundError, match=r"missing.npz' does not exist"):
        read_stats_file(tmp_path / "missing.npz", EXTRACTOR)


def test_image_files_are_cropped_resized_and_keyed_by_their_files(tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    real = from_files(folder, 12, None, 4, 3)  # 12x16 -> central 12x12, no resize
    got = torch.cat(list(real.batches()))
    first = torch.from_numpy(np.array(Image.open(folder / "0.png"))[:, 2:14]).permute(2, 0, 1)
    assert got.shape == (4, 3, 12, 12) and torch.equal(got[0], first)
    assert real.count == 4 and real.key is not None and real.key["num_images"] == 4
    Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(folder / "0.png")
    assert from_files(folder, 12, None, 4, 3).key != real.key  # a changed file is a new key


def test_fid_monitor_measures_a_callable_against_a_users_loader(unit_images, tmp_path, monkeypatch, caplog):
    """No LightningModule API needed: `generator` and `latent_dim` stand in for sample()."""
    monkeypatch.setattr(fid_engine, "build_fid_metric", lambda *args, **kwargs: (pooled_metric(), EXTRACTOR))
    real = DataLoader(TensorDataset(unit_images, torch.zeros(40)), batch_size=16)
    fakes = unit_images.flip(0) ** 2 * 2 - 1  # the "generator" returns these, in [-1, 1]
    position = []

    def generator(z: torch.Tensor) -> torch.Tensor:
        start = sum(position)
        position.append(len(z))
        return fakes[start : start + len(z)]

    monitor = FIDMonitor(real=real, real_range=(0, 1), generator=generator, latent_dim=5, num_fake=40,
                         batch_size=16, cache_dir=str(tmp_path))  # fmt: skip
    strategy = SimpleNamespace(root_device=torch.device("cpu"), barrier=lambda name=None: None)
    trainer = SimpleNamespace(datamodule=None, world_size=1, global_rank=0, is_global_zero=True, strategy=strategy,
                              current_epoch=0, global_step=0, loggers=[], checkpoint_callbacks=[])  # fmt: skip
    module = L.LightningModule()  # no sample(), no hparams
    with caplog.at_level(logging.INFO):
        monitor.setup(trainer, module, "fit")
    assert monitor.cache_hit is False and "cache miss" in caplog.text
    entry = monitor.evaluate(trainer, module)
    expected = reference_fid(
        features((unit_images * 255).round().to(torch.uint8)),
        features(((fakes + 1) * 127.5).round().to(torch.uint8)),
    )
    assert entry["fid"] == pytest.approx(expected, rel=1e-6) and position == [16, 16, 8]
    # KID from the same features (no second pass): torchmetrics' KernelInceptionDistance on them
    reference = KernelInceptionDistance(feature=Pooled(), subsets=100, subset_size=40)
    reference.update((unit_images * 255).round().to(torch.uint8), real=True)
    reference.update(((fakes + 1) * 127.5).round().to(torch.uint8), real=False)
    assert entry["kid"] == pytest.approx(reference.compute()[0].item(), rel=1e-5) and entry["kid_std"] < 1e-6
    with pytest.raises(TypeError, match=r"needs `sample\(z=...\)` and `hparams.latent_dim`; or give"):
        FIDMonitor(real=real).setup(trainer, module, "fit")
    with pytest.raises(TypeError, match=r"FIDMonitor: `real` must be a data module, a DataLoader"):
        FIDMonitor(real=3.5, generator=generator, latent_dim=5, cache_dir=str(tmp_path)).setup(
            trainer, module, "fit"
        )
    with pytest.raises(ValueError, match=r"FIDMonitor: image files as `real` need `image_size`"):
        FIDMonitor(real=str(tmp_path), generator=generator, latent_dim=5).setup(trainer, module, "fit")


def test_a_statistics_file_path_is_used_without_reading_images(unit_images, tmp_path, monkeypatch):
    monkeypatch.setattr(fid_engine, "build_fid_metric", lambda *args, **kwargs: (pooled_metric(), EXTRACTOR))
    states = real_statistics(
        pooled_metric(), from_loader([unit_images], (0.0, 1.0), 40, "r"), EXTRACTOR, tmp_path
    ).states
    stats = save_npz(tmp_path / "stats.npz", states)
    monitor = FIDMonitor(
        real=str(stats), generator=lambda z: torch.zeros(len(z), 3, 8, 8), latent_dim=2, num_fake=4
    )
    strategy = SimpleNamespace(root_device=torch.device("cpu"), barrier=lambda name=None: None)
    trainer = SimpleNamespace(datamodule=None, world_size=1, global_rank=0, is_global_zero=True, strategy=strategy,
                              checkpoint_callbacks=[])  # fmt: skip
    monitor.setup(trainer, L.LightningModule(), "fit")
    assert monitor.cache_path == Path(stats) and monitor.cache_hit is True
    assert torch.allclose(
        monitor.fid.metric.real_features_sum / monitor.fid.metric.real_features_num_samples,
        states[0] / states[2],
    )
