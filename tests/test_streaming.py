"""``prepare`` into LitData shards and training from them: same pixels as the memmap cache, the
splits, the bad-image rules, DDP shares and exact mid-epoch resumes (a ``local:`` folder stands in
for a remote bucket)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from litdata import StreamingDataset
from PIL import Image

from facegan import FaceDataModule
from facegan.cli.tools import main as tools_main
from facegan.data.cache import CachedFaces
from facegan.data.decode import BadImageError
from facegan.data.shards import META_NAME, prepare_shards
from facegan.images import from_uint8
from tests import ddp_shards
from tests.conftest import REPO
from tests.test_bad_data import jpeg_bytes
from tests.test_module import tiny_gan, tiny_trainer


def noise_images(folder: Path, count: int, sizes=((40, 30), (30, 44), (32, 32))) -> list[str]:
    """``count`` distinct random images (PNG, and every fourth a JPEG) of the given sizes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    names = []
    for i in range(count):
        width, height = sizes[i % len(sizes)]
        name = f"{i:03d}.{'jpg' if i % 4 == 3 else 'png'}"
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(folder / name)
        names.append(name)
    return names


def rows(folder: Path) -> list[dict]:
    """A split's rows in order, read with LitData's own dataset (not facegan's reader)."""
    dataset = StreamingDataset(str(folder))
    return [dataset[i] for i in range(len(dataset))]


def test_prepare_writes_the_memmap_caches_pixels_in_the_sources_order(tmp_path):
    noise_images(tmp_path / "faces", 14)
    settings = {"image_size": 16, "crop_size": 24, "val_fraction": 0.15, "test_fraction": 0.15}
    meta = prepare_shards(
        str(tmp_path / "faces"), tmp_path / "shards", num_workers=2, chunk_size=3, **settings
    )

    source = FaceDataModule(str(tmp_path / "faces"), **settings, batch_size=2, num_workers=0)
    source.setup()
    for split in ("train", "val", "test"):
        decoded = source.image_datasets[split]
        written = rows(tmp_path / "shards" / split)
        assert [row["name"] for row in written] == [decoded.source.names[i] for i in decoded.indices]
        for i, row in enumerate(written):
            assert row["image"].dtype == torch.uint8 and torch.equal(row["image"], decoded.load(i))
        assert meta["splits"][split]["count"] == len(written) == len(decoded)
        assert meta["splits"][split]["fingerprint"] == source.fingerprint(split)
    assert len(list((tmp_path / "shards" / "train").glob("chunk-*.bin"))) >= 3  # 10 images, 3 a chunk
    cache = FaceDataModule(str(tmp_path / "faces"), **settings, batch_size=2, num_workers=0, cache=True,
                           cache_dir=str(tmp_path / "cache"))  # fmt: skip
    cache.setup()
    cached = cache.datasets["train"]
    assert isinstance(cached, CachedFaces)
    written = rows(tmp_path / "shards" / "train")
    assert all(torch.equal(cached[i], row["image"]) for i, row in enumerate(written))
    on_disk = json.loads((tmp_path / "shards" / META_NAME).read_text())
    assert on_disk == meta and (meta["image_size"], meta["crop_size"]) == (16, 24)


