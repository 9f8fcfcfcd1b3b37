"""Hostile files and archives: only regular files of plausible size are read, nothing blocks or
inflates without bound, damaged or ambiguous archives say so, and pixels come out upright."""

from __future__ import annotations

import io
import os
import re
import struct
import threading
import tracemalloc
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image, JpegImagePlugin

from facegan import FaceDataModule
from facegan.data import BadImageError
from facegan.data.decode import preprocess, to_rgb
from tests.test_bad_data import only_train
from tests.test_datamodule import face, write_images


def load_all(dm: FaceDataModule, timeout: float = 60.0) -> list:
    """Every training item, in a thread that must finish in time (a blocking read fails the test)."""
    result: list = []
    errors: list = []

    def run():
        try:
            result.extend(dm.datasets["train"][i] for i in range(len(dm.datasets["train"])))
        except Exception as error:  # re-raised below, in the test's thread
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "reading the images blocked"
    if errors:
        raise errors[0]
    return result


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda path: os.mkfifo(path), "not a regular file (a FIFO)"),
        (lambda path: path.symlink_to("/dev/zero"), "not a regular file (a character device)"),
    ],
    ids=["fifo", "symlink-to-dev-zero"],
)
def test_only_regular_files_are_read_and_nothing_blocks(tmp_path, make, reason):
    write_images(tmp_path, ["a.png", "b.png", "c.png"])
    make(tmp_path / "x.jpg")
    with pytest.raises(BadImageError, match=rf"x\.jpg: OSError: {re.escape(reason)}"):
        load_all(only_train(tmp_path, batch_size=1))
    dm = only_train(tmp_path, batch_size=1, skip_bad_images=True, max_skipped_fraction=1.0)
    with pytest.warns(UserWarning, match="skipped"):
        items = load_all(dm)
    assert sum(item is None for item in items) == 1 and dm.skipped_images == 1


def test_a_folder_named_like_an_image_is_not_an_image(tmp_path):
    write_images(tmp_path, ["a.png", "b.png"])
    (tmp_path / "x.jpg").mkdir()
    assert len(only_train(tmp_path, batch_size=1).datasets["train"]) == 2


def test_a_file_larger_than_any_image_is_refused_unread(tmp_path):
    write_images(tmp_path, ["a.png", "b.png", "c.png"])
    with open(tmp_path / "huge.jpg", "wb") as file:  # sparse: 300 MiB that take no disk
        file.truncate(300 << 20)
    tracemalloc.start()
    with pytest.raises(
        BadImageError, match=r"huge\.jpg: OSError: 314572800 bytes, larger than any plausible"
    ):
        load_all(only_train(tmp_path, batch_size=1))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 50 << 20  # never read into memory


