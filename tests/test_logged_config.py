"""What the CLI gives its loggers: the resolved config, every setting once, one key per setting."""

from __future__ import annotations

import yaml

from facegan.cli import main
from facegan.cli.logged_config import keyed_by_class, logged_config
from tests.conftest import REPO


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
    assert logged["model"]["ema_kimg"] is None and logged["data"]["root"] is None  # None settings kept
    assert "image_size" not in logged["model"] and logged["data"]["image_size"] == 64  # linked: set once
    assert cli.trainer.enable_autolog_hparams is False  # Lightning's flat copy of the hparams is off
