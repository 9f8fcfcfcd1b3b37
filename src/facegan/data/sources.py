"""Image sources: a folder, a zip, the CelebA layout (folder or zip), and how ``root`` picks one.

A source is an ordered list of image names plus ``read(i) -> bytes`` and ``location(i)`` (for
messages); :mod:`facegan.data.decode` turns the bytes into images.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
CELEBA_IMAGES = "img_align_celeba"
CELEBA_PARTITION = "list_eval_partition.txt"
SOURCES = ("auto", "procedural", "folder", "celeba", "zip")


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


def open_zip(path: Path, celeba_prefix: bool = False) -> ZipSource:
    """A :class:`ZipSource`; with ``celeba_prefix``, only members below ``img_align_celeba/`` if any."""
    try:
        source = ZipSource(path)
    except zipfile.BadZipFile as error:
        raise ValueError(f"FaceDataModule: cannot open zip archive {str(path)!r}: {error}") from error
    prefix = f"{CELEBA_IMAGES}/"
    if celeba_prefix and any(name.startswith(prefix) for name in source.names):
        source.names = [name for name in source.names if name.startswith(prefix)]
    return source


def resolve_source(
    root: str | None, source: str = "auto"
) -> tuple[str, FolderSource | ZipSource | None, Path | None]:
    """``(kind, image source, partition file or None)`` for a data module's ``root`` and ``source``.

    ``root=None`` is the built-in procedural faces (no image source). A folder holding the CelebA
    layout, a CelebA zip, any folder of images or any zip of images is detected from ``root``;
    ``source`` other than ``"auto"`` insists on one kind.
    """
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
            celeba = open_zip(path / f"{CELEBA_IMAGES}.zip", celeba_prefix=True)
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
        raise ValueError(f"FaceDataModule: `root` {str(path)!r} is a file but not a zip archive; {expected}")
    if source == "folder":
        raise ValueError(f"FaceDataModule: source='folder' but `root` {str(path)!r} is a zip file")
    partition = path.parent / CELEBA_PARTITION
    if path.name == f"{CELEBA_IMAGES}.zip" and source != "zip":
        return "celeba", open_zip(path, celeba_prefix=True), partition if partition.is_file() else None
    return "zip", open_zip(path), None
