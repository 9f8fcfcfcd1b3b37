"""Image sources (a folder, a zip, the CelebA layout), how ``root`` picks one, and the splits. A
source is an ordered list of image ``names`` plus ``read(i) -> bytes`` and ``location(i)``."""

from __future__ import annotations

import logging
import os
import stat
import zipfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
CELEBA_IMAGES = "img_align_celeba"
CELEBA_PARTITION = "list_eval_partition.txt"
SOURCES = ("auto", "procedural", "folder", "celeba", "zip", "shards")
SPLITS = ("train", "val", "test")
SPLIT_CODES = {"0": "train", "1": "val", "2": "test"}  # list_eval_partition.txt convention
FILE_KINDS = {stat.S_IFDIR: "a folder", stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device",
              stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}  # fmt: skip
MAX_IMAGE_BYTES = 256 << 20  # larger files or zip members are refused unread (a 12000x12000 JPEG is ~50 MB)


def _check_size(size: int) -> None:
    if size > MAX_IMAGE_BYTES:
        raise OSError(
            f"{size} bytes, larger than any plausible image (limit {MAX_IMAGE_BYTES >> 20} MiB); not read"
        )


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
        """The file's bytes; ``OSError`` for anything but a regular file of plausible size (devices such
        as ``/dev/zero`` behind a symlink, FIFOs, sockets), refused before it is read. Opened non-blocking
        (a FIFO cannot block the open) and checked on the open descriptor (no swap after the check)."""
        fd = os.open(self.root / self.names[i], os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as file:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode):
                kind = FILE_KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
                raise OSError(f"not a regular file ({kind}); only image files are read")
            _check_size(info.st_size)
            data = file.read(info.st_size + 1)  # one byte more than its size: is it still being written?
        if len(data) != info.st_size:
            raise OSError(
                f"changed while being read ({info.st_size} bytes, then {len(data)}); retry when complete"
            )
        return data


class ZipSource:
    """Every image inside a zip file, read without extraction; with ``celeba``, only those below
    ``img_align_celeba/`` if there are any."""

    def __init__(self, path: Path, celeba: bool = False) -> None:
        self.path = path
        try:
            with zipfile.ZipFile(path) as zf:
                members = [i.filename for i in zf.infolist() if not i.is_dir()]
        except zipfile.BadZipFile as error:
            raise ValueError(f"FaceDataModule: zip archive {str(path)!r} is damaged: {error}") from error
        self.names = sorted(m for m in members if _is_image_name(m))
        repeated = sorted(name for name, count in Counter(self.names).items() if count > 1)
        if repeated:
            raise ValueError(
                f"FaceDataModule: zip archive {str(path)!r} holds {len(repeated)} image names more than once "
                f"(e.g. {repeated[0]!r}); which copy is meant is ambiguous. Rebuild the archive with unique names"
            )
        prefix = f"{CELEBA_IMAGES}/"
        if celeba and any(name.startswith(prefix) for name in self.names):
            self.names = [name for name in self.names if name.startswith(prefix)]
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
        member = self._zip.getinfo(self.names[i])
        _check_size(member.file_size)  # refused before anything is inflated
        return read_member(self._zip, member)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_zip": None, "_pid": None}


# Compressed bytes per step: deflate output is capped per step by zipfile itself; LZMA's is not, and
# inflates at most ~7,000x (zeros), so 4 KiB of it stays below ~30 MB.
STEP = {zipfile.ZIP_STORED: 1 << 20, zipfile.ZIP_DEFLATED: 1 << 20, zipfile.ZIP_LZMA: 4096}


def read_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> bytes:
    """A zip member's bytes, inflated in bounded steps and never beyond :data:`MAX_IMAGE_BYTES`.

    zipfile's ``read()`` of a whole member inflated up to 1-2 GiB before it compared sizes and CRC
    (measured: 2.9 GB peak for a member declaring 1,000 bytes); step by step it stops at the declared
    size. bzip2 inflates without any bound per step (200 MiB of zeros are 177 bytes), so it is refused.
    """
    step = STEP.get(member.compress_type)
    if step is None:
        raise OSError(
            f"compressed with method {member.compress_type} (bzip2 or another that facegan does not "
            "inflate in bounded steps); rebuild the zip with deflate (the default of zip tools) or stored"
        )
    blocks, total = [], 0
    with archive.open(member) as file:
        while block := file.read(step):
            total += len(block)
            if total > MAX_IMAGE_BYTES:
                raise OSError(
                    f"inflates to more than {MAX_IMAGE_BYTES >> 20} MiB, larger than any plausible image "
                    f"(its header says {member.file_size} bytes); not read further"
                )
            blocks.append(block)
    return b"".join(blocks)


