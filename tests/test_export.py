"""Hub-ready exports: the folder, its model card, loading it back (folder, format 1, repo id), pushing."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from huggingface_hub import ModelCard, constants
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from facegan import FIDMonitor, load_generator
from facegan.cli.tools import main
from facegan.io.checkpoints import CheckpointError, model_from_checkpoint
from facegan.io.hub import HubError, is_repo_id
from tests.conftest import REPO
from tests.test_module import tiny_data, tiny_gan, tiny_trainer

FILES = {"model.safetensors", "config.json", "README.md", "samples.png"}
HISTORY = [  # as FIDMonitor saves it; KID as the quality work will add it
    {"epoch": 0, "step": 2, "kimg": 0.008, "fid": 301.5, "seconds": 1.0, "num_fake": 500, "num_real": 2000},
    {"epoch": 0, "step": 4, "kimg": 0.016, "fid": 287.456, "kid": 0.31234, "kid_std": 0.0123,
     "seconds": 1.0, "num_fake": 1000, "num_real": 5000},
]  # fmt: skip


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny EMA FaceGAN trained 2 batches of 8, its checkpoint holding a FIDMonitor history."""
    torch.manual_seed(0)
    gan = tiny_gan(ema_kimg=0.01, ema_rampup=None)
    trainer = tiny_trainer(limit_train_batches=2)
    trainer.fit(gan, tiny_data())
    path = tmp_path_factory.mktemp("ckpt") / "ema.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint.setdefault("callbacks", {})[FIDMonitor(num_fake=1000).state_key] = {"history": HISTORY}
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def exported(ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "faces-32"
    main(["export", "--ckpt", str(ckpt), "--out", str(out)])
    return out


@pytest.fixture
def hub_transport(monkeypatch, tmp_path):
    """Route the Hub client's requests to a handler (no request leaves the process); an empty HF cache."""
    import httpx2
    from huggingface_hub import set_client_factory
    from huggingface_hub.utils._http import default_client_factory  # its hooks: offline mode, ids

    def route(handler):
        hooks = default_client_factory().event_hooks
        set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(handler), event_hooks=hooks))

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    yield route
    set_client_factory(default_client_factory)


@pytest.fixture
def no_network(hub_transport):
    """Any request the Hub client sends fails the test."""
    hub_transport(lambda request: pytest.fail(f"a request was sent: {request.url}"))


def test_export_is_a_hub_folder_whose_generator_is_bit_exact(ckpt, exported):
    assert {p.name for p in exported.iterdir()} == FILES
    model = model_from_checkpoint(ckpt)
    with safe_open(str(exported / "model.safetensors"), "pt") as file:
        assert file.metadata() == {"format": "pt"}  # what Hub and transformers loaders expect
        assert set(file.keys()) == set(model.generator_ema.state_dict())  # G only: no D, optimizer
    generator = load_generator(exported)
    z = torch.randn(6, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        loaded = generator(z)
        expected = model.sample(z=z)  # EMA generator, eval mode, standing statistics
        trained = model.generator.eval()(z)
    assert not generator.training and torch.equal(loaded.clamp(-1, 1), expected)  # bit-exact
    assert not torch.allclose(loaded, trained, atol=1e-3)  # the EMA generator was exported, not G
    config = json.loads((exported / "config.json").read_text())
    assert (config["format_version"], config["arch"], config["image_size"], config["latent_dim"]) == (
        2, "dcgan", 32, 16,
    )  # fmt: skip


def test_model_card_reports_the_model_its_training_and_last_evaluation(ckpt, exported):
    card = ModelCard.load(exported / "README.md")
    assert card.data.library_name == "facegan" and card.data.pipeline_tag == "unconditional-image-generation"
    text = card.text
    assert "| Architecture | `dcgan` |" in text and "| Resolution | 32 x 32 px" in text
    assert "| Latent size | 16 " in text and "| Weights | the EMA generator (half-life 0.01 kimg) |" in text
    assert "(16 images shown to the discriminator)" in text  # 2 batches of 8
    # the last evaluation, rounded as printed (FID 2 decimals, KID 4), with its image counts
    assert "| FID | 287.46 | 1,000 | 5,000 | 0.0 |" in text
    assert "| KID | 0.3123 ± 0.0123 | 1,000 | 5,000 | 0.0 |" in text and "301.5" not in text
    recipe = yaml.safe_load(re.search(r"```yaml\n(.*?)```", text, re.S).group(1))["model"]
    hparams = torch.load(ckpt, weights_only=True)["hyper_parameters"]
    assert recipe == {k: list(v) if isinstance(v, tuple) else v for k, v in hparams.items()}
    assert 'facegan.load_generator("faces-32")' in text and "![Samples](samples.png)" in text
    grid = np.asarray(Image.open(exported / "samples.png").convert("RGB"))
    assert grid.shape == (2 + 4 * 34, 2 + 4 * 34, 3)  # 4 x 4 cells of 32 px, 2 px padding
    model = model_from_checkpoint(ckpt)
    first = ((model.sample(z=model.sample_z[:1])[0] + 1) * 127.5).round().clamp(0, 255).byte()
    assert np.array_equal(grid[2:34, 2:34], first.permute(1, 2, 0).numpy())  # the first fixed latent


def test_a_checkpoint_without_fid_says_so(tmp_path):
    gan = tiny_gan()
    path = tmp_path / "untrained.ckpt"
    torch.save({"state_dict": gan.state_dict(), "hyper_parameters": dict(gan.hparams)}, path)
    main(["export", "--ckpt", str(path), "--out", str(tmp_path / "out")])
    text = (tmp_path / "out/README.md").read_text()
    assert "No FID was recorded" in text and "| FID |" not in text and "0.0 kimg (0 images" in text


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_export_files_get_the_usual_permissions(ckpt, tmp_path, umask):
    previous = os.umask(umask)
    try:
        main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "out")])
    finally:
        os.umask(previous)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "out").iterdir()}
    assert modes == dict.fromkeys(FILES, 0o666 & ~umask)  # like any file the user writes


