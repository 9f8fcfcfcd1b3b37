import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facegan import FaceDataModule
from facegan.data import BadImageError
from facegan.data.cache import DeviceBatches
from facegan.images import from_uint8
from tests.conftest import CELEBA_SAMPLE


def face(width: int = 40, height: int = 50, mode: str = "RGB", value: int = 200) -> Image.Image:
    """A test image: left half dark, right half bright (so crops and flips are visible)."""
    array = np.full((height, width, 3), value, dtype=np.uint8)
    array[:, : width // 2] = 20
    return Image.fromarray(array).convert(mode)


def write_images(folder: Path, names: list[str], **kwargs) -> list[Path]:
    paths = []
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        face(**kwargs).save(path)
        paths.append(path)
    return paths


def data(root, **kwargs) -> FaceDataModule:
    return FaceDataModule(
        **{
            "root": None if root is None else str(root),
            "image_size": 16,
            "batch_size": 2,
            "num_workers": 0,
            **kwargs,
        }
    )


def test_procedural_default_needs_no_files_and_batches_are_in_range():
    dm = data(None, num_procedural=32, batch_size=8)
    dm.setup("fit")
    assert dm.kind == "procedural"
    loader = dm.train_dataloader()  # the default: the faces rendered once, held on the device as uint8
    assert isinstance(loader, DeviceBatches) and loader.images.shape == (32, 3, 16, 16)
    batch = dm.on_after_batch_transfer(next(iter(loader)), 0)  # as the model receives it
    assert batch.shape == (8, 3, 16, 16) and batch.dtype == torch.float32
    assert batch.min() >= -1 and batch.max() <= 1
    assert len(dm.datasets["val"]) == 8  # at least one batch held out, from another seed
    assert not torch.equal(dm.real_dataset("val")[0], dm.real_dataset("train")[0])


def test_folder_source_is_recursive_and_reads_every_format(tmp_path):
    names = ["a.jpg", "sub/b.png", "sub/deeper/c.webp", "d.BMP", "e.jpeg"]
    write_images(tmp_path, names)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "._a.jpg").write_bytes(b"macOS resource fork")
    dm = data(tmp_path, val_fraction=0.0, test_fraction=0.0, flip=False)
    dm.setup("fit")
    assert dm.kind == "folder"
    assert sorted(dm.datasets["train"].source.names) == sorted(names)
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (2, 3, 16, 16)


def test_crop_resize_scale_and_mixed_modes(tmp_path):
    # 40x50 image, crop to the width (40x40), resize to 16: left half dark, right half bright.
    for i, mode in enumerate(["RGB", "L", "RGBA", "P", "CMYK"]):
        face(mode=mode).save(tmp_path / f"{i}.{'jpg' if mode == 'CMYK' else 'png'}")
    Image.fromarray((np.ones((50, 40)) * 50000).astype(np.uint16)).save(tmp_path / "16bit.png")
    dm = data(tmp_path, val_fraction=0.0, test_fraction=0.0, flip=False)
    dm.setup("fit")
    dataset = dm.datasets["train"]
    by_name = {name: dataset[i] for i, name in enumerate(dataset.source.names)}
    for name, image in by_name.items():
        assert image.shape == (3, 16, 16), name
        if name != "16bit.png":
            assert image[:, :, :6].mean() < -0.7 and image[:, :, -6:].mean() > 0.4, name
    # 16-bit values are rescaled (50000 / 65535 * 255 = 195), not clipped to 255.
    assert by_name["16bit.png"].mean().item() == pytest.approx(195 / 127.5 - 1, abs=0.02)


def test_explicit_crop_size_and_flip(tmp_path):
    write_images(tmp_path, ["a.png"], width=40, height=50)
    flipped = data(tmp_path, val_fraction=0.0, test_fraction=0.0, batch_size=1, crop_size=20)
    flipped.setup("fit")
    torch.manual_seed(0)
    images = torch.stack([flipped.datasets["train"][0] for _ in range(20)])
    lefts = images[:, :, :, :4].mean(dim=(1, 2, 3))
    assert (lefts < 0).any() and (lefts > 0).any()  # both orientations occur
    with pytest.raises(BadImageError, match=r"a.png: image is 40x50, smaller than `crop_size`=64"):
        bad = data(tmp_path, val_fraction=0.0, test_fraction=0.0, batch_size=1, crop_size=64)
        bad.setup("fit")
        bad.datasets["train"][0]


def test_zip_of_images_is_read_without_extraction(tmp_path):
    folder = tmp_path / "src"
    write_images(folder, ["x/a.jpg", "x/b.png", "c.jpg"])
    archive = tmp_path / "faces.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in folder.rglob("*.*"):
            zf.write(path, path.relative_to(folder).as_posix())
        zf.writestr("__MACOSX/x/._a.jpg", b"junk")
    dm = data(archive, val_fraction=0.0, test_fraction=0.0)
    dm.setup("fit")
    assert dm.kind == "zip" and dm.datasets["train"].source.names == ["c.jpg", "x/a.jpg", "x/b.png"]
    loader = FaceDataModule(
        root=str(archive), image_size=16, batch_size=3, num_workers=1, val_fraction=0.0, test_fraction=0.0
    ).train_dataloader()  # zip handles reopen per worker process
    assert next(iter(loader)).shape == (3, 3, 16, 16)


