"""The one way facegan writes a file that others may read: a temporary file, fsync, rename.

Readers (a resume, another process, the next run) then see either the previous complete file or the
new complete file under the target's name, never a truncated one: ``os.replace`` is atomic within a
file system, so the temporary file lives in the target's own folder (not the system temp folder,
which may be another file system, where a move is a plain copy).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def temp_name(target: Path) -> Path:
    """``.<name>.<host>.<pid>.tmp`` beside ``target``: whose build it is, for cleaning up after kills."""
    return target.with_name(f".{target.name}.{socket.gethostname()}.{os.getpid()}.tmp")


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# Why a write fails (the disk, the folder), as opposed to errors of the caller's own reads.
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM,
                errno.ENOTDIR, errno.EIO}  # fmt: skip


class WriteError(OSError):
    """A file or folder facegan must write cannot be written (disk full, read-only, not a folder...).

    The message names the path, the reason, what to do (``advice``: the reason's usual advice when
    ``None``) and what became of the files there (``outcome``).
    """

    def __init__(
        self,
        path: Path,
        error: OSError,
        advice: str | None = None,
        outcome: str = "Files already there are unchanged",
    ) -> None:
        code = error.errno
        reason = os.strerror(code) if code else str(error)
        if advice is not None:
            pass
        elif code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            advice = "free some space or write elsewhere"
        elif code in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR):
            advice = "choose a folder you can write to (e.g. --trainer.default_root_dir, --out)"
        else:
            advice = "check the folder"
        super().__init__(f"cannot write {path}: {reason}; {advice}. {outcome}")
        self.errno = code


@contextmanager
def atomic_write(target: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``target``; on a clean exit fsync it and rename it to ``target``.

    On an exception (including ``KeyboardInterrupt``) the temporary file is removed and ``target`` is
    left as it was. The folder is created if needed.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> with atomic_write(path, "w") as file:
        ...     _ = file.write("complete")
        >>> path.read_text()
        'complete'
    """
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
    fsync_folder(target.parent)


def check_writable(folder: str | os.PathLike) -> None:
    """Create ``folder`` if needed and write a test file there; :class:`WriteError` if that fails.

    Run before training, so a read-only or misnamed output folder fails at once with one line rather
    than after the first epoch (or in a library's traceback).
    """
    folder = Path(folder)
    with atomic_write(folder / ".facegan-write-test"):
        pass
    (folder / ".facegan-write-test").unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        pass
    return True


def remove_abandoned(folder: Path, pattern: str = "*") -> list[Path]:
    """Delete the temporary files (of targets matching ``pattern``) left by this host's dead processes.

    A process killed outright (SIGKILL, out of memory) never removes its temporary file. Only this
    host's are judged: a folder shared over the network may hold another machine's write in
    progress, whose process id means nothing here. Returns the files removed.
    """
    removed = []
    for tmp in Path(folder).glob(f".{pattern}.{socket.gethostname()}.*.tmp"):
        pid = tmp.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed
