"""Decoding: image bytes -> ``(3, S, S)`` images (any PIL mode to RGB, center crop, resize), bad
files named or skipped, and the :func:`fingerprint` that keys everything computed from the pixels.
"""

from __future__ import annotations

import hashlib
import io
import math
import multiprocessing
import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from facegan.data.procedural import ProceduralFaces
from facegan.data.sources import FolderSource, ZipSource
from facegan.images import from_uint8


class BadImageError(RuntimeError):
    """An image file that cannot be decoded (truncated, corrupt, not an image, unreadable)."""


class NoImagesError(BadImageError):
    """A training epoch had no image to train on (every one skipped as unreadable)."""


def error_message(error: BaseException) -> str:
    """``error``'s own message, without the "Caught X in DataLoader worker process N. Original
    Traceback ...: X: " that an exception raised in a loader worker is re-created with."""
    text = str(error)
    marker = f"{type(error).__name__}: "
    if "Original Traceback" in text and marker in text:
        return text.rsplit(marker, 1)[1].strip()
    return text


DECODER_VERSION = 2  # bump when decoding changes pixels (2: EXIF orientation, alpha on white, draft)
BACKGROUND = (255, 255, 255)  # transparent pixels are composited on white, as a page shows them
DRAFT_PIXELS = 4096 * 4096  # JPEGs above this many pixels are decoded at a reduced scale (PIL's draft)


def _to_8bit(array: np.ndarray, peak: int) -> np.ndarray:
    """``round(array * 255 / peak)`` as uint8, a block of rows at a time (memory: the image's own)."""
    out = np.empty(array.shape, dtype=np.uint8)
    for top in range(0, array.shape[0], 512):
        block = array[top : top + 512]
        if block.dtype.kind == "f":  # float images: NaN -> 0
            scaled = np.nan_to_num(block.astype(np.float32) * np.float32(255 / peak) + np.float32(0.5))
            out[top : top + 512] = np.clip(scaled, 0, 255)
        else:  # integers, exactly: floor(x * 255 / peak + 0.5)
            out[top : top + 512] = (np.clip(block, 0, peak).astype(np.int64) * 510 + peak) // (2 * peak)
    return out


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB. 16-bit and float images are rescaled, not clipped, to 8 bits; transparent
    pixels are composited on :data:`BACKGROUND`."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image)
        high = float(array.max()) if array.size else 0.0
        peak = 65535 if image.mode.startswith("I;16") or high > 255 else 255
        image = Image.fromarray(_to_8bit(array, peak))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", image.size, (*BACKGROUND, 255)), image).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def preprocess(image: Image.Image, image_size: int, crop_size: int | None, location: str) -> Tensor:
    """Center-crop a square (``crop_size`` px, or the shorter side), resize, -> uint8 ``(3, S, S)``: with
    bilinear filtering, Mimicry's CelebA preprocessing (crop 178, then resize), behind its published FIDs."""
    width, height = image.size
    if image.format == "JPEG" and width * height > DRAFT_PIXELS:
        # Decode at 1/2, 1/4 or 1/8 scale while the crop keeps at least twice the output resolution.
        scale = (min(width, height) if crop_size is None else crop_size) / (2 * image_size)
        image.draft("RGB", (math.ceil(width / scale), math.ceil(height / scale)))
        if crop_size is not None:
            crop_size = max(1, round(crop_size * image.size[0] / width))
    if image.getexif().get(ExifTags.Base.Orientation, 1) not in (None, 1):
        image = ImageOps.exif_transpose(image)  # turned as its EXIF orientation says (phone photos)
    image = to_rgb(image)
    width, height = image.size
    side = min(width, height) if crop_size is None else crop_size
    if side > min(width, height):
        raise BadImageError(
            f"{location}: image is {width}x{height}, smaller than `crop_size`={crop_size}; "
            "lower crop_size or leave it unset to crop to the shorter side"
        )
    image = TF.center_crop(image, [side, side])  # on the PIL image: PIL's crop, torchvision's rounding
    if side != image_size:  # PIL's bilinear resize (antialiased), as Mimicry's CelebA preprocessing
        image = TF.resize(image, [image_size, image_size], InterpolationMode.BILINEAR, antialias=True)
    return TF.pil_to_tensor(image)  # (3, H, W) uint8