def make_celeba(root: Path, as_zip: bool) -> None:
    names = [f"{i:06d}.jpg" for i in range(1, 11)]
    write_images(root / "img_align_celeba", names, width=36, height=44)
    codes = [0] * 6 + [1] * 2 + [2] * 2
    (root / "list_eval_partition.txt").write_text(
        "".join(f"{n} {c}\n" for n, c in zip(names, codes, strict=True))
    )
    if as_zip:
        with zipfile.ZipFile(root / "img_align_celeba.zip", "w") as zf:
            for name in names:
                zf.write(root / "img_align_celeba" / name, f"img_align_celeba/{name}")
        for name in names:
            (root / "img_align_celeba" / name).unlink()
        (root / "img_align_celeba").rmdir()


@pytest.mark.parametrize("as_zip", [False, True])
def test_celeba_layout_uses_the_official_partitions(tmp_path, as_zip):
    make_celeba(tmp_path, as_zip)
    dm = data(tmp_path)
    dm.setup("fit")
    assert dm.kind == "celeba"
    sizes = {split: len(ds) for split, ds in dm.datasets.items()}
    assert sizes == {"train": 6, "val": 2, "test": 2}
    names = dm.datasets["val"].source.names
    assert [names[i].rsplit("/", 1)[-1] for i in dm.datasets["val"].indices] == ["000007.jpg", "000008.jpg"]
    assert next(iter(dm.val_dataloader())).shape == (2, 3, 16, 16)


def test_folder_without_partition_gets_a_seeded_split(tmp_path):
    write_images(tmp_path, [f"{i}.png" for i in range(20)])
    splits = []
    for _ in range(2):
        dm = data(tmp_path, val_fraction=0.1, test_fraction=0.2, split_seed=3)
        dm.setup("fit")
        splits.append({s: d.indices for s, d in dm.datasets.items()})
    assert splits[0] == splits[1]
    assert {s: len(i) for s, i in splits[0].items()} == {"val": 2, "test": 4, "train": 14}
    assert sorted(sum(splits[0].values(), [])) == list(range(20))


@pytest.mark.skipif(not CELEBA_SAMPLE.is_dir(), reason="../shared/data/celeba-sample is absent")
def test_real_celeba_sample():
    dm = FaceDataModule(root=str(CELEBA_SAMPLE), image_size=64, batch_size=16, num_workers=0)
    dm.setup("fit")
    assert dm.kind == "celeba"
    assert len(dm.datasets["train"]) == 5000  # every sample image is in partition 0 (train)
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)  # as the model receives it
    assert batch.shape == (16, 3, 64, 64) and -1 <= batch.min() < 0 < batch.max() <= 1
    assert dm.val_dataloader() == []  # no validation partition in the sample: validation is skipped


def test_missing_root_names_the_path_and_what_was_expected(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(
        FileNotFoundError, match=r"`root` '.*nowhere' does not exist; expected a folder of images"
    ):
        data(missing).setup("fit")


def test_folder_without_images_fails_at_setup(tmp_path):
    (tmp_path / "readme.txt").write_text("no faces here")
    with pytest.raises(
        FileNotFoundError, match=r"no images found in '.*' \(kind 'folder'\); expected files ending"
    ):
        data(tmp_path).setup("fit")


def test_batch_larger_than_training_set_fails_at_setup(tmp_path):
    write_images(tmp_path, ["a.png", "b.png"])
    with pytest.raises(ValueError, match=r"`batch_size` \(8\) is larger than the training set \(2 images"):
        data(tmp_path, batch_size=8, val_fraction=0.0, test_fraction=0.0).setup("fit")


def corrupt_folder(tmp_path: Path) -> Path:
    write_images(tmp_path, ["good1.png", "good2.png", "good3.png"])
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    return tmp_path


def test_corrupt_image_raises_naming_the_file(tmp_path):
    dm = data(corrupt_folder(tmp_path), val_fraction=0.0, test_fraction=0.0, batch_size=4)
    dm.setup("fit")
    with pytest.raises(BadImageError, match=r"cannot read image .*broken\.jpg: .*skip_bad_images"):
        list(dm.train_dataloader())


def test_corrupt_image_is_skipped_with_a_warning_and_counted(tmp_path):
    dm = data(
        corrupt_folder(tmp_path),
        val_fraction=0.0,
        test_fraction=0.0,
        batch_size=4,
        skip_bad_images=True,
        max_skipped_fraction=1.0,
        device_resident=False,  # loader workers decode every epoch
    )
    dm.setup("fit")
    with pytest.warns(UserWarning, match=r"skipped: cannot read image .*broken\.jpg"):
        batches = list(dm.train_dataloader())
    assert [b.shape[0] for b in batches] == [3]  # the bad image is dropped from its batch
    assert dm.skipped_images == 1


def test_bad_arguments_name_the_setting():
    with pytest.raises(ValueError, match=r"`source` must be one of \('auto', 'procedural'"):
        FaceDataModule(source="imagenet")
    with pytest.raises(ValueError, match=r"`val_fraction` must be in \[0, 1\), but got 1.5"):
        FaceDataModule(val_fraction=1.5)
    with pytest.raises(ValueError, match="source='celeba' needs `root`"):
        FaceDataModule(source="celeba").setup("fit")


@pytest.mark.parametrize("root", ["", "  "])
def test_an_empty_root_is_an_error_not_the_current_folder(root, tmp_path, monkeypatch):
    write_images(tmp_path, ["grid.png"])  # what an earlier run left in the current folder
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"`root` is empty; .* leave it unset \(null\)"):
        FaceDataModule(root=root)


