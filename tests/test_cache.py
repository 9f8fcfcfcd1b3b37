"""The preprocessed uint8 dataset cache: same pixels, built once, rebuilt on change, never half-used."""

from __future__ import annotations

import os
import socket
import subprocess
from types import SimpleNamespace

import pytest
import torch

from facegan import FaceDataModule
from facegan.data import cache as cache_module
from facegan.data.cache import CachedFaces, DeviceBatches
from facegan.data.decode import BadImageError, FaceImageDataset
from facegan.images import from_uint8
from tests.test_datamodule import write_images
from tests.test_module import tiny_gan, tiny_trainer


def cached(root, cache_dir, **kwargs) -> FaceDataModule:
    dm = FaceDataModule(
        **{
            "root": str(root),
            "image_size": 16,
            "batch_size": 4,
            "num_workers": 0,
            "val_fraction": 0.0,
            "test_fraction": 0.0,
            "cache": True,
            "cache_dir": str(cache_dir),
            **kwargs,
        }
    )
    dm.setup("fit")
    return dm


@pytest.fixture
def faces(tmp_path):
    folder = tmp_path / "faces"
    for i in range(6):
        write_images(folder, [f"{i}.png"], value=40 * i + 20)
    return folder


def test_cache_holds_exactly_the_decoded_pixels_and_batches_arrive_as_uint8(faces, tmp_path):
    dm = cached(faces, tmp_path / "cache", flip=False)
    train = dm.datasets["train"]
    assert isinstance(train, CachedFaces) and len(train) == 6
    jpeg = FaceImageDataset(train_source(dm), list(range(6)), 16)
    for i in range(6):
        torch.testing.assert_close(from_uint8(train[i]), jpeg[i], rtol=0, atol=0)
    batch = next(iter(dm.train_dataloader()))
    assert batch.dtype == torch.uint8 and batch.shape == (4, 3, 16, 16)
    real = dm.real_dataset("train")  # FID's view: float, unflipped, same pixels
    torch.testing.assert_close(real[3], jpeg[3], rtol=0, atol=0)
    assert dm.cache_path is not None and dm.cache_path.stat().st_size == 6 * 3 * 16 * 16


def train_source(dm):
    return dm.image_datasets["train"].source


def test_cache_is_built_once_and_rebuilt_when_a_file_changes(faces, tmp_path, monkeypatch):
    builds = []
    original = cache_module.DataLoader

    def counting_loader(*args, **kwargs):
        builds.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(cache_module, "DataLoader", counting_loader)
    first = cached(faces, tmp_path / "cache").cache_path
    second = cached(faces, tmp_path / "cache").cache_path
    assert first == second and len(builds) == 1  # the second data module memory-maps it
    write_images(faces, ["3.png"], value=250)  # new pixels, size or mtime: a new key
    os.utime(faces / "3.png", ns=(1, 1))
    third = cached(faces, tmp_path / "cache")
    assert third.cache_path != first and len(builds) == 2
    assert cached(faces, tmp_path / "cache", image_size=32).cache_path not in (first, third.cache_path)


