"""Bad data, swept: each kind of broken file gets a clear error naming it, or a counted skip."""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import warnings
import zlib
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from PIL import Image

from facegan import FaceGAN
from facegan.data import BadImageError
from facegan.data.decode import NoImagesError
from tests.test_datamodule import data, face, write_images

REPO = Path(__file__).resolve().parents[1]


def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    face(width=64, height=64).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def bomb_png() -> bytes:
    """A 100-byte PNG whose header claims 30000x30000 pixels (a decompression bomb's size)."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    png = bytearray(buffer.getvalue())
    ihdr = bytearray(png[12:29])  # b"IHDR" + 13 bytes of header data
    ihdr[4:12] = struct.pack(">II", 30000, 30000)
    png[12:29] = ihdr
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))  # a valid chunk checksum
    return bytes(png)


BAD_FILES = {
    "truncated.jpg": lambda: jpeg_bytes()[: len(jpeg_bytes()) // 2],
    "zero_bytes.jpg": lambda: b"",
    "text.jpg": lambda: b"name,age\nada,36\n",
    "bomb.png": bomb_png,
}


def folder_with(tmp_path: Path, bad_name: str, content: bytes) -> Path:
    write_images(tmp_path, ["good1.png", "good2.png", "good3.png"])
    (tmp_path / bad_name).write_bytes(content)
    return tmp_path


def only_train(root: Path, **kwargs):
    dm = data(root, **{"val_fraction": 0.0, "test_fraction": 0.0, "batch_size": 4, "flip": False, **kwargs})
    dm.setup("fit")
    return dm


@pytest.mark.parametrize("name", BAD_FILES)
def test_each_bad_file_fails_naming_it_or_is_skipped_and_counted(name, tmp_path):
    root = folder_with(tmp_path, name, BAD_FILES[name]())
    with pytest.raises(BadImageError, match=rf"cannot read image .*{name}: .*skip_bad_images"):
        list(only_train(root).train_dataloader())
    dm = only_train(root, skip_bad_images=True, max_skipped_fraction=1.0)
    with pytest.warns(UserWarning, match=rf"skipped: cannot read image .*{name}"):
        batches = list(dm.train_dataloader())
    assert [b.shape for b in batches] == [(3, 3, 16, 16)]
    assert dm.skipped_images == 1


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    root = folder_with(tmp_path, "bomb.png", bomb_png())
    dm = only_train(root)
    index = dm.datasets["train"].source.names.index("bomb.png")
    with pytest.raises(BadImageError, match=r"bomb\.png: DecompressionBombError: .*900000000 pixels"):
        dm.datasets["train"].load(index)


def test_symlink_loops_neither_hang_nor_crash(tmp_path):
    write_images(tmp_path, ["good1.png", "sub/good2.png"])
    (tmp_path / "sub" / "loop").symlink_to(tmp_path, target_is_directory=True)  # folder loop: not followed
    (tmp_path / "a.jpg").symlink_to(tmp_path / "b.jpg")  # file loop: a -> b -> a
    (tmp_path / "b.jpg").symlink_to(tmp_path / "a.jpg")
    dm = only_train(tmp_path, batch_size=2, skip_bad_images=True, max_skipped_fraction=1.0)
    assert dm.datasets["train"].source.names == ["a.jpg", "b.jpg", "good1.png", "sub/good2.png"]
    with pytest.warns(UserWarning, match=r"a\.jpg: .*Too many levels of symbolic links"):
        batches = list(dm.train_dataloader())
    assert sum(len(b) for b in batches) == 2 and dm.skipped_images == 2
    with pytest.raises(BadImageError, match=r"cannot read image .*a\.jpg: OSError: .*symbolic links"):
        only_train(tmp_path, batch_size=2).datasets["train"].load(0)


def test_non_utf8_file_names_load_and_are_named_in_errors(tmp_path):
    good = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes: not UTF-8, surrogate-escaped by Python
    bad = os.fsdecode(b"na\xefve.jpg")
    write_images(tmp_path, [good, "good2.png"])
    (tmp_path / bad).write_bytes(b"not an image")
    dm = only_train(tmp_path, batch_size=2)
    dataset = dm.datasets["train"]
    assert dataset[dataset.source.names.index(good)].shape == (3, 16, 16)
    assert len(dm.fingerprint("train")["files"]) == 64  # hashes the names' bytes without failing
    with pytest.raises(BadImageError, match="cannot read image .*na\udcefve.jpg") as info:
        dataset.load(dataset.source.names.index(bad))
    assert "na\\udcefve.jpg" in str(info.value).encode("utf-8", "backslashreplace").decode()


def read_as_nobody(dm) -> str:
    """Run the loader in a forked child that dropped root for `nobody`; return its error message."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no exec, so nothing else (interpreter, packages) needs to be readable
        status = 3
        try:
            os.setgid(65534)
            os.setuid(65534)
            try:
                list(dm.train_dataloader())
                status = 2
            except BadImageError as error:
                os.write(write_end, str(error).encode("utf-8", "backslashreplace"))
                status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"the unreadable file was read or setuid failed: {status}"
    return message


