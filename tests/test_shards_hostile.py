"""Prepared shards under hostile conditions: a disk that fills during ``prepare``, chunks overwritten,
emptied or deleted afterwards, a damaged ``facegan-shards.json``. Each ends in one line naming the
folder or file and what to do; nothing damaged is trained on."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from facegan import FaceDataModule
from facegan.cli.entry import raised_by_facegan
from facegan.data import streaming
from facegan.data.shards import META_NAME, DamagedShardsError, prepare_shards
from facegan.io.atomic import WriteError
from tests.conftest import REPO
from tests.test_streaming import noise_images

ONLY_TRAIN = {"val_fraction": 0.0, "test_fraction": 0.0}

# Run in a child: LitData's chunk writer fails with ENOSPC at the second chunk, after writing half of it.
FULL_DISK = """
import errno, sys
from pathlib import Path
from litdata.streaming import writer
from facegan.cli.tools import main

original, calls = writer.BinaryWriter.write_chunk_to_file, []

def full_disk(self, raw_data, filename, compress=None):
    calls.append(filename)
    if len(calls) < 2:
        return original(self, raw_data, filename, compress)
    with open(Path(self._cache_dir) / filename, "wb") as out:
        out.write(raw_data[: len(raw_data) // 2])
    raise OSError(errno.ENOSPC, "No space left on device", filename)

writer.BinaryWriter.write_chunk_to_file = full_disk
main(sys.argv[1:])
"""


def test_a_full_disk_ends_prepare_with_one_line_and_removes_the_partial_shards(tmp_path):
    """Before: LitData's traceback, and its workers' helper processes left behind holding the output
    open, so ``prepare ... | tee log`` hung at the last progress line."""
    noise_images(tmp_path / "faces", 20, sizes=((32, 32),))
    out = tmp_path / "out"
    args = ["prepare", "--root", str(tmp_path / "faces"), "--out", str(out), "--image-size", "16",
            "--workers", "2", "--chunk-size", "3", "--val-fraction", "0", "--test-fraction", "0"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}  # fmt: skip
    child = subprocess.Popen([sys.executable, "-c", FULL_DISK, *args], cwd=tmp_path, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    try:
        _, stderr = child.communicate(timeout=120)  # returns once every holder of the pipes has exited
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)  # the child and what it left behind
        child.communicate()
        pytest.fail("prepare hung after the write failure (processes left holding its output)")
    assert child.returncode == 2, stderr[-3000:]
    assert stderr.splitlines()[-1] == (
        f"facegan prepare: error: cannot write {out}: No space left on device; free some space or write "
        "elsewhere. The shards in it were removed"
    )
    assert out.is_dir() and list(out.iterdir()) == []  # no partial chunk keeps the disk full


def test_a_failed_metadata_write_removes_the_chunks_and_names_the_folder(tmp_path, monkeypatch):
    noise_images(tmp_path / "faces", 6, sizes=((32, 32),))

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("facegan.data.shards.atomic_write", full_disk)
    with pytest.raises(
        WriteError, match=r"cannot write .*out: No space left on device.*were removed"
    ) as caught:
        prepare_shards(str(tmp_path / "faces"), tmp_path / "out", 16, num_workers=1, **ONLY_TRAIN)
    assert str(tmp_path / "out" / META_NAME) not in str(caught.value)  # the folder, not a file in it
    assert list((tmp_path / "out").iterdir()) == []


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """12 images at 16 px, 3 a chunk: train/chunk-0-0.bin ... chunk-0-3.bin (copy before damaging)."""
    tmp = tmp_path_factory.mktemp("prepared")
    noise_images(tmp / "faces", 12, sizes=((32, 32),))
    prepare_shards(str(tmp / "faces"), tmp / "shards", 16, num_workers=1, chunk_size=3, **ONLY_TRAIN)
    return tmp / "shards"


def copy_of(prepared: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(prepared, tmp_path / "shards"))


def data_module(root: Path, **kwargs) -> FaceDataModule:
    return FaceDataModule(str(root), image_size=16, batch_size=3, num_workers=0, **kwargs)


def test_prepare_records_each_chunks_size_and_sha256(prepared):
    meta = json.loads((prepared / META_NAME).read_text())
    chunks = meta["splits"]["train"]["chunks"]
    files = sorted((prepared / "train").glob("chunk-*.bin"))
    assert [chunk["file"] for chunk in chunks] == [file.name for file in files] and len(files) == 4
    for chunk, file in zip(chunks, files, strict=True):
        data = file.read_bytes()
        assert chunk == {
            "file": file.name,
            "items": 3,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    assert meta["splits"]["val"]["chunks"] == []


def overwrite_pixels(chunk: Path) -> None:
    """The last 100 bytes (pixels of the chunk's last image) set to zero: same size, other pixels."""
    data = bytearray(chunk.read_bytes())
    data[-100:] = bytes(100)
    chunk.write_bytes(bytes(data))


def test_an_overwritten_chunk_is_refused_before_training_on_it(prepared, tmp_path):
    root = copy_of(prepared, tmp_path)
    overwrite_pixels(root / "train" / "chunk-0-2.bin")
    data = data_module(root)
    data.setup()  # same size: only its digest tells
    expected = r"chunk .*train/chunk-0-2\.bin is not the one prepare wrote \(its SHA-256 differs.*prepare"
    with pytest.raises(DamagedShardsError, match=expected):
        list(data.train_dataloader())
    rows = data.real_dataset("train")
    assert rows[5].shape == (3, 16, 16)  # chunk 1: intact
    with pytest.raises(DamagedShardsError, match=expected):
        rows[7]  # row 7 lies in chunk 2


def test_each_chunk_is_hashed_once_then_read_at_full_speed(prepared, tmp_path, monkeypatch):
    root = copy_of(prepared, tmp_path)
    hashed = []
    original = streaming.file_sha256
    monkeypatch.setattr(
        streaming, "file_sha256", lambda path: hashed.append(Path(path).name) or original(path)
    )
    data = data_module(root)
    data.setup()
    for _ in range(2):  # two epochs
        assert sum(len(batch) for batch in data.train_dataloader()) == 12
    rows = data.real_dataset("train")
    assert all(rows[i].shape == (3, 16, 16) for i in range(12))
    assert sorted(hashed) == [f"chunk-0-{i}.bin" for i in range(4)]


def test_shards_prepared_without_digests_load_with_a_warning(prepared, tmp_path):
    root = copy_of(prepared, tmp_path)
    meta = json.loads((root / META_NAME).read_text())
    for info in meta["splits"].values():
        del info["chunks"]
    (root / META_NAME).write_text(json.dumps(meta))
    overwrite_pixels(root / "train" / "chunk-0-2.bin")  # goes unnoticed: nothing to compare with
    data = data_module(root)
    with pytest.warns(UserWarning, match=r"before facegan recorded each chunk's SHA-256.*prepare"):
        data.setup()
    batch = next(iter(data.train_dataloader()))
    assert batch.dtype == torch.uint8 and batch.shape == (3, 3, 16, 16)
    (root / "train" / "chunk-0-1.bin").unlink()  # presence is still checked, from index.json
    with pytest.warns(UserWarning), pytest.raises(DamagedShardsError, match=r"chunk-0-1\.bin is missing"):
        data_module(root).setup()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda root: (root / "train" / "chunk-0-1.bin").unlink(),
            r"chunk .*train/chunk-0-1\.bin is missing",
        ),
        (
            lambda root: (root / "train" / "chunk-0-1.bin").write_bytes(b""),
            r"chunk .*chunk-0-1\.bin is empty",
        ),
        (
            lambda root: (root / "train" / "chunk-0-1.bin").write_bytes(b"short"),
            r"chunk .*chunk-0-1\.bin has 5 bytes, not the \d+ prepare wrote",
        ),
        (lambda root: (root / "train" / "index.json").unlink(), r"train/index\.json is missing"),
    ],
    ids=["deleted", "emptied", "truncated", "no-index"],
)
def test_a_missing_or_cut_chunk_is_named_at_setup(prepared, tmp_path, damage, message):
    """Before: "not a missing object" (for a missing one), "cannot mmap an empty file"."""
    root = copy_of(prepared, tmp_path)
    damage(root)
    with pytest.raises(DamagedShardsError, match=message + r".*is damaged: run `python -m facegan prepare"):
        data_module(root).setup()


