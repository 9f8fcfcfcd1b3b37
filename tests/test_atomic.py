"""One atomic-write helper (temp file beside the target, fsync, rename) and one cache-folder rule."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from facegan.io.atomic import WriteError, atomic_write, check_writable, remove_abandoned, temp_name
from facegan.io.paths import cache_dir


def test_a_completed_write_replaces_the_target_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "file.bin"  # the folder is created
    with atomic_write(target) as file:
        file.write(b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]


def test_a_failed_write_keeps_the_previous_file_and_removes_its_temporary(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_write(target, "w") as file:
        file.write("half")
        assert temp_name(target).is_file()  # the bytes go to a hidden file beside the target
        raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_temporary_names_carry_host_and_process(tmp_path):
    name = temp_name(tmp_path / "last.ckpt").name
    assert name.startswith(".last.ckpt.") and name.endswith(".tmp")
    assert f".{socket.gethostname()}." in name


def test_remove_abandoned_deletes_only_this_hosts_dead_writers_files(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = socket.gethostname()
    killed = tmp_path / f".a.ckpt.{host}.{dead.pid}.tmp"
    alive = tmp_path / f".b.ckpt.{host}.1.tmp"
    other = tmp_path / f".c.ckpt.another-host.{dead.pid}.tmp"
    for path in (killed, alive, other):
        path.write_bytes(b"x")
    assert remove_abandoned(tmp_path) == [killed]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, other.name])


def test_cache_dir_prefers_the_setting_then_the_environment_then_the_home_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path / "env"))
    assert cache_dir("fid", str(tmp_path / "mine")) == tmp_path / "mine"
    assert cache_dir("data") == tmp_path / "env" / "data"
    monkeypatch.delenv("FACEGAN_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir("fid") == Path(tmp_path / "home" / ".cache" / "facegan" / "fid")


def test_a_full_disk_is_one_clear_error_naming_the_file_and_nothing_is_replaced(tmp_path):
    target = tmp_path / "stats.npz"
    target.write_bytes(b"previous")
    with (
        pytest.raises(
            WriteError, match=r"cannot write .*stats\.npz: No space left on device; free some space"
        ),
        open("/dev/full", "wb", buffering=0) as full,  # unbuffered: nothing left to flush at close
        atomic_write(target) as file,
    ):
        file.write(b"x" * 10)
        full.write(b"y")  # the kernel's own ENOSPC, what a full disk raises on write
    assert target.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["stats.npz"]


def test_torch_save_into_a_full_disk_is_reported_as_the_write_error_it_is(tmp_path, monkeypatch):
    """torch.save turns a failed write of its zip writer into RuntimeError("unexpected pos ...")."""
    import errno
    import io

    import torch

    class Full(io.RawIOBase):
        def writable(self):
            return True

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    def save_into_a_full_disk(obj, file):
        torch.save(obj, Full())

    with (
        pytest.raises(WriteError, match=r"x\.ckpt: No space left on device"),
        atomic_write(tmp_path / "x.ckpt") as f,
    ):
        save_into_a_full_disk({"w": torch.zeros(1000)}, f)


def test_check_writable_names_a_folder_that_cannot_be_written(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(WriteError, match=r"cannot write .*a-file/runs/\.facegan-write-test: Not a directory"):
        check_writable(tmp_path / "a-file" / "runs")
    check_writable(tmp_path / "runs")
    assert list((tmp_path / "runs").iterdir()) == []  # nothing left behind


def test_errors_of_the_callers_own_reads_are_not_reported_as_write_errors(tmp_path):
    with pytest.raises(FileNotFoundError), atomic_write(tmp_path / "out.bin") as file:
        file.write((tmp_path / "missing-input").read_bytes())
    with pytest.raises(RuntimeError, match="not a write") as error, atomic_write(tmp_path / "out.bin"):
        try:
            (tmp_path / "missing-input").read_bytes()
        except OSError:
            raise RuntimeError("not a write") from None
    assert not isinstance(error.value, WriteError) and list(tmp_path.iterdir()) == []