def test_a_format_1_export_still_loads_and_is_recognised(ckpt, tmp_path, capsys):
    model = model_from_checkpoint(ckpt)
    old = tmp_path / "old"
    old.mkdir()  # what the first export wrote: generator.safetensors + config.json, format_version 1
    standing = model.standing_generator().state_dict()  # the EMA generator with standing statistics
    save_file(standing, old / "generator.safetensors", {"format": "facegan-generator"})
    meta = {"format": "facegan-generator", "format_version": 1, "arch": "dcgan", "image_size": 32,
            "latent_dim": 16, "g_channels": 8, "output_range": [-1.0, 1.0]}  # fmt: skip
    (old / "config.json").write_text(json.dumps(meta))
    z = torch.randn(3, 16)
    with torch.no_grad():
        assert torch.equal(load_generator(old)(z).clamp(-1, 1), model.sample(z=z))
    with pytest.raises(SystemExit):
        main(["export", "--ckpt", str(old), "--out", str(tmp_path / "again")])
    assert "is an export folder (the sampling generator only" in capsys.readouterr().err
    (old / "config.json").write_text(json.dumps({**meta, "format_version": 4}))
    with pytest.raises(CheckpointError, match="has format_version 4; this facegan reads 1, 2, 3"):
        load_generator(old)


def test_export_updates_its_own_folder_and_refuses_someone_elses(ckpt, exported, tmp_path, capsys):
    again = tmp_path / "again"
    shutil.copytree(exported, again)
    main(["export", "--ckpt", str(ckpt), "--out", str(again)])  # a re-export replaces its files
    assert {p.name for p in again.iterdir()} == FILES
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("my project")
    with pytest.raises(SystemExit):
        main(["export", "--ckpt", str(ckpt), "--out", str(project)])
    assert "already holds README.md that no facegan export wrote" in capsys.readouterr().err
    assert [p.name for p in project.iterdir()] == ["README.md"]
    assert (project / "README.md").read_text() == "my project"


def test_repo_ids_and_paths_are_told_apart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert is_repo_id("user/faces-64") and is_repo_id("org.name/model_v2.1")
    for local in ("./user/faces", "faces", "a/b/c", "/abs/x", "~/x", "user--x/y", "user/..x"):
        assert not is_repo_id(local), local
    (tmp_path / "user/faces").mkdir(parents=True)
    assert not is_repo_id("user/faces")  # an existing path wins
    assert not is_repo_id(tmp_path / "other/name")  # a Path is always local
    with pytest.raises(CheckpointError, match=r"other/name' does not exist \(a Hub repo is given"):
        load_generator(tmp_path / "other/name")
    with pytest.raises(
        CheckpointError, match=r"'user/faces' is not a facegan export: config.json is missing"
    ):
        load_generator("user/faces")


