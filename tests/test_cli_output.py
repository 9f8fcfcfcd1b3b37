"""What the command line prints: no library notices, one line per mistake or stop, one step counter."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from facegan.cli.entry import main

# A short default fit: 4 batches of 4 images per epoch at 32 px, every batch logged.
TINY = ["--data.image_size", "32", "--data.batch_size", "4", "--data.num_procedural", "16",
        "--trainer.limit_val_batches", "0", "--trainer.log_every_n_steps", "1",
        "--samples.num_images", "4", "--trainer.enable_progress_bar", "false"]  # fmt: skip
# What the libraries printed on every fit or stop before (issue 25), none of which a user can act on.
NOTICES = ("💡 Tip", "litlogger", "litmodels", "LeafSpec", "tensorboardX", "weights_only", "Received SIGTERM")
PYTHON_WARNING = re.compile(r"\w+Warning: ")  # how `warnings` prints any warning


def fit(cwd: Path, *args: str, **kwargs) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}  # every warning shows
    return subprocess.Popen(
        [sys.executable, "-m", "facegan", "fit", *TINY, *args],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs,
    )  # fmt: skip


def metrics_steps(run: Path) -> list[int]:
    with open(run / "metrics.csv") as file:
        return sorted({int(row["step"]) for row in csv.DictReader(file) if row.get("train/d_loss")})


def test_a_default_fit_prints_no_library_notices_and_names_checkpoints_by_the_logged_step(tmp_path):
    process = fit(tmp_path, "--trainer.max_epochs", "2")
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]
    assert [notice for notice in NOTICES if notice in output] == [], output
    assert PYTHON_WARNING.findall(output) == [], output
    run = tmp_path / "lightning_logs/version_0"
    assert metrics_steps(run) == list(range(8))  # 2 epochs of 4 batches: steps 0-7, one per batch
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["epoch=0001-step=7.ckpt", "last.ckpt"]  # global_step would say 16
    saved = torch.load(run / "checkpoints/epoch=0001-step=7.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == 16 and saved["state_dict"]["images_seen"].item() == 8 * 4


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_stop_mid_fit_is_one_line_whose_step_is_the_last_row_of_metrics_csv(tmp_path, sig):
    # As a terminal's Ctrl-C (or `timeout`) does: the whole process group, data loader workers included,
    # gets the signal; before, each worker repeated the trainer's Ctrl-C line.
    process = fit(
        tmp_path, "--trainer.max_epochs", "100000", "--data.num_workers", "2",
        start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    run = tmp_path / "lightning_logs/version_0"
    deadline = time.time() + 120
    while len(list((run / "checkpoints").glob("epoch=*.ckpt"))) < 1 and time.time() < deadline:
        time.sleep(0.2)  # training is under way once an epoch's checkpoint exists
    assert process.poll() is None, process.communicate()[0][-3000:]
    os.killpg(process.pid, sig)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 128 + sig, output[-3000:]
    assert [notice for notice in NOTICES if notice in output] == [], output
    stops = [line for line in output.splitlines() if "Ctrl-C" in line or "SIGTERM" in line]
    assert len(stops) == 1, output
    name = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}[sig]
    last = run / "checkpoints/last.ckpt"
    found = re.fullmatch(rf"{name} at step (\d+): saved {re.escape(str(last))}; resume with .*", stops[0])
    assert found, stops[0]
    step = int(found.group(1))
    assert metrics_steps(run)[-1] == step  # the last batch's row
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert saved["state_dict"]["images_seen"].item() == 4 * (step + 1)
    for path in (run / "checkpoints").glob("epoch=*.ckpt"):  # epoch E ends with the step of batch 4(E+1)
        epoch, named = map(int, re.fullmatch(r"epoch=(\d+)-step=(\d+)\.ckpt", path.name).groups())
        assert named == 4 * (epoch + 1) - 1 and named in metrics_steps(run)


def test_an_unknown_flag_is_one_line_with_the_closest_flag_and_the_real_program_name(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "facegan", "fit", "--data.roots", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "python -m facegan fit: error: unknown option --data.roots; did you mean --data.root? "
        "(`python -m facegan fit --help` lists every option)"
    ]
    assert list(tmp_path.iterdir()) == []


def test_a_bad_value_is_one_line_naming_the_setting(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--data.batch_size", "four"], prog="facegan")
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "facegan fit: error: Parser key \"data.batch_size\": Expected a <class 'int'>. Got value: four "
        "(`facegan fit --help` lists every option)"
    ]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without a CUDA GPU")
@pytest.mark.parametrize("accelerator", ["gpu", "cuda"])
def test_a_gpu_asked_for_on_a_machine_without_one_is_one_line_saying_what_to_do(
    tmp_path, monkeypatch, accelerator
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--trainer.accelerator", accelerator], prog="facegan")
    message = str(stop.value.code)
    assert message.startswith(f"facegan: error: --trainer.accelerator {accelerator} --trainer.devices auto: ")
    cuda = "no CUDA GPU" if torch.version.cuda else "a PyTorch without CUDA support"
    assert message.endswith(
        f"this machine has {cuda} (torch.cuda.is_available() is False): leave --trainer.accelerator out "
        "(auto picks what is there) or give --trainer.accelerator cpu (FACEGAN_TRACEBACK=1 shows where)"
    )
    assert "\n" not in message and list(tmp_path.iterdir()) == []


def test_a_device_count_lightning_refuses_is_one_line_with_the_valid_forms(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--trainer.accelerator", "cpu", "--trainer.devices", "0"], prog="facegan")
    assert str(stop.value.code) == (
        "facegan: error: --trainer.accelerator cpu --trainer.devices 0: `Trainer(devices='0')` value is not a "
        "valid input using cpu accelerator. --trainer.accelerator takes auto, cpu, cuda (or gpu) or mps; "
        "--trainer.devices a count (1, 2, ...), -1 or auto for all, or GPU indices such as [0,1] "
        "(FACEGAN_TRACEBACK=1 shows where)"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_fit_that_fails_before_training_leaves_no_run_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing = ["fit", *TINY, "--data.root", str(tmp_path / "nowhere")]
    with pytest.raises(SystemExit) as stop:
        main(missing, prog="facegan")
    assert "FaceDataModule: `root`" in str(stop.value.code) and "does not exist" in str(stop.value.code)
    assert list(tmp_path.iterdir()) == []  # no lightning_logs/version_0, no lightning_logs
    (tmp_path / "lightning_logs/version_0").mkdir(parents=True)  # an earlier run's folder stays
    with pytest.raises(SystemExit):
        main(missing, prog="facegan")
    assert [p.name for p in (tmp_path / "lightning_logs").iterdir()] == ["version_0"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["generate", "--ckpt", "x.ckpt", "--out", "y.png", "--nmu", "3"],
         "facegan generate: error: unknown option --nmu; did you mean --num? (`facegan generate --help` lists every option)"),
        (["score", "a"],
         "facegan score: error: the following arguments are required: REAL (`facegan score --help` lists every option)"),
        (["fitt"], "facegan: error: unknown subcommand 'fitt'; did you mean fit? (`facegan --help` lists them)"),
    ],
)  # fmt: skip
def test_a_mistake_in_any_subcommand_is_one_line(args, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(args, prog="facegan")
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines() == [expected]
    assert list(tmp_path.iterdir()) == []
