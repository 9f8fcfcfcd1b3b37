"""Prepared shards: one LitData ``optimize`` output per split (``train/``, ``val/``, ``test/``), then
:data:`META_NAME`, written last (it vouches for them) with each chunk's size and SHA-256. Row ``i`` of a
split is ``{"image": uint8 (3, S, S), "name": ...}`` of its ``i``-th readable image, decoded as the
cache decodes. LitData is the optional ``stream`` extra."""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import signal
from pathlib import Path
from typing import Any

from facegan.data.decode import DECODER_VERSION, BadImageError, FaceImageDataset, as_options
from facegan.data.sources import SPLITS
from facegan.io.atomic import WRITE_ERRNOS, WriteError, atomic_write

META_NAME = "facegan-shards.json"
SHARDS_FORMAT = 1
REMOTE_PREFIXES = ("s3://", "gs://", "azure://", "r2://", "hf://", "local:")  # LitData's downloaders
# The data module's advice for unreadable images, as prepare's options (cli/score.py has its own).
OPTIONS = {
    "--data.skip_bad_images true": "--skip-bad-images",
    "--data.max_skipped_fraction": "--max-skipped-fraction",
}


def require_litdata() -> Any:
    """The ``litdata`` module, or an ImportError saying which extra installs it."""
    try:
        import litdata
    except ImportError as error:
        raise ImportError(
            "facegan: prepared shards (`prepare`, FaceDataModule over a prepared folder or URL) need LitData; "
            "install it with: pip install 'facegan[stream]'"
        ) from error
    return litdata


def is_remote(root: str) -> bool:
    """Whether ``root`` is a URL LitData streams from (``s3://...``, ``local:/path`` ...)."""
    return str(root).startswith(REMOTE_PREFIXES)


def is_prepared(root: str | None) -> bool:
    """Whether ``root`` is prepared shards: a URL, or a folder holding :data:`META_NAME`."""
    return root is not None and (is_remote(str(root)) or (Path(root).expanduser() / META_NAME).is_file())


class DamagedShardsError(BadImageError):
    """Prepared shards that no longer hold what ``prepare`` wrote (a chunk missing, emptied, overwritten)."""


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (hex, as ``sha256sum`` prints it), read 1 MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def split_url(root: str, split: str) -> str:
    """The folder or URL of one split's shards below ``root``."""
    return f"{str(root).rstrip('/')}/{split}" if is_remote(root) else str(Path(root).expanduser() / split)


class _Decode:
    """``optimize``'s function: index -> row, or ``None`` for a skipped bad image.

    A :class:`BadImageError` is not raised in the worker (LitData would terminate the workers, orphaning
    their helper processes): its message goes into the shared :attr:`failure`, the workers skip the rest,
    and :func:`write_split` raises it once ``optimize`` has returned.
    """

    def __init__(self, dataset: FaceImageDataset) -> None:
        self.dataset = dataset
        self.failure: Any = multiprocessing.Array("c", 4096)  # the first error's message (UTF-8), or empty
        self.parent = os.getpid()
        self.worker: int | None = None  # the worker process whose SIGTERM handler is installed

    def __call__(self, index: int) -> dict[str, Any] | None:
        if self.worker != os.getpid() and os.getpid() != self.parent:
            self.worker = os.getpid()
            _end_helpers_on_sigterm()
        if self.failure.value:
            return None  # a worker met an error: finish fast, write nothing more
        try:
            image = self.dataset.load_or_skip(index)  # (3, S, S) uint8, or None
        except BadImageError as error:
            with self.failure.get_lock():
                if not self.failure.value:
                    self.failure.value = str(error).encode("utf-8", "backslashreplace")[:4095]
            return None
        if image is None:
            return None
        return {"image": image, "name": self.dataset.source.names[self.dataset.indices[index]]}

    def error(self) -> BadImageError | None:
        """The error a worker met, with the advice spelled as ``prepare``'s options, or ``None``."""
        message = self.failure.value.decode("utf-8", "replace")
        return BadImageError(as_options(message, OPTIONS)) if message else None


def _end_helpers_on_sigterm() -> None:
    """In a LitData worker: a SIGTERM ends the worker's own helper processes, then the worker.

    When LitData fails (a full disk) it ``terminate()``s the workers; their helpers (a file remover)
    stayed behind holding the terminal's or a ``| tee``'s output open, and ``prepare`` seemed to hang.
    """

    def end(signum: int, frame: Any) -> None:
        for helper in multiprocessing.active_children():
            helper.terminate()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)  # the default action: the worker ends as terminate() meant

    with contextlib.suppress(ValueError, OSError, AttributeError):  # no SIGTERM handlers (Windows)
        signal.signal(signal.SIGTERM, end)


def _write_failure(error: BaseException) -> OSError | None:
    """The failed write (disk full, read-only...) behind ``error``: the :class:`OSError` itself, or one
    in LitData's ``RuntimeError`` carrying a worker's traceback as text; else ``None``."""
    if isinstance(error, OSError):
        return error if error.errno in WRITE_ERRNOS else None
    if isinstance(error, RuntimeError):
        for code in map(int, re.findall(r"Error: \[Errno (\d+)\]", str(error))):
            if code in WRITE_ERRNOS:
                return OSError(code, os.strerror(code))
    return None


