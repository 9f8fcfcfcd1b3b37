"""Image sources (a folder, a zip, the CelebA layout), decoding and preprocessing.

A source is an ordered list of image names plus ``read(i) -> bytes``; :class:`FaceImageDataset`
decodes, crops, resizes and scales them to facegan's ``(3, S, S)`` float ``[-1, 1]`` convention.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from facegan.images import from_uint8

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
CELEBA_IMAGES = "img_align_celeba"
CELEBA_PARTITION = "list_eval_partition.txt"
SPLIT_CODES = {"0": "train", "1": "val", "2": "test"}  # list_eval_partition.txt convention


class BadImageError(RuntimeError):
    """An image file that cannot be decoded (truncated, corrupt, not an image, unreadable)."""


def error_message(error: BaseException) -> str:
    """``error``'s own message, without the worker traceback a DataLoader worker wraps it in.

    An exception raised in a loader worker reaches the main process re-created with the message
    "Caught X in DataLoader worker process N. Original Traceback ...: X: <message>".
    """
    text = str(error)
    marker = f"{type(error).__name__}: "
    if "Original Traceback" in text and marker in text:
        return text.rsplit(marker, 1)[1].strip()
    return text


def _is_image_name(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    # Skip hidden files and macOS resource forks ("._x.jpg", "__MACOSX/"), which are not images.
    return not base.startswith(".") and "__MACOSX" not in name and name.lower().endswith(IMAGE_EXTENSIONS)


class FolderSource:
    """Every image below ``root`` (recursive, sorted, extensions in :data:`IMAGE_EXTENSIONS`)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        names = []
        for dirpath, _, filenames in os.walk(root):  # followlinks=False: a symlink loop cannot hang us
            rel = Path(dirpath).relative_to(root)
            names += [(rel / f).as_posix() for f in filenames if _is_image_name(f)]
        self.names = sorted(names)

    def __len__(self) -> int:
        return len(self.names)

    def location(self, i: int) -> str:
        return str(self.root / self.names[i])

    def read(self, i: int) -> bytes:
        with open(self.root / self.names[i], "rb") as f:
            return f.read()


class ZipSource:
    """Every image inside a zip file (optionally below ``prefix``), read without extraction."""

    def __init__(self, path: Path, prefix: str = "") -> None:
        self.path = path
        self.prefix = prefix
        with zipfile.ZipFile(path) as zf:
            members = [i.filename for i in zf.infolist() if not i.is_dir()]
        self.names = sorted(m for m in members if m.startswith(prefix) and _is_image_name(m))
        self._zip: zipfile.ZipFile | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.names)

    def location(self, i: int) -> str:
        return f"{self.path}:{self.names[i]}"

    def read(self, i: int) -> bytes:
        if self._zip is None or self._pid != os.getpid():  # one handle per (worker) process
            self._zip = zipfile.ZipFile(self.path)
            self._pid = os.getpid()
        return self._zip.read(self.names[i])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_zip": None, "_pid": None}


def read_partition(path: Path) -> dict[str, str]:
    """``list_eval_partition.txt`` -> ``{file name: "train" | "val" | "test"}``."""
    splits = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[1] not in SPLIT_CODES:
            raise ValueError(
                f"{path}, line {lineno}: expected '<file name> <0|1|2>' (CelebA partition format), "
                f"got {line!r}"
            )
        splits[parts[0]] = SPLIT_CODES[parts[1]]
    return splits


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB. 16-bit and float images are rescaled, not clipped, to 8 bits."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image if image.mode == "RGB" else image.convert("RGB")


def preprocess(image: Image.Image, image_size: int, crop_size: int | None, location: str) -> Tensor:
    """Center-crop a square (``crop_size`` px, or the shorter side), resize, -> uint8 ``(3, S, S)``.

    Crop-then-resize with bilinear filtering is Mimicry's CelebA preprocessing (crop 178, the
    image width, then resize), the one behind its published FIDs.
    """
    image = _to_rgb(image)
    width, height = image.size
    side = min(width, height) if crop_size is None else crop_size
    if side > min(width, height):
        raise BadImageError(
            f"{location}: image is {width}x{height}, smaller than `crop_size`={crop_size}; "
            "lower crop_size or leave it unset to crop to the shorter side"
        )
    left, top = int(round((width - side) / 2.0)), int(round((height - side) / 2.0))
    image = image.crop((left, top, left + side, top + side))
    if side != image_size:
        image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)  # (H, W, 3) -> (3, H, W)


class FaceImageDataset(Dataset):
    """Decoded, preprocessed images of ``source`` at ``indices``: ``(3, S, S)`` float in ``[-1, 1]``.

    With ``skip_bad_images`` an unreadable image yields ``None`` (dropped by
    :func:`collate_images`) after a warning, and is counted in ``skipped`` (shared by workers).
    """

    def __init__(
        self,
        source: FolderSource | ZipSource,
        indices: list[int],
        image_size: int,
        crop_size: int | None = None,
        flip: bool = False,
        skip_bad_images: bool = False,
    ) -> None:
        self.source = source
        self.indices = indices
        self.image_size = image_size
        self.crop_size = crop_size
        self.flip = flip
        self.skip_bad_images = skip_bad_images
        self.skipped = multiprocessing.Value("i", 0)

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, index: int) -> Tensor:
        """The preprocessed uint8 image ``(3, S, S)``; :class:`BadImageError` naming the file if bad."""
        i = self.indices[index]
        location = self.source.location(i)
        try:
            data = self.source.read(i)
            with Image.open(io.BytesIO(data)) as image:
                return preprocess(image, self.image_size, self.crop_size, location)
        except BadImageError:
            raise
        except Exception as error:  # PIL raises many types for broken files; name the file for all
            raise BadImageError(
                f"cannot read image {location}: {type(error).__name__}: {error}. Fix or remove the file, "
                "or set skip_bad_images=True (--data.skip_bad_images true) to skip unreadable images"
            ) from error

    def load_or_skip(self, index: int) -> Tensor | None:
        """:meth:`load`, or with ``skip_bad_images`` ``None`` for a bad image (warned and counted)."""
        try:
            return self.load(index)
        except BadImageError as error:
            if not self.skip_bad_images:
                raise
            with self.skipped.get_lock():
                self.skipped.value += 1
            warnings.warn(f"skipped: {error}", stacklevel=3)
            return None

    def __getitem__(self, index: int) -> Tensor | None:
        image = self.load_or_skip(index)
        if image is None:
            return None
        if self.flip and torch.rand(()) < 0.5:
            image = image.flip(-1)
        return from_uint8(image)


def collate_images(batch: list[Tensor | None]) -> Tensor:
    """Stack images, dropping the ``None`` of skipped files (an all-skipped batch is empty)."""
    images = [image for image in batch if image is not None]
    return torch.stack(images) if images else torch.empty(0)