def test_prepare_splits_as_the_celeba_partition_file_says(tmp_path):
    celeba = tmp_path / "celeba"
    names = noise_images(celeba / "img_align_celeba", 9, sizes=((36, 44),))
    codes = [0, 1, 2, 0, 0, 1, 0, 2, 0]
    lines = [f"{name} {code}" for name, code in zip(names, codes, strict=True)]
    (celeba / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    meta = prepare_shards(str(celeba), tmp_path / "shards", image_size=16, num_workers=1)
    for code, split in enumerate(("train", "val", "test")):
        expected = [name for name, c in zip(names, codes, strict=True) if c == code]
        assert [row["name"] for row in rows(tmp_path / "shards" / split)] == expected
        assert meta["splits"][split]["count"] == len(expected)
    assert meta["source"]["kind"] == "celeba"


def test_a_bad_image_fails_naming_it_leaves_no_prepared_folder_or_is_skipped_by_the_rule(tmp_path, capsys):
    noise_images(tmp_path / "faces", 5)
    (tmp_path / "faces" / "broken.jpg").write_bytes(jpeg_bytes()[:300])
    args = ["prepare", "--root", str(tmp_path / "faces"), "--image-size", "16", "--workers", "2"]
    args += ["--val-fraction", "0", "--test-fraction", "0"]
    with pytest.raises(SystemExit) as exit_info:
        tools_main([*args, "--out", str(tmp_path / "strict")])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    message = next(line for line in lines if line.startswith("facegan prepare: error: "))
    assert message.startswith("facegan prepare: error: cannot read image ") and "broken.jpg" in message
    assert "--skip-bad-images" in message and "--data." not in message
    assert not (tmp_path / "strict" / META_NAME).exists() and not (tmp_path / "strict" / "train").exists()

    with pytest.raises(BadImageError, match="max_skipped_fraction=0.1.*--max-skipped-fraction"):  # 1/6 > 10 %
        prepare_shards(str(tmp_path / "faces"), tmp_path / "few", 16, num_workers=2, skip_bad_images=True,
                       val_fraction=0.0, test_fraction=0.0)  # fmt: skip
    assert not (tmp_path / "few" / META_NAME).exists()

    tools_main(
        [*args, "--out", str(tmp_path / "lenient"), "--skip-bad-images", "--max-skipped-fraction", "0.5"]
    )
    meta = json.loads((tmp_path / "lenient" / META_NAME).read_text())
    assert meta["splits"]["train"]["skipped"] == ["broken.jpg"] and meta["splits"]["train"]["count"] == 5
    assert "broken.jpg" not in [row["name"] for row in rows(tmp_path / "lenient" / "train")]
    assert meta["splits"]["train"]["fingerprint"]["skipped"] == 1  # not the source's 6-image statistics
    assert "5 images ({'train': 5, 'val': 0, 'test': 0}; 1 skipped)" in capsys.readouterr().out


def test_prepare_refuses_an_occupied_out_folder_and_training_checks_the_prepared_settings(tmp_path):
    noise_images(tmp_path / "faces", 6)
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "notes.txt").write_text("mine")
    (tmp_path / "shards" / "train").mkdir()  # not ours: no facegan-shards.json beside it
    with pytest.raises(ValueError, match="is not empty.*--overwrite"):
        prepare_shards(str(tmp_path / "faces"), tmp_path / "shards", 16)
    with pytest.raises(ValueError, match="replaces prepared folders only"):
        prepare_shards(str(tmp_path / "faces"), tmp_path / "shards", 16, overwrite=True)
    assert (tmp_path / "shards" / "notes.txt").read_text() == "mine" and (
        tmp_path / "shards" / "train"
    ).is_dir()
    prepare_shards(str(tmp_path / "faces"), tmp_path / "ready", 16, num_workers=1, val_fraction=0.0,
                   test_fraction=0.0)  # fmt: skip
    meta = prepare_shards(str(tmp_path / "faces"), tmp_path / "ready", 16, num_workers=1, overwrite=True,
                          val_fraction=0.0, test_fraction=0.0)  # fmt: skip
    assert meta["splits"]["train"]["count"] == len(rows(tmp_path / "ready" / "train")) == 6
    with pytest.raises(ValueError, match="prepared at image_size=16.*--data.image_size 16"):
        FaceDataModule(str(tmp_path / "ready"), image_size=32, batch_size=2).setup()
    with pytest.raises(ValueError, match="shards.*cache false"):
        FaceDataModule(str(tmp_path / "ready"), image_size=16, batch_size=2, cache=True).setup()
    with pytest.raises(FileNotFoundError, match=f"not a prepared folder.*{META_NAME}.*facegan prepare"):
        FaceDataModule(str(tmp_path / "faces"), source="shards", image_size=16).setup()


def test_without_litdata_the_error_names_the_extra(tmp_path, monkeypatch):
    noise_images(tmp_path / "faces", 4)
    prepare_shards(str(tmp_path / "faces"), tmp_path / "shards", 16, num_workers=1)
    monkeypatch.setitem(sys.modules, "litdata", None)  # import litdata -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'facegan\[stream\]'"):
        prepare_shards(str(tmp_path / "faces"), tmp_path / "again", 16)
    with pytest.raises(ImportError, match=r"pip install 'facegan\[stream\]'"):
        FaceDataModule(str(tmp_path / "shards"), image_size=16, batch_size=2).setup()
    data = FaceDataModule(str(tmp_path / "faces"), image_size=16, batch_size=2, num_workers=0)
    data.setup()  # image folders need no LitData
    assert next(iter(data.train_dataloader())).shape == (2, 3, 16, 16)


