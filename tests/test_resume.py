"""Resuming: `fit --ckpt_path last` continues exactly (bit-identical weights) and in the same run."""

from __future__ import annotations

import fractions
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from facegan.cli import main
from tests.conftest import REPO
from tests.test_score import pngs

DEBUG = str(REPO / "configs/debug.yaml")


# With an EMA generator and lazy R1, whose state (EMA weights, R1 step phase) must resume too.
EMA_R1 = ["--model.ema_kimg", "0.05", "--model.r1_gamma", "0.1", "--model.r1_every", "2"]
# Adaptive augmentation: p and its interval's partial sums (3 D updates per epoch, 4 per interval).
# The target is below this seed's first r_t (0.375), so p moves off 0 at the first adjustment.
ADA = ["--model.augment", "translation", "--model.ada_target", "0.3", "--model.ada_kimg", "0.1"]


def fit(*args: str):
    return main(["fit", "--config", DEBUG, "--trainer.enable_progress_bar", "false", *EMA_R1, *args])


def state(path):
    checkpoint = torch.load(path, weights_only=True)
    return checkpoint["state_dict"], checkpoint["optimizer_states"], checkpoint["facegan"]


@pytest.mark.parametrize("workers", ["0", "1"])
def test_two_epochs_equal_one_epoch_resume_one_epoch(tmp_path, monkeypatch, workers):
    """Also with a loader worker: fresh workers each epoch take their flips' random stream from the
    trainer's, which the checkpoint holds (persistent ones differed: state_dict difference 0.064)."""
    (tmp_path / "straight").mkdir()
    (tmp_path / "resumed").mkdir()
    data = ["--data.num_workers", workers, *ADA]
    monkeypatch.chdir(tmp_path / "straight")
    fit("--trainer.max_epochs", "2", *data)
    monkeypatch.chdir(tmp_path / "resumed")
    fit("--trainer.max_epochs", "1", *data)
    cli = fit("--trainer.max_epochs", "2", "--ckpt_path", "last", *data)

    assert cli.trainer.current_epoch == 2 and int(cli.model.images_seen) == 2 * 3 * 8
    weights, optimizers, facegan = state(tmp_path / "straight/lightning_logs/version_0/checkpoints/last.ckpt")
    weights2, optimizers2, facegan2 = state(
        tmp_path / "resumed/lightning_logs/version_0/checkpoints/last.ckpt"
    )
    assert facegan["d_updates"] == facegan2["d_updates"] == 6
    # ADA: one adjustment (after 4 updates) moved p off 0 by 32 images / 100; 2 updates of the next interval.
    assert facegan["ada"] == facegan2["ada"] and facegan["ada"]["steps"] == 2
    assert facegan["ada"]["p"] == pytest.approx(0.32)
    assert any(name.startswith("generator_ema.") for name in weights)
    for name, value in weights.items():
        assert torch.equal(value, weights2[name]), name  # G, D, EMA G, sample_z, images_seen
    for opt, opt2 in zip(optimizers, optimizers2, strict=True):
        for key, slot in opt["state"].items():
            assert all(torch.equal(slot[k], opt2["state"][key][k]) for k in slot)
    # The resumed run kept writing into its own folder: no second version, both epochs' grids there.
    run = tmp_path / "resumed/lightning_logs"
    assert [p.name for p in run.iterdir()] == ["version_0"]
    assert sorted(p.name for p in (run / "version_0/samples").iterdir()) == [
        "epoch=0000-kimg=0.024.png",
        "epoch=0001-kimg=0.048.png",
    ]


def test_a_folder_of_images_resumes_exactly_too(tmp_path, monkeypatch):
    """The training set is decoded at each start, after the checkpoint's random streams are restored:
    the decoding must leave them alone (its loader drew its seed from them, and every weight differed)."""
    faces = pngs(tmp_path / "faces", 40, 32, 128, seed=0)
    data = ["--data.root", str(faces), "--data.image_size", "32", "--data.flip", "true"]
    for folder in ("straight", "resumed"):
        (tmp_path / folder).mkdir()
    monkeypatch.chdir(tmp_path / "straight")
    fit("--trainer.max_epochs", "2", *data)
    monkeypatch.chdir(tmp_path / "resumed")
    fit("--trainer.max_epochs", "1", *data)
    fit("--trainer.max_epochs", "2", "--ckpt_path", "last", *data)

    weights, _, facegan = state(tmp_path / "straight/lightning_logs/version_0/checkpoints/last.ckpt")
    weights2, _, facegan2 = state(tmp_path / "resumed/lightning_logs/version_0/checkpoints/last.ckpt")
    assert facegan["d_updates"] == facegan2["d_updates"] == 6
    for name, value in weights.items():
        assert torch.equal(value, weights2[name]), name


