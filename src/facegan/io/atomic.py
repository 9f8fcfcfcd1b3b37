"""The one way facegan writes a file that others may read: a temporary file beside the target (``os.replace``
is atomic only within a file system), fsync, rename; readers never see a truncated file."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

# Why a write fails (the disk, the folder), as opposed to errors of the caller's own reads: what to do.
_FULL = "free some space or write elsewhere"
_DENIED = "choose a folder you can write to (e.g. --trainer.default_root_dir, --out)"
_ADVICE = {errno.ENOSPC: _FULL, errno.EDQUOT: _FULL, errno.EFBIG: _FULL, errno.EIO: "check the folder",
           errno.EROFS: _DENIED, errno.EACCES: _DENIED, errno.EPERM: _DENIED,
           errno.ENOTDIR: _DENIED}  # fmt: skip
WRITE_ERRNOS = set(_ADVICE)


class WriteError(OSError):
    """A file or folder facegan must write cannot be written (disk full, read-only, not a folder...); the
    message names the path, the reason, what to do (``advice``, by default the reason's) and ``outcome``."""

    def __init__(
        self,
        path: Path,
        error: OSError,
        advice: str | None = None,
        outcome: str = "Files already there are unchanged",
    ) -> None:
        code = error.errno
        reason = os.strerror(code) if code else str(error)
        if advice is None:
            advice = _ADVICE.get(code, "check the folder")  # type: ignore[arg-type]
        super().__init__(f"cannot write {path}: {reason}; {advice}. {outcome}")
        self.errno = code


def temp_name(target: Path) -> Path:
    """``.<name>.<host>.<pid>.tmp`` beside ``target``: whose build it is, for cleaning up after kills."""
    return target.with_name(f".{target.name}.{socket.gethostname()}.{os.getpid()}.tmp")


@contextmanager
def atomic_write(target: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``target`` (its folder created if needed); on a clean exit fsync it and
    rename it to ``target``; on an exception (``KeyboardInterrupt`` too) remove it, ``target`` unchanged."""
    target = Path(target)
    tmp = temp_name(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, mode) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, target)
    except WriteError:
        raise
    except OSError as error:  # a full disk, a read-only folder: one clear error naming the file
        if error.errno not in WRITE_ERRNOS:  # e.g. the caller's own read of another file
            raise
        raise WriteError(target, error) from error
    except RuntimeError as error:  # torch.save reports a failed write of its zip writer this way
        context = error.__context__
        if type(error) is RuntimeError and isinstance(context, OSError) and context.errno in WRITE_ERRNOS:
            raise WriteError(target, context) from error
        raise
    finally:
        with contextlib.suppress(OSError):  # also where the folder could not be made
            tmp.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # the rename made durable; folders cannot be opened on Windows
        folder = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def check_writable(folder: str | os.PathLike) -> None:
    """Create ``folder`` if needed and write a test file there; :class:`WriteError` if that fails (run
    before training: a read-only output folder fails at once, not after the first epoch)."""
    test_file = Path(folder) / ".facegan-write-test"
    with atomic_write(test_file):
        pass
    test_file.unlink(missing_ok=True)


def remove_abandoned(folder: Path, pattern: str = "*") -> list[Path]:
    """Delete and return the temporary files (of targets matching ``pattern``) that this host's dead
    processes left (SIGKILL, out of memory); another machine's process ids mean nothing here."""
    removed = []
    for tmp in Path(folder).glob(f".{pattern}.{socket.gethostname()}.*.tmp"):
        pid = tmp.name.rsplit(".", 2)[-2]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
        except PermissionError:  # someone else's process: alive
            pass
    return removed