def test_file_without_read_permission_fails_naming_it(tmp_path):
    folder = Path(tempfile.mkdtemp(prefix="facegan-perm-"))  # world-readable: also for `nobody`
    try:
        folder.chmod(0o755)
        write_images(folder, ["good.png", "locked.png"])
        (folder / "good.png").chmod(0o644)
        (folder / "locked.png").chmod(0o000)
        dm = only_train(folder, batch_size=2)
        if os.geteuid() != 0:
            with pytest.raises(BadImageError, match=r"locked\.png: PermissionError"):
                list(dm.train_dataloader())
        else:  # root reads any file: check as the unprivileged user `nobody`
            message = read_as_nobody(dm)
            assert "cannot read image" in message and "locked.png: PermissionError" in message, message
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def fit(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "WANDB_MODE": "offline"}
    command = [sys.executable, "-m", "facegan", "fit", "--config", str(REPO / "configs/debug.yaml"), *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_a_bad_image_in_a_loader_worker_ends_the_cli_with_one_clear_line(tmp_path):
    images = folder_with(tmp_path / "faces", "truncated.jpg", BAD_FILES["truncated.jpg"]())
    common = ["--data.root", str(images), "--data.num_workers", "1", "--data.batch_size", "2",
              "--data.val_fraction", "0", "--data.test_fraction", "0", "--data.image_size", "32"]  # fmt: skip
    result = fit(common, tmp_path)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("facegan: error: cannot read image ") and "truncated.jpg" in last, result.stderr
    assert "skip_bad_images" in last
    assert "Traceback" not in result.stderr and "DataLoader worker" not in result.stderr
    # With skipping on, the same data trains, warning about the file.
    result = fit([*common, "--data.skip_bad_images", "true", "--data.max_skipped_fraction", "1"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "truncated.jpg" in result.stderr


CONFIG_MISTAKES = {
    "unknown architecture": (["--model.arch", "stylegan9"], "arch", "'dcgan', 'keras', 'resnet'"),
    "unsupported image_size": (["--data.image_size", "48"], "image_size", "(32, 64, 128)"),
    "batch larger than data": (["--data.batch_size", "100"], "batch_size", "larger than the training set"),
    "num_fake < 2": (
        ["--trainer.callbacks+=facegan.FIDMonitor", "--trainer.callbacks.num_fake", "1"],
        "num_fake",
        "an integer >= 2",
    ),
}


@pytest.mark.parametrize("mistake", CONFIG_MISTAKES)
def test_config_mistakes_fail_before_training_naming_setting_and_allowed_values(mistake, tmp_path):
    args, setting, allowed = CONFIG_MISTAKES[mistake]
    result = fit([*args, "--trainer.default_root_dir", str(tmp_path)], tmp_path)
    assert result.returncode != 0
    assert setting in result.stderr and allowed in result.stderr, result.stderr[-3000:]
    assert not list(tmp_path.rglob("*.ckpt"))  # nothing trained, nothing written


def test_a_run_where_every_image_is_skipped_fails_instead_of_saving_an_untrained_model(tmp_path):
    images = tmp_path / "faces"
    write_images(images, [f"{i}.png" for i in range(4)], width=40, height=50)
    args = ["--data.root", str(images), "--data.batch_size", "2", "--data.val_fraction", "0",
            "--data.test_fraction", "0", "--data.image_size", "32", "--data.skip_bad_images", "true",
            "--data.max_skipped_fraction", "1", "--data.crop_size", "60", "--trainer.default_root_dir", str(tmp_path)]  # fmt: skip
    result = fit(args, tmp_path)  # crop_size 60 > every 40x50 image: each one is skipped
    assert result.returncode == 1, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("facegan: error: FaceGAN: epoch 0 trained on no images"), result.stderr[-2000:]
    assert "crop_size" in last and "Traceback" not in result.stderr
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob("samples/*.png"))


class DeleteTheImages(L.Callback):
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == 0:
            shutil.rmtree(self.folder)


@pytest.mark.parametrize("val_fraction", [0.0, 0.25])
def test_a_dataset_that_vanishes_mid_run_stops_with_a_clear_error(tmp_path, val_fraction):
    images = tmp_path / "faces"
    write_images(images, [f"{i}.png" for i in range(8)])
    dm = data(
        images,
        image_size=32,
        batch_size=2,
        val_fraction=val_fraction,
        test_fraction=0.0,
        skip_bad_images=True,
        max_skipped_fraction=1.0,
    )
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    gan = FaceGAN(image_size=32, latent_dim=8, g_channels=4, d_channels=4)
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=3, logger=False, enable_progress_bar=False, num_sanity_val_steps=0,
        callbacks=[DeleteTheImages(images), checkpoints], limit_val_batches=1.0 if val_fraction else 0,
    )  # fmt: skip
    with (
        pytest.warns(UserWarning, match="skipped"),
        pytest.raises(NoImagesError, match="epoch 1 trained on no images"),
    ):
        trainer.fit(gan, dm)
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["epoch"] == 0  # epoch 0's, kept


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data.batch_size", "0"], "FaceDataModule: `batch_size` must be >= 1, but got 0"),
        (["--data.root", ""], "FaceDataModule: `root` is empty"),
        (["--model.n_disc_steps", "0"], "FaceGAN: `n_disc_steps` must be an integer >= 1"),
    ],
    ids=["batch_size", "empty-root", "n_disc_steps"],
)
def test_setting_mistakes_end_the_cli_with_one_line(args, message, tmp_path):
    result = fit([*args, "--trainer.default_root_dir", str(tmp_path)], tmp_path)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"facegan: error: {message}"), result.stderr[-2000:]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("workers", [0, 2])