def write_split(
    dataset: FaceImageDataset, out: Path, num_workers: int, chunk_size: int | None
) -> list[dict[str, Any]]:
    """Convert ``dataset`` into LitData chunks in the (new) folder ``out``; bad images as the cache does.
    Returns the chunks in ``index.json``'s order: file, images, bytes and SHA-256."""
    litdata = require_litdata()
    chunking: dict[str, Any] = {"chunk_size": chunk_size} if chunk_size else {"chunk_bytes": "64MB"}
    decode = _Decode(dataset)
    method, handler = multiprocessing.get_start_method(allow_none=True), signal.getsignal(signal.SIGINT)
    try:  # optimize changes the start method and the SIGINT handler process-wide: restored below
        litdata.optimize(
            fn=decode,
            inputs=list(range(len(dataset))),
            output_dir=str(out),
            num_workers=max(1, min(num_workers, len(dataset))),
            keep_data_ordered=True,  # row i = the i-th readable image, as in the memmap cache
            reorder_files=False,
            mode="overwrite",
            # Forked workers start at once; spawned ones import torch again (measured: 55.6 s vs 0.8 s
            # for 40 images in 3 splits with 2 workers on 2 cores).
            start_method="fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn",
            **chunking,
        )
    except BaseException:  # close its progress bar: left open, tqdm redrew it at exit, after the error
        with contextlib.suppress(ImportError):
            from tqdm import tqdm

            for bar in list(getattr(tqdm, "_instances", ())):
                bar.close()
        raise
    finally:
        multiprocessing.set_start_method(method, force=True)
        signal.signal(signal.SIGINT, handler)
    if (error := decode.error()) is not None:
        raise error
    index = json.loads((out / "index.json").read_text())
    return [
        {"file": chunk["filename"], "items": chunk["chunk_size"], "bytes": (out / chunk["filename"]).stat().st_size,
         "sha256": file_sha256(out / chunk["filename"])}
        for chunk in index["chunks"]
    ]  # fmt: skip


def prepare_shards(
    root: str,
    out: str | os.PathLike,
    image_size: int,
    num_workers: int | None = None,
    chunk_size: int | None = None,
    overwrite: bool = False,
    **data_settings: Any,
) -> dict[str, Any]:
    """Decode ``root``'s images into shards under ``out`` (``python -m facegan prepare``'s options;
    ``data_settings``: :class:`~facegan.FaceDataModule`'s). Returns the metadata written."""
    from facegan.data.datamodule import FaceDataModule  # the same sources, splits and fingerprints

    require_litdata()
    if root is None or data_settings.get("source") in ("procedural", "shards"):
        raise ValueError("prepare: `--root` must be image files (a folder, a zip or the CelebA layout)")
    folder = Path(out).expanduser()
    if is_remote(str(out)):
        raise ValueError(f"prepare: --out {out!r}: write to a local folder, then copy it (e.g. aws s3 sync)")
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"prepare: --out {str(folder)!r} is a file; give a folder")
    if folder.is_dir() and any(folder.iterdir()) and not (overwrite and (folder / META_NAME).is_file()):
        hint = " (--overwrite replaces prepared folders only)" if overwrite else ", or --overwrite to replace"
        raise ValueError(
            f"prepare: --out {str(folder)!r} is not empty; choose another folder{hint} a prepared one ({META_NAME})"
        )
    data = FaceDataModule(root=root, image_size=image_size, batch_size=1, flip=False, **data_settings)
    data.setup()
    (folder / META_NAME).unlink(missing_ok=True)  # from now on the folder is not a prepared one
    workers = num_workers or os.cpu_count() or 1
    splits: dict[str, Any] = {}
    try:
        for split in SPLITS:
            shutil.rmtree(folder / split, ignore_errors=True)  # a replaced prepared folder's
            dataset = data.image_datasets[split]
            chunks = write_split(dataset, folder / split, workers, chunk_size) if len(dataset) else []
            skipped = [dataset.source.names[dataset.indices[i]] for i in dataset.skipped_indices]
            key = data.fingerprint(split)
            if skipped:
                key["skipped"] = len(skipped)  # fewer images than the source's split: other statistics
            splits[split] = {"count": len(dataset) - len(skipped), "skipped": skipped, "fingerprint": key,
                             "chunks": chunks}  # fmt: skip
        meta = {
            "format": SHARDS_FORMAT,
            "image_size": image_size,
            "crop_size": data.hparams.crop_size,
            "decoder": DECODER_VERSION,
            "source": {"root": str(Path(root).expanduser().resolve()), "kind": data.kind},
            "splits": splits,
        }
        with atomic_write(folder / META_NAME, "w") as file:  # last: it vouches for the shards
            json.dump(meta, file, indent=1)
    except BaseException as error:
        for written in SPLITS:  # this run's chunks; without the metadata they were never usable
            shutil.rmtree(folder / written, ignore_errors=True)
        failure = _write_failure(error)
        if failure is None:
            raise
        # one line: the folder, the reason, what to do, and that its shards (partial or replaced) are gone
        raise WriteError(folder, failure, outcome="The shards in it were removed") from error
    return meta
