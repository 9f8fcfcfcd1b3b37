import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from facegan import FaceGAN
from facegan.cli import main
from facegan.cli.trainer import FaceGANCLI
from tests.conftest import REPO

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_every_config_parses_and_instantiates(config, tmp_path):
    args = ["fit", "--config", str(config), "--print_config"]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 0
    # The model section must also construct (print_config only type-checks it).
    settings = yaml.safe_load(config.read_text())
    if "model" in settings and "arch" in settings["model"]:
        model = FaceGAN(**settings["model"], image_size=settings["data"]["image_size"])
        assert model.hparams.arch == settings["model"]["arch"]


def test_print_config_shows_every_part(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--print_config"])
    out = capsys.readouterr().out
    for key in ("model:", "arch: dcgan", "data:", "image_size: 64", "samples:", "checkpoint:", "trainer:"):
        assert key in out
    model = yaml.safe_load(out)["model"]  # the CPU-friendly defaults of `python -m facegan fit`
    assert (model["g_channels"], model["d_channels"], model["augment"]) == (32, 32, "color,translation")
    assert model["g_lr"] == model["d_lr"] == 2e-4


def test_image_size_is_linked_from_data_to_model(tmp_path):
    cli = main(
        [
            "fit",
            "--config",
            str(REPO / "configs/debug.yaml"),
            "--data.image_size",
            "32",
            "--trainer.max_epochs",
            "0",
            "--trainer.logger",
            "false",
            "--trainer.default_root_dir",
            str(tmp_path),
        ]
    )
    assert cli.model.hparams.image_size == 32 and cli.datamodule.image_size == 32
    assert cli.model.sample(2).shape == (2, 3, 32, 32)


def test_fit_with_debug_overlay_runs_end_to_end_in_a_subprocess(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, "-m", "facegan", "fit", "--config", str(REPO / "configs/debug.yaml")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "lightning_logs" / "version_0"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    grids = sorted((run / "samples").glob("*.png"))
    assert [g.name for g in grids] == ["epoch=0000-kimg=0.024.png", "epoch=0001-kimg=0.048.png"]
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["state_dict"]["images_seen"].item() == 2 * 3 * 8
    assert checkpoint["global_step"] == 2 * 3 * 2  # a D and a G step per batch
    assert "inception" not in " ".join(checkpoint["state_dict"])
    assert (run / "config.yaml").is_file() and (run / "metrics.csv").is_file()


def test_resume_from_last_checkpoint_continues_counters(tmp_path):
    common = [
        "fit",
        "--config",
        str(REPO / "configs/debug.yaml"),
        "--trainer.default_root_dir",
        str(tmp_path),
    ]
    main([*common, "--trainer.max_epochs", "1"])
    last = Path(tmp_path) / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    cli = main([*common, "--trainer.max_epochs", "2", "--ckpt_path", str(last)])
    assert cli.model.images_seen == 2 * 3 * 8
    assert cli.trainer.global_step == 12


@pytest.mark.parametrize("arch", ["keras", "dcgan", "resnet"])
def test_every_architecture_is_selectable_from_flags_alone(arch):
    size = "128" if arch == "keras" else "64"
    cli = main(["--model.arch", arch, "--data.image_size", size], run=False)
    assert cli.model.hparams.arch == arch and cli.model.net_config.image_size == int(size)
    widths = (cli.model.hparams.g_channels, cli.model.hparams.d_channels)
    assert widths == ((None, None) if arch == "keras" else (32, 32))  # the CLI's CPU widths elsewhere


@pytest.mark.parametrize(
    ("args", "built"),
    [
        (["fit"], 1),
        (["validate"], 1),
        (["fit", "--trainer.default_root_dir", "test"], 3),  # two names: every parser, as LightningCLI
    ],
)
def test_only_the_named_subcommands_parser_is_built(monkeypatch, capsys, args, built):
    """LightningCLI builds one parser per subcommand (the Trainer, FaceGAN, data and callbacks read
    for each): a command builds the one it names, unless another subcommand's name appears in it."""
    calls = []
    original = FaceGANCLI.add_arguments_to_parser  # called once per subcommand parser

    def counting(self, parser):
        calls.append(1)
        return original(self, parser)

    monkeypatch.setattr(FaceGANCLI, "add_arguments_to_parser", counting)
    with pytest.raises(SystemExit):
        main([*args, "--print_config"])
    assert len(calls) == built
    assert "arch: dcgan" in capsys.readouterr().out


def test_help_lists_every_subcommand_and_the_installed_command_runs_them(tmp_path):
    result = subprocess.run([sys.executable, "-m", "facegan", "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for name in ("fit", "validate", "test", "generate", "export"):
        assert f"\n  {name} " in result.stdout
    project = (REPO / "pyproject.toml").read_text()
    assert 'facegan = "facegan.cli.entry:main"' in project  # the installed command is this entry point
    script = Path(sys.executable).parent / "facegan"
    if not script.is_file():
        pytest.skip(f"the facegan command is not installed beside {sys.executable} (pip install -e .)")
    result = subprocess.run([str(script), "generate", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--truncation" in result.stdout, result.stderr
    result = subprocess.run([str(script), "fit", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--model.arch" in result.stdout, result.stderr


BILLION_LAUGHS = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def test_a_config_whose_aliases_explode_is_refused_at_once_with_one_line(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BILLION_LAUGHS)
    result = subprocess.run(
        [sys.executable, "-m", "facegan", "fit", "--config", str(bomb)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"facegan: error: --config '{bomb}': its YAML aliases expand to 490,329,064 values (at most "
        "100,000); a config that large is not a recipe: write the settings out without nested aliases "
        "(FACEGAN_TRACEBACK=1 shows where)"
    ]
    assert not (tmp_path / "lightning_logs").exists()


def test_the_settings_a_command_gives_come_from_flags_and_config_files(tmp_path):
    from facegan.cli.resume import given_settings

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "model:\n  arch: dcgan\n  g_lr: 0.001\ndata:\n  batch_size: 32\ntrainer:\n  max_epochs: 3\n"
    )
    top = tmp_path / "top.yaml"
    top.write_text("fit:\n  data:\n    root: faces\n")
    data = tmp_path / "data.yaml"
    data.write_text("flip: false\n")
    args = ["fit", "--config", str(recipe), f"--config={top}", "--model.loss=hinge", "--data.image_size"]
    args += ["32", "--data", str(data), "--trainer.max_epochs", "2"]
    assert given_settings(args) == {
        "model.arch", "model.g_lr", "data.batch_size", "data.root", "model.loss", "data.image_size",
        "data.flip",
    }  # fmt: skip
    assert given_settings({"model": {"ema_kimg": None}, "trainer": {}}) == {"model.ema_kimg"}