def test_an_interrupted_build_leaves_no_cache_and_the_next_build_completes(faces, tmp_path, monkeypatch):
    calls = []
    load = FaceImageDataset.load

    def interrupted(self, index):
        calls.append(index)
        if len(calls) == 4:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the build
        return load(self, index)

    monkeypatch.setattr(FaceImageDataset, "load", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cached(faces, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []  # no half-written rows, no stray temp files
    monkeypatch.setattr(FaceImageDataset, "load", load)
    dm = cached(faces, tmp_path / "cache")
    assert len(dm.datasets["train"]) == 6


def test_a_build_removes_what_a_killed_build_left_on_this_host(faces, tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    dead = subprocess.Popen(["true"])  # its process id no longer exists once it has been waited for
    dead.wait()
    host = socket.gethostname()
    killed = folder / f".faces-0123.u8.{host}.{dead.pid}.tmp"
    running = folder / f".faces-4567.u8.{host}.1.tmp"  # pid 1 is alive: a build in progress
    elsewhere = folder / f".faces-89ab.u8.another-host.{dead.pid}.tmp"  # not ours to judge
    for path in (killed, running, elsewhere):
        path.write_bytes(b"half")
    cached(faces, folder)
    names = {p.name for p in folder.iterdir()}
    assert killed.name not in names
    assert {running.name, elsewhere.name} <= names
    assert len([n for n in names if not n.startswith(".")]) == 2  # the new cache: rows and JSON


def test_a_rows_file_that_does_not_match_its_description_is_rebuilt(faces, tmp_path):
    dm = cached(faces, tmp_path / "cache")
    with open(dm.cache_path, "r+b") as rows:
        rows.truncate(100)  # e.g. a disk that filled up while copying the cache elsewhere
    again = cached(faces, tmp_path / "cache")
    assert again.cache_path.stat().st_size == 6 * 3 * 16 * 16
    assert len(again.datasets["train"]) == 6


def test_device_side_scaling_and_flips_in_training_only(faces, tmp_path):
    dm = cached(faces, tmp_path / "cache", flip=True)
    batch = torch.stack([dm.datasets["train"][i % 6] for i in range(64)])
    expected = from_uint8(batch)
    dm.trainer = SimpleNamespace(training=False)
    torch.testing.assert_close(dm.on_after_batch_transfer(batch, 0), expected)  # evaluation: no flips
    dm.trainer = SimpleNamespace(training=True)
    out = dm.on_after_batch_transfer(batch, 0)
    flipped = [not torch.equal(o, e) for o, e in zip(out, expected, strict=True)]
    for o, e, f in zip(out, expected, flipped, strict=True):
        torch.testing.assert_close(o, e.flip(-1) if f else e)
    assert 10 < sum(flipped) < 54  # about half, per image


def test_training_on_the_cache(faces, tmp_path):
    dm32 = cached(faces, tmp_path / "cache", batch_size=2, image_size=32)
    model = tiny_gan()
    before = [p.detach().clone() for p in model.discriminator.parameters()]
    tiny_trainer(limit_train_batches=2).fit(model, dm32)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.discriminator.parameters(), strict=True))
    assert int(model.images_seen) == 4
    assert dm32.skipped_images == 0


def test_cache_needs_image_files(tmp_path):
    with pytest.raises(ValueError, match="`cache` applies to image files"):
        FaceDataModule(cache=True, num_workers=0).setup("fit")


def test_device_resident_batches_cover_the_data_once_per_epoch_and_train(faces, tmp_path):
    dm = cached(faces, tmp_path / "cache", batch_size=2, image_size=32, device_resident=True, flip=False)
    batches = dm.train_dataloader()
    assert len(batches) == 3
    epoch = torch.cat(list(batches))  # (6, 3, 32, 32) uint8: every image once
    assert epoch.dtype == torch.uint8 and epoch.shape == (6, 3, 32, 32)
    means = sorted(float(x.float().mean()) for x in epoch)
    expected = sorted(float(dm.datasets["train"][i].float().mean()) for i in range(6))
    assert means == pytest.approx(expected)
    model = tiny_gan()
    tiny_trainer(limit_train_batches=3).fit(model, dm)
    assert int(model.images_seen) == 6


def test_device_resident_processes_share_each_epochs_order_whatever_their_random_streams(faces, tmp_path):
    """Under DDP every process has its own torch RNG stream (FaceGAN decorrelates them); the shards
    must still come from one permutation per epoch, or processes would see overlapping images."""
    dataset = cached(faces, tmp_path / "cache", image_size=32).datasets["train"]
    images = dataset.__getitems__(list(range(len(dataset))))  # (6, 3, 32, 32) uint8
    epoch = [0]

    def shards(epoch_number: int) -> list[list[float]]:
        epoch[0] = epoch_number
        out = []
        for rank in range(2):
            torch.manual_seed(1000 + rank)  # a different global stream per process
            loader = DeviceBatches(images, 1, torch.device("cpu"), 2, rank, seed=7, epoch=lambda: epoch[0])
            out.append([float(batch.float().mean()) for batch in loader])
        return out

    first = shards(0)
    assert len(first[0]) == len(first[1]) == 3
    assert sorted(first[0] + first[1]) == pytest.approx(sorted(float(x.float().mean()) for x in dataset))
    assert shards(0) == first  # a resumed epoch replays its order
    assert shards(1) != first  # and the next epoch is another one


def test_cached_batches_are_read_in_process_unless_workers_are_asked_for(faces, tmp_path):
    streamed = {"device_resident": False}  # the cache read each epoch, not held on the device
    assert cached(faces, tmp_path / "cache", num_workers=None, **streamed).train_dataloader().num_workers == 0
    assert cached(faces, tmp_path / "cache", num_workers=1, **streamed).train_dataloader().num_workers == 1


def test_a_bad_image_is_left_out_of_the_cache_and_still_counted_on_a_cache_hit(faces, tmp_path):
    (faces / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.warns(UserWarning, match=r"skipped: cannot read image .*broken\.jpg"):
        built = cached(faces, tmp_path / "cache", skip_bad_images=True, max_skipped_fraction=1.0)
    assert len(built.datasets["train"]) == 6 and built.skipped_images == 1
    hit = cached(
        faces, tmp_path / "cache", skip_bad_images=True, max_skipped_fraction=1.0
    )  # no decoding this time
    assert hit.cache_path == built.cache_path and hit.skipped_images == 1


def test_a_dangling_symlink_follows_the_skip_rule_when_the_cache_is_built(faces, tmp_path):
    (faces / "dangling.png").symlink_to(tmp_path / "nowhere.png")  # the fingerprint stat()s every file
    with pytest.warns(UserWarning, match=r"skipped: cannot read image .*dangling\.png"):
        built = cached(faces, tmp_path / "cache", skip_bad_images=True, max_skipped_fraction=1.0)
    assert len(built.datasets["train"]) == 6 and built.skipped_images == 1
    with pytest.raises(BadImageError, match=r"cannot read image .*dangling\.png: FileNotFoundError"):
        cached(faces, tmp_path / "cache2")


def test_a_cache_folder_that_cannot_be_written_ends_the_cli_with_one_line(faces, tmp_path):
    """FACEGAN_CACHE naming a file: the cache folder beneath it cannot be made (a read-only one fails
    alike, but not for root, who runs these tests in CI)."""
    import sys

    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file")
    command = [sys.executable, "-m", "facegan", "fit", "--data.root", str(faces), "--data.cache", "true"]
    command += ["--data.image_size", "32", "--data.batch_size", "2", "--trainer.max_epochs", "1"]
    env = {**os.environ, "FACEGAN_CACHE": str(blocked), "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        f"facegan: error: cannot write {blocked / 'data'}: Not a directory; set FACEGAN_CACHE or "
        "--data.cache_dir to a folder you can write to, or --data.cache false. Files already there are "
        "unchanged (FACEGAN_TRACEBACK=1 shows where)"
    )
    assert blocked.read_text() == "a file"


@pytest.mark.filterwarnings("ignore:skipped")
@pytest.mark.parametrize("workers", [0, 2])
def test_decoding_into_memory_keeps_the_order_and_leaves_out_unreadable_images(tmp_path, workers):
    """Workers hand over one stacked block per batch (not one per image): the same rows, in order."""
    folder = tmp_path / "faces"
    for i in range(150):  # three batches of 64 indices
        write_images(folder, [f"{i:03d}.png"], value=i)
    (folder / "070.png").write_bytes(b"not an image")
    dm = FaceDataModule(
        root=str(folder), image_size=8, val_fraction=0.0, test_fraction=0.0, skip_bad_images=True
    )
    dm.setup("fit")
    dataset = dm.image_datasets["train"]
    rows = cache_module.decode_all(dataset, workers)  # the skip's warning comes from where it decoded
    expected = torch.stack([dataset.load(i) for i in range(150) if i != 70])
    assert rows.dtype == torch.uint8 and torch.equal(rows, expected)
    skipped: list[int] = []
    batches = list(cache_module.decoded_rows(dataset, workers, "decoding", skipped))
    assert [b.shape[0] for b in batches] == [64, 63, 22] and skipped == [70]