@dataclass(eq=False)
class FaceImageDataset(Dataset):
    """Decoded, preprocessed images of ``source`` at ``indices``: ``(3, S, S)`` float in ``[-1, 1]``.

    With ``skip_bad_images`` an unreadable image yields ``None`` (dropped by :func:`collate_images`)
    after a warning, counted once per file in ``skipped`` (shared by workers), until more than
    ``max_skipped_fraction`` of the images were skipped: then the skip raises :class:`BadImageError`.
    """

    source: FolderSource | ZipSource
    indices: list[int]
    image_size: int
    crop_size: int | None = None
    flip: bool = False
    skip_bad_images: bool = False
    max_skipped_fraction: float = 1.0

    def __post_init__(self) -> None:
        # One shared byte per image (all loader workers write it): which files were skipped, so a
        # file skipped again every epoch counts once.
        self._skipped = multiprocessing.RawArray("b", len(self.indices))

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def skipped(self) -> int:
        """Distinct files skipped as unreadable so far (by any loader worker)."""
        return bytes(self._skipped).count(1)

    @property
    def skipped_indices(self) -> list[int]:
        """Which of this dataset's indices were skipped as unreadable so far (by any worker)."""
        return [i for i, mark in enumerate(bytes(self._skipped)) if mark]

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
            self._skipped[index] = 1
            skipped = self.skipped
            if skipped > self.max_skipped_fraction * len(self):
                raise BadImageError(
                    f"{skipped} of the {len(self)} images of this split are unreadable, more than "
                    f"max_skipped_fraction={self.max_skipped_fraction:g} (the last: {error}); fix the data, "
                    "or raise --data.max_skipped_fraction (1 skips any number)"
                ) from error
            warnings.warn(f"skipped: {error}", stacklevel=3)
            return None

    def __getitem__(self, index: int) -> Tensor | None:
        image = self.load_or_skip(index)
        if image is not None and self.flip and torch.rand(()) < 0.5:
            image = image.flip(-1)
        return None if image is None else from_uint8(image)


def collate_images(batch: Tensor | list[Tensor | None]) -> Tensor:
    """Stack images, dropping the ``None`` of skipped files (an all-skipped batch is empty); a batch that
    arrives stacked (``__getitems__`` of uint8 rows) passes as it is."""
    if isinstance(batch, Tensor):
        return batch
    images = [image for image in batch if image is not None]
    return torch.stack(images) if images else torch.empty(0)


def fingerprint(dataset: FaceImageDataset | ProceduralFaces, kind: str | None, split: str, image_size: int,
                crop_size: int | None) -> dict[str, Any]:  # fmt: skip
    """A JSON-able key of ``dataset`` (the decoding dataset of ``split``, or the procedural faces): the
    source (kind, resolved path, every file's name, size and modification time, or the procedural seed
    and count), the split and the preprocessing."""
    key: dict[str, Any] = {"kind": kind, "split": split, "image_size": image_size}
    if isinstance(dataset, ProceduralFaces):
        key.update(procedural_seed=dataset.seed, num_images=len(dataset), generator_version=1)
        return key
    source = dataset.source
    digest = hashlib.sha256()
    if isinstance(source, ZipSource):
        stat = source.path.stat()
        digest.update(os.fsencode(f"{source.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"))
        digest.update("\n".join(source.names[i] for i in dataset.indices).encode())
    else:
        for i in dataset.indices:
            path = source.root / source.names[i]
            try:
                stat = path.stat()
                entry = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
            except (OSError, RuntimeError):  # dangling or looping symlink, vanished file: the
                entry = f"{path.absolute()}|unreadable"  # skip rule (or a named error) applies when read
            # fsencode: file names that are not UTF-8 arrive surrogate-escaped; hash their bytes
            digest.update(os.fsencode(f"{entry}\n"))
    key.update(files=digest.hexdigest(), num_images=len(dataset.indices), crop_size=crop_size)
    key.update(decoder=DECODER_VERSION)  # how the files become pixels
    return key


def as_options(message: str, options: dict[str, str]) -> str:
    """``message`` with the data module's settings (``--data.*``) spelled as a command's ``options``."""
    for setting, option in options.items():
        message = message.replace(setting, option)
    return message
