"""What the CLI gives its loggers: the resolved config, every setting once, one key per setting."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import yaml
from jsonargparse import ArgumentParser

from facegan.cli import main
from facegan.cli.resume import SaveAndLogConfig, keyed_by_class, logged_config
from tests.conftest import REPO


def one_process_trainer(folder):
    """What SaveAndLogConfig reads of a Trainer with no logger on one process: its run folder is ``folder``."""
    return SimpleNamespace(
        is_global_zero=True,
        loggers=[],
        default_root_dir=str(folder),
        strategy=SimpleNamespace(broadcast=lambda x: x),
    )


def test_config_files_of_a_run_resumes_and_a_refused_overwrite(tmp_path):
    parser = ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.1)
    save = lambda lr, **kwargs: SaveAndLogConfig(parser, parser.parse_args([f"--lr={lr}"]), **kwargs)  # noqa: E731
    trainer = one_process_trainer(tmp_path / "run")
    save(0.1, overwrite=True).setup(trainer, None, "fit")
    for lr in (0.2, 0.3):  # each resume its own file; the run's config.yaml stays
        resume = save(lr, overwrite=True)
        resume.resuming = True
        resume.setup(trainer, None, "fit")
    files = {p.name: yaml.safe_load(p.read_text())["lr"] for p in (tmp_path / "run").iterdir()}
    assert files == {"config.yaml": 0.1, "config-resume-1.yaml": 0.2, "config-resume-2.yaml": 0.3}
    with pytest.raises(RuntimeError, match=r"run/config.yaml already exists: give this run another folder"):
        save(0.4, overwrite=False).setup(trainer, None, "fit")
    assert yaml.safe_load((tmp_path / "run/config.yaml").read_text())["lr"] == 0.1


def test_lists_of_classes_become_mappings_keyed_by_class_name():
    fid = {"class_path": "facegan.FIDMonitor", "init_args": {"num_fake": 8}}
    other = {"class_path": "my.project.Sampler"}
    config = {
        "trainer": {"callbacks": [fid, other, {**fid, "init_args": {"num_fake": 16}}]},
        "tags": ["a", "b"],
    }
    assert keyed_by_class(config) == {
        "trainer": {
            "callbacks": {
                "FIDMonitor": fid,
                "Sampler": other,
                "FIDMonitor_2": {**fid, "init_args": {"num_fake": 16}},
            }
        },
        "tags": ["a", "b"],  # plain lists stay lists
    }
    assert keyed_by_class({"callbacks": []}) == {"callbacks": []}


def test_the_logged_config_is_config_yaml_with_callbacks_keyed_and_none_settings_kept(tmp_path):
    overlay = tmp_path / "fid.yaml"
    fid = {"class_path": "facegan.FIDMonitor", "init_args": {"num_fake": 8, "weights_path": None}}
    overlay.write_text(yaml.safe_dump({"trainer": {"callbacks": [fid]}}))
    cli = main(["--config", str(REPO / "configs/debug.yaml"), "--config", str(overlay)], run=False)
    logged = logged_config(cli.parser, cli.config)
    assert "config" not in logged  # the --config paths are not settings
    assert logged["trainer"]["callbacks"]["FIDMonitor"]["init_args"]["num_fake"] == 8
    assert logged["trainer"]["callbacks"]["FIDMonitor"]["init_args"]["cache_dir"] is None
    assert logged["model"]["ada_target"] is None and logged["data"]["root"] is None  # None settings kept
    assert "image_size" not in logged["model"] and logged["data"]["image_size"] == 64  # linked: set once
    assert cli.trainer.enable_autolog_hparams is False  # Lightning's flat copy of the hparams is off
