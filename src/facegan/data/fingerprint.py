"""What identifies a split's images: the key of every cache computed from them (pixels, statistics)."""

from __future__ import annotations

import hashlib
import os
from typing import Any

from torch.utils.data import Dataset

from facegan.data.decode import DECODER_VERSION, FaceImageDataset
from facegan.data.procedural import ProceduralFaces
from facegan.data.sources import ZipSource


def fingerprint(dataset: Dataset, kind: str | None, split: str, image_size: int,
                crop_size: int | None) -> dict[str, Any]:  # fmt: skip
    """A JSON-able key of ``dataset`` (the decoding dataset of ``split``, or the procedural faces).

    Covers the source (kind, resolved path, every file name with its size and modification time,
    or the procedural seed and count), the split and the preprocessing.
    """
    key: dict[str, Any] = {"kind": kind, "split": split, "image_size": image_size}
    if isinstance(dataset, ProceduralFaces):
        key.update(procedural_seed=dataset.seed, num_images=len(dataset), generator_version=1)
        return key
    if not isinstance(dataset, FaceImageDataset):
        raise TypeError(
            f"fingerprint: expected FaceImageDataset or ProceduralFaces, got {type(dataset).__name__}"
        )
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