def edit_meta(edit):
    def damage(root: Path) -> None:
        meta = json.loads((root / META_NAME).read_text())
        (root / META_NAME).write_text(json.dumps(edit(meta)))

    return damage


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (edit_meta(lambda meta: [meta]), "it holds a JSON list, not an object"),
        (edit_meta(lambda meta: {k: v for k, v in meta.items() if k != "splits"}), "`splits` is missing"),
        (
            edit_meta(lambda meta: {**meta, "image_size": "16"}),
            "`image_size` is '16', not a positive integer",
        ),
        (
            edit_meta(lambda meta: {**meta, "crop_size": 0}),
            "`crop_size` is 0, not a positive integer or null",
        ),
        (
            edit_meta(lambda meta: {**meta, "splits": {**meta["splits"], "val": None}}),
            "`splits.val` is missing or not an object",
        ),
        (
            edit_meta(
                lambda meta: {
                    **meta,
                    "splits": {**meta["splits"], "train": {**meta["splits"]["train"], "count": 99}},
                }
            ),
            "`splits.train.chunks` hold other than its 99 images",
        ),
    ],
    ids=["list", "no-splits", "string-size", "zero-crop", "split-null", "count"],
)
def test_a_damaged_metadata_file_is_named_with_what_is_wrong(prepared, tmp_path, damage, message):
    """Before: AttributeError, KeyError, or "prepared at image_size=16 ... but image_size=16 were asked"."""
    root = copy_of(prepared, tmp_path)
    damage(root)
    with pytest.raises(ValueError) as caught:
        data_module(root).setup()
    text = str(caught.value)
    assert text.startswith(f"FaceDataModule: {root / META_NAME} is damaged: ")
    assert message in text
    assert "prepare the shards again (python -m facegan prepare" in text
    assert raised_by_facegan(caught.value)  # so the CLI prints this one line, no traceback