def test_skipped_images_counts_files_not_skips_per_epoch(tmp_path, workers):
    write_images(tmp_path, ["a.png", "b.png", "c.png"])
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    dm = only_train(
        tmp_path, batch_size=2, skip_bad_images=True, max_skipped_fraction=1.0, num_workers=workers
    )
    with warnings.catch_warnings():  # warned in each epoch (in the worker, when there is one)
        warnings.simplefilter("ignore")
        for _ in range(3):  # three epochs, the same bad file skipped in each
            assert sum(len(batch) for batch in dm.train_dataloader()) == 3
    assert dm.skipped_images == 1


def test_more_skipped_files_than_the_set_fraction_fail_naming_the_setting(tmp_path):
    write_images(tmp_path, [f"{i}.png" for i in range(9)])
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")  # 1 of 10: exactly the default 0.1 passes
    dm = only_train(tmp_path, batch_size=2, skip_bad_images=True)
    with pytest.warns(UserWarning, match="skipped"):
        assert sum(len(batch) for batch in dm.train_dataloader()) == 9  # the 9 readable ones
    (tmp_path / "worse.jpg").write_bytes(b"not a jpeg either")  # 2 of 11 > 0.1
    dm = only_train(tmp_path, batch_size=2, skip_bad_images=True)
    message = r"2 of the 11 images of this split are unreadable, more than max_skipped_fraction=0\.1"
    with pytest.warns(UserWarning, match="skipped"), pytest.raises(BadImageError, match=message) as error:
        list(dm.train_dataloader())
    assert "--data.max_skipped_fraction" in str(error.value)
    with pytest.raises(ValueError, match=r"`max_skipped_fraction` must be in \[0, 1\]"):
        data(tmp_path, max_skipped_fraction=1.5)