def test_a_data_module_over_shards_trains_and_gives_fid_its_real_images(tmp_path):
    noise_images(tmp_path / "faces", 20, sizes=((32, 32),))
    prepare_shards(str(tmp_path / "faces"), tmp_path / "shards", 32, num_workers=2, chunk_size=4)
    data = FaceDataModule(str(tmp_path / "shards"), image_size=32, batch_size=4, num_workers=0)
    data.setup()
    assert data.kind == "shards" and type(data.train_dataloader()).__name__ == "ResumableStreamingDataLoader"
    batch = next(iter(data.train_dataloader()))
    assert batch.dtype == torch.uint8 and batch.shape == (4, 3, 32, 32)
    gan = tiny_gan()
    before = {name: p.detach().clone() for name, p in gan.generator.named_parameters()}
    tiny_trainer(limit_train_batches=2).fit(gan, data)
    assert int(gan.images_seen) == 8
    assert any(not torch.equal(p, before[name]) for name, p in gan.generator.named_parameters())
    # FIDMonitor's inputs: the unflipped images in [-1, 1], and the source's key (same pixels).
    source = FaceDataModule(str(tmp_path / "faces"), image_size=32, batch_size=4, num_workers=0)
    source.setup()
    real = data.real_dataset("train")
    assert len(real) == len(source.image_datasets["train"]) == 20  # 2 % of 20 rounds to no val/test
    torch.testing.assert_close(real[5], from_uint8(source.image_datasets["train"].load(5)), rtol=0, atol=0)
    assert data.fingerprint("val") == source.fingerprint("val")


def seen(out: Path, fit: str, rank: int) -> list:
    return json.loads((out / f"{fit}-rank{rank}.json").read_text())


def test_a_mid_epoch_resume_continues_the_epoch_exactly_then_shuffles_the_next(tmp_path):
    """With a loader worker; a plain StreamingDataLoader replayed the resumed epoch's rest as epoch 1."""
    noise_images(tmp_path / "faces", 24, sizes=((32, 32),))
    prepare_shards(str(tmp_path / "faces"), tmp_path / "shards", 32, num_workers=2, chunk_size=4,
                   val_fraction=0.0, test_fraction=0.0)  # fmt: skip
    ddp_shards.main(str(tmp_path / "shards"), tmp_path, devices=1, stop=2, workers=1)
    full, stopped, resumed = (seen(tmp_path, fit, 0) for fit in ("full", "stopped", "resumed"))
    assert [(epoch, batch) for epoch, batch, _ in stopped] == [(0, 0), (0, 1), (0, 2)]
    assert full == stopped + resumed  # every batch, image for image
    epochs = [[d for epoch, _, digests in full if epoch == e for d in digests] for e in (0, 1)]
    assert len(epochs[0]) == len(set(epochs[0])) == 24 and set(epochs[1]) == set(epochs[0])
    assert epochs[1] != epochs[0]  # a new order each epoch


def test_two_processes_read_disjoint_shares_of_a_remote_and_resume_exactly(tmp_path):
    """DDP on 2 CPU processes (gloo) over ``local:`` shards, which LitData streams as from a bucket."""
    noise_images(tmp_path / "faces", 48, sizes=((32, 32),))
    prepare_shards(str(tmp_path / "faces"), tmp_path / "shards", 32, num_workers=2, chunk_size=6,
                   val_fraction=0.0, test_fraction=0.0)  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}  # fmt: skip
    command = [sys.executable, str(REPO / "tests" / "ddp_shards.py"), f"local:{tmp_path / 'shards'}",
               str(tmp_path), "2", "2", "0"]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for epoch in (0, 1):
        shares = [
            {d for e, _, digests in seen(tmp_path, "full", r) if e == epoch for d in digests} for r in (0, 1)
        ]
        assert len(shares[0]) == len(shares[1]) == 24 and not shares[0] & shares[1]
        assert len(shares[0] | shares[1]) == 48  # together: the whole epoch
    for rank in (0, 1):
        assert seen(tmp_path, "full", rank) == seen(tmp_path, "stopped", rank) + seen(
            tmp_path, "resumed", rank
        )
    assert any((tmp_path / "streamed").rglob("chunk-*.bin"))  # chunks came through LitData's cache