def test_a_repo_id_without_network_fails_naming_the_repo_and_what_it_needs(no_network, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # what HF_HUB_OFFLINE=1 sets at import
    with pytest.raises(HubError) as error:
        load_generator("user/faces-64", revision="v1")
    message = str(error.value)
    assert "Hub repo 'user/faces-64' (revision 'v1')" in message and "HF_HUB_OFFLINE" in message
    assert "needs network access" in message and "token" in message and "./user/faces-64" in message


def test_a_repo_id_with_the_network_down_fails_clearly(hub_transport):
    import httpx2

    sent = []

    def down(request):
        sent.append(str(request.url))
        raise httpx2.ConnectError("Name or service not known", request=request)

    hub_transport(down)
    with pytest.raises(HubError, match=r"cannot download Hub repo 'user/faces'.*ConnectError.*needs network"):
        load_generator("user/faces")
    assert sent and all("user/faces" in url for url in sent)  # it asked the (simulated) Hub, nothing else


def test_the_cli_without_network_gives_one_line(tmp_path):
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "PYTHONPATH": str(REPO / "src"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "facegan", "generate", "--ckpt", "user/faces", "--out", str(tmp_path / "g.png")],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-2000:]
    assert "Hub repo 'user/faces'" in result.stderr and "HF_HUB_OFFLINE" in result.stderr


def test_a_repo_id_loads_what_the_hub_serves(exported, monkeypatch):
    calls = []

    def snapshot(repo_id, **kwargs):  # the Hub library's download, answered from a local copy
        calls.append((repo_id, kwargs["revision"], sorted(kwargs["allow_patterns"])))
        return str(exported)

    monkeypatch.setattr("facegan.io.hub.snapshot_download", snapshot)
    z = torch.randn(2, 16)
    with torch.no_grad():
        assert torch.equal(load_generator("user/faces", revision="abc")(z), load_generator(exported)(z))
    assert calls == [("user/faces", "abc", ["config.json", "model.safetensors"])]


class FakeApi:
    calls: list = []

    def __init__(self, token=None, **kwargs):
        self.token = token

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, self.token, kwargs["private"], kwargs["exist_ok"]))
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def upload_folder(self, **kwargs):
        self.calls.append(
            ("upload_folder", kwargs["repo_id"], kwargs["folder_path"], kwargs["allow_patterns"])
        )
        return "https://huggingface.co/user/faces/commit/1"


def test_push_to_hub_creates_the_repo_and_uploads_the_folder(ckpt, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("facegan.io.hub.HfApi", FakeApi)
    FakeApi.calls = []
    out = tmp_path / "out"
    main(["export", "--ckpt", str(ckpt), "--out", str(out), "--push-to-hub", "user/faces", "--private",
          "--token", "hf_x"])  # fmt: skip
    assert FakeApi.calls == [
        ("create_repo", "user/faces", "hf_x", True, True),
        (
            "upload_folder",
            "user/faces",
            out,
            ["samples.png", "model.safetensors", "README.md", "config.json"],
        ),
    ]
    assert 'load_generator("user/faces")' in (out / "README.md").read_text()
    assert "pushed" in capsys.readouterr().out


def test_push_without_network_fails_clearly_and_keeps_the_export(
    ckpt, tmp_path, no_network, monkeypatch, capsys
):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    out = tmp_path / "out"
    with pytest.raises(SystemExit):
        main(["export", "--ckpt", str(ckpt), "--out", str(out), "--push-to-hub", "user/faces"])
    err = capsys.readouterr().err
    assert "cannot push" in err and "'user/faces'" in err and "token" in err and "hf upload user/faces" in err
    assert {p.name for p in out.iterdir()} == FILES


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--private"], "--private and --token go with --push-to-hub REPO"),
        (["--push-to-hub", "not a repo"], "--push-to-hub must be a Hub repo id 'owner/name'"),
    ],
)
def test_bad_push_flags_fail_before_anything_is_written(ckpt, tmp_path, flags, message, capsys):
    with pytest.raises(SystemExit):
        main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "out"), *flags])
    assert message in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_an_unwritable_out_ends_export_with_one_line(ckpt, tmp_path, capsys):
    (tmp_path / "blocker").write_text("a file where a folder would have to be")
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "blocker" / "out")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert "cannot write" in err and "blocker/out: Not a directory" in err