def test_ckpt_path_last_without_a_checkpoint_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        ValueError, match=r"--ckpt_path last: no last.ckpt under .*lightning_logs/\*/checkpoints/"
    ):
        fit("--ckpt_path", "last")
    with pytest.raises(ValueError, match="does not exist"):
        fit("--ckpt_path", str(tmp_path / "nope.ckpt"))


@pytest.mark.parametrize("subcommand", ["validate", "test"])
def test_validate_and_test_evaluate_the_checkpoint_or_fail(subcommand, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = ["--config", DEBUG, "--trainer.enable_progress_bar", "false", *EMA_R1]
    with pytest.raises(ValueError, match=rf"{subcommand} needs --ckpt_path"):
        main([subcommand, *common])
    with pytest.raises(ValueError, match="--ckpt_path last: no last.ckpt under"):
        main([subcommand, *common, "--ckpt_path", "last"])
    fit("--trainer.max_epochs", "1")
    (last,) = (tmp_path / "lightning_logs").glob("*/checkpoints/last.ckpt")
    cli = main([subcommand, *common, "--ckpt_path", "last"])
    saved = torch.load(last, weights_only=True)["state_dict"]
    evaluated = cli.model.state_dict()
    assert all(torch.equal(evaluated[k].cpu(), v) for k, v in saved.items())  # not a fresh model
    assert {"validate": "val", "test": "test"}[subcommand] + "/d_real" in cli.trainer.callback_metrics


def test_a_resume_with_other_settings_is_refused_naming_each_of_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fit("--trainer.max_epochs", "1")
    (last,) = (tmp_path / "lightning_logs").glob("*/checkpoints/last.ckpt")
    config = (last.parent.parent / "config.yaml").read_text()
    changed = ["--model.augment", "cutout", "--model.d_lr", "0.001", "--data.image_size", "32"]
    with pytest.raises(ValueError) as error:
        fit("--trainer.max_epochs", "2", "--ckpt_path", "last", *changed)
    message = str(error.value)
    for expected in (
        "--model.augment: 'color,translation' in the checkpoint, 'cutout' now",
        "--model.d_lr: 0.0002 in the checkpoint, 0.001 now",
        "--data.image_size: 64 in the checkpoint, 32 now",
        "--model.image_size: 64 in the checkpoint, 32 now",
        "--allow_recipe_change true",
    ):
        assert expected in message
    assert "--model.g_lr" not in message and "num_workers" not in message  # unchanged, execution only
    assert (last.parent.parent / "config.yaml").read_text() == config  # the failed attempt changed nothing
    # Deliberately: the new learning rate goes on from the checkpoint.
    cli = fit(
        "--trainer.max_epochs",
        "2",
        "--ckpt_path",
        "last",
        "--model.d_lr",
        "0.001",
        "--allow_recipe_change",
        "true",
    )
    assert cli.trainer.current_epoch == 2 and cli.model.hparams.d_lr == 0.001


def test_a_checkpoint_of_another_architecture_or_a_pickle_fails_with_one_line(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    env = {"PYTHONPATH": str(REPO / "src"), "WANDB_MODE": "offline", "PATH": "/usr/bin:/bin"}
    command = [
        sys.executable,
        "-m",
        "facegan",
        "fit",
        "--config",
        DEBUG,
        "--trainer.enable_progress_bar",
        "false",
    ]
    first = subprocess.run(
        [*command, "--trainer.max_epochs", "1"], cwd=run, env=env, capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr[-2000:]
    other = subprocess.run(
        [*command, "--model.arch", "resnet", "--ckpt_path", "last"],
        cwd=run,
        env=env,
        capture_output=True,
        text=True,
    )
    assert other.returncode == 1
    assert other.stderr.strip().splitlines()[-1].startswith("facegan: error: --ckpt_path ")
    assert "--model.arch: 'dcgan' in the checkpoint, 'resnet' now" in other.stderr
    assert "Traceback" not in other.stderr
    torch.save({"state_dict": {}, "hyper_parameters": {}, "x": fractions.Fraction(1, 3)}, tmp_path / "p.ckpt")
    pickled = subprocess.run(
        [*command, "--ckpt_path", str(tmp_path / "p.ckpt")], cwd=run, env=env, capture_output=True, text=True
    )
    assert pickled.returncode == 1 and "Traceback" not in pickled.stderr
    assert "holds objects other than tensors" in pickled.stderr and "weights_only=False" not in pickled.stderr


def test_a_resume_takes_the_settings_it_does_not_give_from_the_checkpoint(tmp_path, monkeypatch):
    """No repeated --config: settings left at their defaults come from the checkpoint, and nothing the
    first part wrote is lost (its config.yaml stays, its metrics.csv rows stay, in order)."""
    monkeypatch.chdir(tmp_path)
    fit("--trainer.max_epochs", "1", "--model.augment", "cutout", "--model.d_lr", "0.001")
    run = tmp_path / "lightning_logs/version_0"
    config, metrics = (run / "config.yaml").read_bytes(), (run / "metrics.csv").read_text().splitlines()
    assert len(metrics) > 3
    cli = fit("--trainer.max_epochs", "2", "--ckpt_path", "last")
    assert cli.trainer.current_epoch == 2
    assert cli.model.hparams.augment == "cutout" and cli.model.hparams.d_lr == 0.001
    assert (run / "config.yaml").read_bytes() == config  # the run's own config is never overwritten
    resumed = yaml.safe_load((run / "config-resume-1.yaml").read_text())
    assert resumed["model"]["augment"] == "cutout" and resumed["ckpt_path"].endswith("last.ckpt")
    after = (run / "metrics.csv").read_text().splitlines()
    header, rows = (
        after[0].split(","),
        [dict(zip(after[0].split(","), line.split(","), strict=True)) for line in after[1:]],
    )
    first = [dict(zip(metrics[0].split(","), line.split(","), strict=True)) for line in metrics[1:]]
    assert len(rows) > len(first)
    for old, new in zip(first, rows, strict=False):  # the first part's rows, then the second's
        assert {k: v for k, v in new.items() if v} == {k: v for k, v in old.items() if v}
    assert {"epoch"} <= set(header) and rows[-1]["epoch"] == "1"


def test_a_refused_resume_leaves_the_run_as_it_was(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fit("--trainer.max_epochs", "1")
    run = tmp_path / "lightning_logs/version_0"
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(ValueError, match=r"--model.arch: 'dcgan' in the checkpoint, 'resnet' now"):
        fit("--trainer.max_epochs", "2", "--ckpt_path", "last", "--model.arch", "resnet")
    last = run / "checkpoints/last.ckpt"  # named as a file too: LightningCLI would adopt its settings
    with pytest.raises(ValueError, match=r"--model.arch: 'dcgan' in the checkpoint, 'resnet' now"):
        fit("--trainer.max_epochs", "2", "--ckpt_path", str(last), "--model.arch", "resnet")
    with pytest.raises(
        ValueError, match=r"--trainer.precision: '32-true' in the run's config.yaml, 'bf16-mixed' now"
    ):
        fit("--trainer.max_epochs", "2", "--ckpt_path", "last", "--trainer.precision", "bf16-mixed")
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in (tmp_path / "lightning_logs").iterdir()) == ["version_0"]


def test_without_a_logger_a_second_run_does_not_overwrite_the_first(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fit("--trainer.max_epochs", "1", "--trainer.logger", "false")
    before = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert Path("config.yaml") in before and any(p.parts[0] == "samples" for p in before)
    with pytest.raises(ValueError, match=r"already holds a run \(config.yaml, checkpoints, samples\)"):
        fit("--trainer.max_epochs", "1", "--trainer.logger", "false")
    assert {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    cli = fit(
        "--trainer.max_epochs", "2", "--trainer.logger", "false", "--ckpt_path", "last"
    )  # resuming it is fine
    assert (
        cli.trainer.current_epoch == 2
        and (tmp_path / "config.yaml").read_bytes() == before[Path("config.yaml")]
    )
    assert (tmp_path / "config-resume-1.yaml").is_file()


def test_a_setting_given_equal_to_its_default_is_refused_when_the_checkpoint_differs(tmp_path, monkeypatch):
    """`--model.arch dcgan` names the default: still an explicit choice, not one to drop silently."""
    monkeypatch.chdir(tmp_path)
    fit("--trainer.max_epochs", "1", "--model.arch", "resnet", "--model.augment", "cutout")
    with pytest.raises(ValueError) as error:
        fit("--trainer.max_epochs", "2", "--ckpt_path", "last", "--model.arch", "dcgan")
    assert "--model.arch: 'resnet' in the checkpoint, 'dcgan' now" in str(error.value)
    assert "augment" not in str(error.value)  # left out: taken from the checkpoint, not refused
    overlay = tmp_path / "augment.yaml"  # a --config file gives settings as much as a flag does
    overlay.write_text("model:\n  augment: color,translation\n")
    with pytest.raises(
        ValueError, match=r"--model.augment: 'cutout' in the checkpoint, 'color,translation' now"
    ):
        fit("--trainer.max_epochs", "2", "--ckpt_path", "last", "--config", str(overlay))
    cli = fit("--trainer.max_epochs", "2", "--ckpt_path", "last")
    assert (cli.model.hparams.arch, cli.model.hparams.augment) == ("resnet", "cutout")
    assert cli.trainer.current_epoch == 2