def resolve_source(
    root: str | None, source: str = "auto"
) -> tuple[str, FolderSource | ZipSource | None, Path | None]:
    """``(kind, image source, partition file or None)`` for a data module's ``root`` and ``source``
    (``"auto"`` detects the kind; ``root=None``: the procedural faces, no image source)."""
    if root is None:
        if source not in ("auto", "procedural"):
            raise ValueError(f"FaceDataModule: source={source!r} needs `root` (a path)")
        return "procedural", None, None
    if source == "procedural":
        raise ValueError("FaceDataModule: source='procedural' takes no `root`; unset one of them")
    path = Path(root).expanduser()
    expected = (
        "expected a folder of images (jpg, png, webp, bmp), a .zip of images, or a CelebA folder "
        f"holding {CELEBA_IMAGES}/ or {CELEBA_IMAGES}.zip (and optionally {CELEBA_PARTITION})"
    )
    if not path.exists():
        raise FileNotFoundError(
            f"FaceDataModule: `root` {str(path)!r} does not exist; {expected}. Leave `root` unset "
            "to train on the built-in procedural faces."
        )
    if path.is_dir():
        partition = path / CELEBA_PARTITION
        if (path / CELEBA_IMAGES).is_dir():
            celeba: FolderSource | ZipSource = FolderSource(path / CELEBA_IMAGES)
        elif (path / f"{CELEBA_IMAGES}.zip").is_file():
            celeba = ZipSource(path / f"{CELEBA_IMAGES}.zip", celeba=True)
        elif path.name == CELEBA_IMAGES and (path.parent / CELEBA_PARTITION).is_file():
            celeba, partition = FolderSource(path), path.parent / CELEBA_PARTITION
        elif source == "celeba":
            raise FileNotFoundError(f"FaceDataModule: source='celeba' but {str(path)!r}: {expected}")
        else:
            if source == "zip":
                raise ValueError(f"FaceDataModule: source='zip' but `root` {str(path)!r} is a folder")
            return "folder", FolderSource(path), None
        if source not in ("auto", "celeba"):
            raise ValueError(
                f"FaceDataModule: `root` {str(path)!r} has the CelebA layout; use source='celeba' or 'auto'"
            )
        return "celeba", celeba, partition if partition.is_file() else None
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as file:
            zip_like = file.read(4) == b"PK\x03\x04"  # a zip's first local header, without its directory
        if zip_like:
            raise ValueError(
                f"FaceDataModule: zip archive {str(path)!r} is damaged (its central directory is missing "
                "or corrupt, e.g. an interrupted download or copy); download or rebuild it"
            )
        raise ValueError(f"FaceDataModule: `root` {str(path)!r} is a file but not a zip archive; {expected}")
    if source == "folder":
        raise ValueError(f"FaceDataModule: source='folder' but `root` {str(path)!r} is a zip file")
    partition = path.parent / CELEBA_PARTITION
    if path.name == f"{CELEBA_IMAGES}.zip" and source != "zip":
        return "celeba", ZipSource(path, celeba=True), partition if partition.is_file() else None
    return "zip", ZipSource(path), None


def split_indices(
    names: Sequence[str], partition: Path | None, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[int]]:
    """Indices of ``names`` per split: as ``partition`` (``list_eval_partition.txt``) lists their base
    names (others unused), or without one a seeded random split; each split's indices sorted."""
    if partition is None:
        order = torch.randperm(len(names), generator=torch.Generator().manual_seed(seed)).tolist()
        n_val, n_test = round(len(names) * val_fraction), round(len(names) * test_fraction)
        val, test, train = order[:n_val], order[n_val : n_val + n_test], order[n_val + n_test :]
        return {"val": sorted(val), "test": sorted(test), "train": sorted(train)}
    listed = {}
    for lineno, line in enumerate(partition.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in SPLIT_CODES:
            raise ValueError(
                f"{partition}, line {lineno}: expected '<file name> <0|1|2>' (CelebA partition format), "
                f"got {line!r}"
            )
        listed[parts[0]] = SPLIT_CODES[parts[1]]
    indices: dict[str, list[int]] = {split: [] for split in SPLITS}
    unlisted = 0
    for i, name in enumerate(names):
        split = listed.get(name.rsplit("/", 1)[-1])
        if split is None:
            unlisted += 1
        else:
            indices[split].append(i)
    if unlisted:
        log.warning("%d images are not listed in %s and are not used", unlisted, partition)
    return indices