def test_a_training_set_within_the_budget_is_decoded_once_and_held_in_memory(tmp_path, caplog):
    write_images(tmp_path, [f"{i}.png" for i in range(6)], value=120)
    settings = {"val_fraction": 0.0, "test_fraction": 0.0, "flip": False}
    with caplog.at_level(logging.INFO):
        held = data(tmp_path, **settings)  # 6 images of 16 px: 4.6 KB, within the default 4 GB
        loader = held.train_dataloader()
    assert "the 6 training images (0.00 GB at 16 px) are decoded once and held on cpu" in caplog.text
    assert "(within resident_budget_gb=4)" in caplog.text
    assert isinstance(loader, DeviceBatches) and len(loader) == 3
    decoded = torch.stack([held.image_datasets["train"].load(i) for i in range(6)])  # (6, 3, 16, 16) uint8
    assert torch.equal(loader.images, decoded)
    epoch = torch.cat(list(loader))
    assert sorted(epoch.float().sum((1, 2, 3)).tolist()) == sorted(decoded.float().sum((1, 2, 3)).tolist())
    assert held.train_dataloader().images is loader.images  # decoded once, not per call

    caplog.clear()
    with caplog.at_level(logging.INFO):
        streamed = data(tmp_path, resident_budget_gb=1e-6, **settings).train_dataloader()  # 1 KB
    assert isinstance(streamed, torch.utils.data.DataLoader)
    assert (
        "are decoded every epoch by the training process (more than resident_budget_gb=1e-06;" in caplog.text
    )
    caplog.clear()
    with caplog.at_level(logging.INFO):
        forced = data(tmp_path, resident_budget_gb=0.0, device_resident=True, **settings).train_dataloader()
    assert isinstance(forced, DeviceBatches) and "(device_resident true)" in caplog.text
    assert isinstance(
        data(tmp_path, device_resident=False, **settings).train_dataloader(), torch.utils.data.DataLoader
    )


def test_the_built_in_faces_are_rendered_once_as_the_loader_would_give_them():
    dm = data(None, num_procedural=16, batch_size=4, flip=False)
    images = dm.train_dataloader().images  # (16, 3, 16, 16) uint8
    rendered = torch.stack([dm.datasets["train"][i] for i in range(16)])  # float [-1, 1]
    assert images.dtype == torch.uint8 and images.shape == (16, 3, 16, 16)
    assert (from_uint8(images) - rendered).abs().max() <= 1 / 255 + 1e-6  # rounded to the nearest byte


def test_an_unreadable_image_is_left_out_of_the_held_set_and_counted(tmp_path):
    # by default a set read with skip_bad_images streams: the loader skips and counts files each epoch
    dm = data(
        corrupt_folder(tmp_path), val_fraction=0.0, test_fraction=0.0, batch_size=3, skip_bad_images=True
    )
    assert isinstance(dm.train_dataloader(), torch.utils.data.DataLoader)
    dm = data(
        corrupt_folder(tmp_path), val_fraction=0.0, test_fraction=0.0, batch_size=3, skip_bad_images=True,
        max_skipped_fraction=1.0, device_resident=True,
    )  # fmt: skip
    with pytest.warns(UserWarning, match=r"skipped: cannot read image .*broken\.jpg"):
        loader = dm.train_dataloader()
    assert loader.images.shape == (3, 3, 16, 16) and dm.skipped_images == 1
    dm = data(
        corrupt_folder(tmp_path), val_fraction=0.0, test_fraction=0.0, batch_size=4, skip_bad_images=True,
        max_skipped_fraction=1.0, device_resident=True,
    )  # fmt: skip
    with (
        pytest.warns(UserWarning),
        pytest.raises(ValueError, match=r"`batch_size` \(4\) is larger than the training set \(3 readable"),
    ):
        dm.train_dataloader()


def test_a_negative_resident_budget_is_refused():
    with pytest.raises(ValueError, match=r"`resident_budget_gb` must be >= 0, but got -1"):
        FaceDataModule(resident_budget_gb=-1)