def zip_of(path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            zf.writestr(name, content)


def png_bytes(**kwargs) -> bytes:
    buffer = io.BytesIO()
    face(**kwargs).save(buffer, format="PNG")
    return buffer.getvalue()


def peak_bytes_refusing(archive, message: str) -> int:
    """Peak Python memory while reading ``archive`` ends in a ``BadImageError`` matching ``message``."""
    tracemalloc.start()
    try:
        with pytest.raises(BadImageError, match=message):
            load_all(only_train(archive, batch_size=1))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_zip_member_that_inflates_beyond_any_image_is_refused_before_inflating(tmp_path):
    good = {f"{i}.png": png_bytes() for i in range(3)}
    zip_of(tmp_path / "faces.zip", {**good, "bomb.png": bytes(300 << 20)})  # 300 MiB of zeros, ~300 KB
    assert (tmp_path / "faces.zip").stat().st_size < 2 << 20
    peak = peak_bytes_refusing(
        tmp_path / "faces.zip", r"bomb\.png: OSError: 314572800 bytes, larger than any plausible"
    )
    assert peak < 50 << 20


def test_a_zip_member_that_lies_about_its_size_is_inflated_in_bounded_steps(tmp_path):
    """Its headers declare 1,000 bytes; it inflates to 64 MiB. zipfile's ``read()`` inflated all of it in
    one step (2x that at peak; 2.9 GB for a 2 GiB member) before its CRC check failed."""
    zip_of(
        tmp_path / "faces.zip", {**{f"{i}.png": png_bytes() for i in range(3)}, "bomb.png": bytes(64 << 20)}
    )
    with zipfile.ZipFile(tmp_path / "faces.zip") as zf:
        local = zf.getinfo("bomb.png").header_offset
    data = bytearray((tmp_path / "faces.zip").read_bytes())
    central = data.rfind(b"PK\x01\x02")  # the last member's entry in the central directory
    assert data[local : local + 4] == b"PK\x03\x04" and data[central + 46 : central + 54] == b"bomb.png"
    struct.pack_into("<I", data, local + 22, 1000)  # uncompressed size in its local header ...
    struct.pack_into("<I", data, central + 24, 1000)  # ... and in the central directory: 1,000 bytes
    (tmp_path / "faces.zip").write_bytes(bytes(data))
    with zipfile.ZipFile(tmp_path / "faces.zip") as zf:
        assert zf.getinfo("bomb.png").file_size == 1000
    peak = peak_bytes_refusing(
        tmp_path / "faces.zip", r"faces\.zip:bomb\.png: BadZipFile: Bad CRC-32 for file 'bomb\.png'"
    )
    assert peak < 16 << 20  # one step (1 MiB) at a time, not the 64 MiB


def test_a_bzip2_member_is_refused_unread_naming_the_method(tmp_path):
    """bzip2 cannot be inflated in bounded steps (177 bytes of it are 200 MiB of zeros)."""
    with zipfile.ZipFile(tmp_path / "faces.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(3):
            zf.writestr(f"{i}.png", png_bytes())
        zf.writestr("b.png", png_bytes(), compress_type=zipfile.ZIP_BZIP2)
    with pytest.raises(
        BadImageError, match=r"faces\.zip:b\.png: OSError: compressed with method 12 .*deflate"
    ):
        load_all(only_train(tmp_path / "faces.zip", batch_size=1))


def test_duplicate_member_names_are_an_error(tmp_path):
    with pytest.warns(UserWarning, match="Duplicate name"):
        zip_of(tmp_path / "faces.zip", {"a.png": png_bytes()})
        with zipfile.ZipFile(tmp_path / "faces.zip", "a") as zf:
            zf.writestr("a.png", png_bytes(value=90))
    with pytest.raises(
        ValueError, match=r"faces\.zip' holds 1 image names more than once \(e\.g\. 'a\.png'\)"
    ):
        only_train(tmp_path / "faces.zip", batch_size=1)


def test_a_truncated_zip_says_it_is_damaged(tmp_path):
    zip_of(tmp_path / "faces.zip", {f"{i}.png": png_bytes() for i in range(4)})
    data = (tmp_path / "faces.zip").read_bytes()
    (tmp_path / "faces.zip").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"zip archive .*faces\.zip' is damaged"):
        only_train(tmp_path / "faces.zip", batch_size=1)


def test_an_image_that_vanishes_after_setup_is_named_or_skipped(tmp_path):
    write_images(tmp_path, ["a.png", "b.png", "c.png"])
    dm = only_train(tmp_path, batch_size=1)
    (tmp_path / "b.png").unlink()
    with pytest.raises(BadImageError, match=r"b\.png: FileNotFoundError"):
        load_all(dm)


def test_exif_orientation_is_honoured(tmp_path):
    upright = face(width=40, height=50)  # left half dark
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # as a phone stores it, turned ...
    exif = Image.Exif()
    exif[0x0112] = 6  # ... with "rotate 90 clockwise to display"
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif, quality=100)
    with Image.open(path) as image:
        result = preprocess(image, 16, None, str(path))
    reference = preprocess(upright, 16, None, "upright")
    assert (result.int() - reference.int()).abs().max() <= 8  # JPEG noise only: not turned sideways
    assert result[:, :, :8].float().mean() < result[:, :, 8:].float().mean()  # dark half on the left


def test_transparency_is_composited_on_white():
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[:2, :, :] = (10, 20, 30, 255)  # top half opaque, bottom half fully transparent
    rgba[2:, :, :3] = (0, 0, 0)
    out = np.asarray(to_rgb(Image.fromarray(rgba, "RGBA")))
    assert (out[:2] == (10, 20, 30)).all() and (out[2:] == 255).all()


def test_16_bit_images_are_rescaled_exactly_with_memory_bounded_by_the_image():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 65536, (2048, 2048), dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    tracemalloc.start()
    out = np.asarray(to_rgb(image))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    expected = np.floor(values.astype(np.float64) / 65535 * 255 + 0.5).astype(np.uint8)
    assert (out[..., 0] == expected).all()
    assert peak < 8 * values.size  # 8 bytes per pixel; a float64 conversion needs 16 and more
    assert torch.equal(torch.from_numpy(out[..., 0]), torch.from_numpy(out[..., 2]))


@pytest.mark.parametrize("crop", [None, 3000])
def test_a_huge_jpeg_is_decoded_at_a_reduced_scale_with_the_same_picture(tmp_path, crop, monkeypatch):
    """A JPEG over 16.7 MP is drafted (decoded at 1/2..1/8 scale, twice the output resolution kept)."""
    ys, xs = np.mgrid[0:4400, 0:4200]
    pixels = np.stack([xs * 255 // 4200, ys * 255 // 4400, (xs + ys) * 255 // 8600], -1).astype(np.uint8)
    path = tmp_path / "huge.jpg"
    Image.fromarray(pixels).save(path, quality=90)
    reference = preprocess(Image.fromarray(pixels), 64, crop, "reference")  # full resolution
    sizes = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = original(self, mode, size)
        sizes.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    with Image.open(path) as image:
        result = preprocess(image, 64, crop, str(path))
    assert sizes and max(sizes[0]) < 4400 and min(sizes[0]) >= 128  # decoded smaller, >= 2x the output
    assert result.shape == (3, 64, 64)
    assert (result.int() - reference.int()).abs().float().mean() < 2.0  # the same picture, same crop
