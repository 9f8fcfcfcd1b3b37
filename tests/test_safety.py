"""Checkpoints survive: a kill during a save leaves the previous one readable; Ctrl-C and SIGTERM
save a resumable `last.ckpt` before the process exits."""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from facegan.cli.trainer import AtomicCheckpointIO
from facegan.io.checkpoints import load_checkpoint
from tests.conftest import REPO

KILL_DURING_SAVE = """
import io, os, signal, sys, torch
from facegan.cli.trainer import AtomicCheckpointIO
path = sys.argv[1]
real_save = torch.save
def dying_save(obj, file, *args, **kwargs):
    buffer = io.BytesIO()
    real_save(obj, buffer)
    file.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])  # half written ...
    file.flush()
    os.kill(os.getpid(), signal.SIGKILL)                          # ... and the process dies
torch.save = dying_save
AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(1000)}, "hyper_parameters": {}}, path)
"""


def test_a_kill_during_a_save_leaves_the_previous_checkpoint_intact(tmp_path):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(
        {"state_dict": {"w": torch.zeros(1000)}, "hyper_parameters": {}}, path
    )
    before = path.read_bytes()
    result = subprocess.run([sys.executable, "-c", KILL_DURING_SAVE, str(path)], capture_output=True)
    assert result.returncode == -signal.SIGKILL
    assert path.read_bytes() == before
    assert torch.equal(load_checkpoint(path)["state_dict"]["w"], torch.zeros(1000))
    # the interrupted write is a hidden temporary next to it, never the checkpoint's own name
    assert [p.name for p in tmp_path.iterdir() if p.name != "last.ckpt"][0].startswith(".last.ckpt.")
    # ... which the next save into that folder removes (its writer is dead)
    AtomicCheckpointIO().save_checkpoint(
        {"state_dict": {}, "hyper_parameters": {}}, tmp_path / "epoch=1.ckpt"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch=1.ckpt", "last.ckpt"]


@pytest.mark.parametrize(
    ("sig", "group"),
    [(signal.SIGINT, False), (signal.SIGTERM, True)],
    # SIGTERM to the trainer alone is the group case without a worker that gets it too (the worker's
    # share: test_a_loader_worker_leaves_a_stray_sigterm_to_the_trainer), so it is not run on its own
    ids=["ctrl-c", "sigterm-to-the-process-group-with-a-loader-worker"],
)
def test_signal_saves_a_resumable_last_checkpoint(tmp_path, sig, group):
    command = [sys.executable, "-m", "facegan", "fit", "--config", str(REPO / "configs/debug.yaml")]
    command += ["--trainer.max_epochs", "100000", "--trainer.limit_val_batches", "0"]
    command += ["--checkpoint.every_n_epochs", "1000", "--trainer.enable_progress_bar", "false"]
    if group:  # as `timeout`, Slurm and systemd do: the workers get the signal too
        command += ["--data.num_workers", "1"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=group,
        # A non-interactive shell starts background jobs (CI runners, `cmd &`) with SIGINT ignored, and
        # Python then installs no KeyboardInterrupt handler: give the run the default, as a terminal does.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    grids = tmp_path / "lightning_logs/version_0/samples"
    deadline = time.time() + 120
    while not (grids.is_dir() and len(list(grids.iterdir())) >= 2) and time.time() < deadline:
        time.sleep(0.2)  # training is under way once two epochs' grids exist
    assert process.poll() is None, process.stderr.read()
    if group:
        os.killpg(process.pid, sig)
    else:
        process.send_signal(sig)
    try:
        _, stderr = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:  # once seen on a heavily loaded 2-core box: show where it was
        process.kill()
        pytest.fail(f"fit did not exit within 300 s of the signal:\n{process.communicate()[1][-3000:]}")
    found = re.search(r"(Ctrl-C|SIGTERM) at step (\d+): saved (\S+last\.ckpt); resume with", stderr)
    assert found, stderr[-3000:]
    assert found.group(1) == {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}[sig]
    assert process.returncode == 128 + sig  # the shell's codes, 130 and 143: not a finished run's 0
    checkpoint = load_checkpoint(found.group(3))
    step = int(found.group(2))  # the step of the last batch's metrics (metrics.csv), not global_step
    assert checkpoint["state_dict"]["images_seen"].item() == 8 * (step + 1) and step >= 1  # batches of 8
    assert checkpoint["global_step"] == 2 * (step + 1)  # a D and a G step per batch
    resumed = subprocess.run(
        [*command[:6], "--trainer.max_epochs", str(checkpoint["epoch"] + 2), "--ckpt_path", "last"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [p.name for p in (tmp_path / "lightning_logs").iterdir()] == ["version_0"]


LEAVES_A_LOADER_OPEN = """
import multiprocessing, sys
from facegan import FaceDataModule
multiprocessing.set_start_method(sys.argv[1])
datamodule = FaceDataModule(batch_size=8, num_workers=1)
datamodule.setup("fit")
batches = iter(datamodule.train_dataloader())  # never exhausted, never closed
print(tuple(next(batches).shape), flush=True)
"""


@pytest.mark.parametrize("start_method", ["fork", "forkserver"])
def test_a_program_that_leaves_a_loader_open_still_exits(start_method):
    # At interpreter exit multiprocessing terminate()s the worker and joins it: a worker that ignored
    # SIGTERM outright made this (and the whole test session) wait forever. Under forkserver (Python
    # 3.14's default on Linux) the worker is not a fork of the trainer: worker_init_fn is pickled.
    result = subprocess.run(
        [sys.executable, "-c", LEAVES_A_LOADER_OPEN, start_method],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "(8, 3, 64, 64)"


def test_a_loader_worker_leaves_a_stray_sigterm_to_the_trainer():
    from facegan import FaceDataModule

    datamodule = FaceDataModule(batch_size=8, num_workers=1, persistent_workers=False, device_resident=False)
    datamodule.setup("fit")
    before = set(multiprocessing.active_children())
    batches = iter(datamodule.train_dataloader())
    next(batches)
    (worker,) = set(multiprocessing.active_children()) - before
    subprocess.run(["kill", "-TERM", str(worker.pid)], check=True)  # as `timeout` or Slurm would
    time.sleep(1.0)
    assert worker.is_alive()
    assert next(batches).shape == (8, 3, 64, 64)
    del batches  # the trainer's orderly shutdown still ends it (its terminate(): the test above)
    worker.join(timeout=30)
    assert worker.exitcode == 0


class CtrlCDuringTheGeneratorStep(torch.nn.Module):
    """Wraps G: presses Ctrl-C (SIGINT to this process) ``presses`` times inside the G update of the
    second batch."""

    def __init__(self, generator: torch.nn.Module, presses: int = 1) -> None:
        super().__init__()
        self.inner, self.calls, self.presses = generator, 0, presses

    def forward(self, z):
        self.calls += 1
        if self.calls == 4:  # batch 1: one forward for the D step, then this one for the G step
            for _ in range(self.presses):
                os.kill(os.getpid(), signal.SIGINT)
        return self.inner(z)


@pytest.fixture
def sigint_handler():
    """Sets this process's SIGINT handler for one test (a background job inherits SIG_IGN, an
    interactive shell Python's own handler), then puts back the one it found."""
    previous = signal.getsignal(signal.SIGINT)
    yield lambda handler: signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGINT, previous)


def interruptible_trainer(tmp_path):
    """A 5-batch fit with a ``CheckpointOnInterrupt``: ``(trainer, callback)``."""
    import lightning as L

    from facegan.callbacks import CheckpointOnInterrupt

    interrupt = CheckpointOnInterrupt()
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, limit_train_batches=5, limit_val_batches=0, logger=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        callbacks=[interrupt],
    )  # fmt: skip
    return trainer, interrupt


def test_ctrl_c_stops_at_a_batch_boundary_with_a_whole_step_saved(tmp_path, sigint_handler):
    """Python raises KeyboardInterrupt wherever Ctrl-C lands (here: between D's update and G's); the
    checkpoint must hold whole steps: G updated as often as D, EMA and counters in step."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from tests.test_module import tiny_data, tiny_gan

    torch.manual_seed(0)
    gan = tiny_gan(ema_kimg=0.01, g_fresh_latents=True)  # fresh latents: a G forward in the G step
    generator = gan.generator
    gan.generator = CtrlCDuringTheGeneratorStep(generator)
    trainer, interrupt = interruptible_trainer(tmp_path)
    sigint_handler(signal.default_int_handler)  # as under an interactive shell
    with pytest.raises(SIGTERMException) as stopped:
        trainer.fit(gan, tiny_data())
    assert stopped.value.code == 130  # a SystemExit: a user's script exits 130 too, not 0
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    assert interrupt.ctrl_c and interrupt.saved_path is not None
    checkpoint = load_checkpoint(interrupt.saved_path)
    d_updates = checkpoint["facegan"]["d_updates"]
    assert d_updates == 2  # the interrupted batch finished, no later one started
    assert checkpoint["global_step"] == 2 * d_updates  # one G step per D step: none cut off
    assert int(checkpoint["state_dict"]["images_seen"]) == 8 * d_updates


def test_a_second_ctrl_c_stops_at_once_and_saves_nothing(tmp_path, sigint_handler, caplog):

    from tests.test_module import tiny_data, tiny_gan

    gan = tiny_gan()
    gan.generator = CtrlCDuringTheGeneratorStep(gan.generator, presses=2)
    trainer, interrupt = interruptible_trainer(tmp_path)
    sigint_handler(signal.default_int_handler)
    with pytest.raises(SystemExit) as stopped:  # Lightning's exit after a KeyboardInterrupt
        trainer.fit(gan, tiny_data())
    assert stopped.value.code != 0 and isinstance(stopped.value.__context__, KeyboardInterrupt)
    assert gan.generator.calls == 4  # stopped inside the second batch's G step, not at its end
    assert interrupt.saved_path is None and not list(tmp_path.rglob("*.ckpt"))
    assert "Ctrl-C twice: stopped at once, nothing saved" in caplog.text


def test_the_command_exits_130_when_lightning_stops_on_a_keyboard_interrupt(monkeypatch):
    """Lightning ends a fit cut by KeyboardInterrupt with ``sys.exit(1)``; the shell's code is 130."""
    import facegan.cli.trainer
    from facegan.cli.entry import main

    def fit_cut_by_ctrl_c(args, prog):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            sys.exit(1)  # what lightning.pytorch.trainer.call does

    monkeypatch.setattr(facegan.cli.trainer, "main", fit_cut_by_ctrl_c)
    with pytest.raises(SystemExit) as stopped:
        main(["fit"])
    assert stopped.value.code == 130
    # any other exit: as it was
    monkeypatch.setattr(facegan.cli.trainer, "main", lambda args, prog: sys.exit(2))
    with pytest.raises(SystemExit) as stopped:
        main(["fit"])
    assert stopped.value.code == 2


def test_an_ignored_ctrl_c_stays_ignored_through_a_fit(tmp_path, sigint_handler):
    """Under nohup or as a background job SIGINT is ignored: the callback must not turn Ctrl-C back on."""
    import lightning as L

    from facegan.callbacks import CheckpointOnInterrupt
    from tests.test_module import tiny_data, tiny_gan

    seen = []

    class Probe(L.Callback):
        def on_train_batch_start(self, *args):
            seen.append(signal.getsignal(signal.SIGINT))

    sigint_handler(signal.SIG_IGN)
    interrupt = CheckpointOnInterrupt()
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, limit_train_batches=2, limit_val_batches=0, logger=False,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        default_root_dir=tmp_path, callbacks=[interrupt, Probe()],
    )  # fmt: skip
    trainer.fit(tiny_gan(), tiny_data())
    assert seen == [signal.SIG_IGN, signal.SIG_IGN]
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN and not interrupt.ctrl_c


def test_a_full_disk_during_a_checkpoint_save_ends_the_cli_with_one_line_and_keeps_the_last_one(
    tmp_path, monkeypatch
):
    import errno

    import facegan.cli.trainer as trainer_module
    from facegan.cli.entry import main as facegan

    saves = []
    real_save = torch.save

    def disk_full_from_the_third_save(obj, file):
        saves.append(file.name)
        if len(saves) >= 3:  # epoch 0's two files (epoch=...ckpt, last.ckpt) fit; then the disk is full
            file.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, file)

    monkeypatch.setattr(trainer_module.torch, "save", disk_full_from_the_third_save)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        facegan(
            ["fit", "--config", str(REPO / "configs/debug.yaml"), "--trainer.enable_progress_bar", "false"]
        )
    message = str(stop.value.code)
    assert message.startswith("facegan: error: cannot write ") and "No space left on device" in message
    assert "\n" not in message
    monkeypatch.setattr(trainer_module.torch, "save", real_save)
    (last,) = (tmp_path / "lightning_logs").glob("*/checkpoints/last.ckpt")
    assert load_checkpoint(last)["epoch"] == 0  # epoch 0's checkpoint survives the failed epoch-1 save
    assert not list(last.parent.glob(".*.tmp"))


def test_an_output_folder_that_cannot_be_written_fails_before_training_with_one_line(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    command = [sys.executable, "-m", "facegan", "fit", "--config", str(REPO / "configs/debug.yaml")]
    command += ["--trainer.default_root_dir", str(tmp_path / "a-file" / "runs")]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("facegan: error: cannot write ") and "Not a directory" in last, result.stderr[
        -2000:
    ]
    assert "Traceback" not in result.stderr
