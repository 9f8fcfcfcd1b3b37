"""A user's own generator and discriminator: trained with an EMA, sampled, checkpointed, loaded back,
generated from and exported (recorded as class_path + init_args, never pickled), from Python and from a
YAML config; what breaks the contract is refused with one message."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch import nn

from facegan import FaceGAN, export_generator, load_generator
from facegan.cli import main as facegan_cli
from facegan.cli.entry import main as facegan
from facegan.cli.generate import seeded, truncated_normal
from facegan.cli.tools import main as tools
from facegan.images import to_uint8
from facegan.io.checkpoints import CheckpointError, load_checkpoint, model_from_checkpoint
from facegan.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from facegan.nets.r3gan import R3GANDiscriminator, R3GANGenerator
from facegan.nets.resnet import ResNetDiscriminator, ResNetGenerator
from tests.conftest import REPO
from tests.test_module import tiny_data, tiny_trainer

HERE = "tests.test_own_networks"


class TinyG(nn.Module):
    """z (N, latent_dim) -> (N, 3, 32, 32) in [-1, 1], with BatchNorm (standing statistics apply)."""

    def __init__(self, latent_dim: int = 16, width: int = 8, side: int = 32) -> None:
        super().__init__()
        self.latent_dim, self.width, self.side = latent_dim, width, side
        self.net = nn.Sequential(
            nn.Linear(latent_dim, width * 8 * 8),
            nn.Unflatten(1, (width, 8, 8)),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Upsample(size=side),
            nn.Conv2d(width, 3, 3, padding=1),
            nn.Tanh(),
        )

    def forward(self, z):
        return self.net(z)


class TinyD(nn.Module):
    """Images (N, 3, 32, 32) -> logits (N,); ``keepdim`` gives the (N, 1) that is refused."""

    def __init__(self, width: int = 8, keepdim: bool = False) -> None:
        super().__init__()
        self.width, self.keepdim = width, keepdim
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 4, 4), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(width * 64, 1)
        )

    def forward(self, x):
        logits = self.net(x)  # (N, 1)
        return logits if self.keepdim else logits.flatten()


class NoLatentDim(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(16, 3 * 32 * 32)

    def forward(self, z):
        return self.net(z).view(-1, 3, 32, 32).tanh()


class ForgetsWidth(TinyG):
    def __init__(self, latent_dim: int = 16, width: int = 8) -> None:
        super().__init__(latent_dim, width)
        del self.width  # not kept: a checkpoint could not rebuild it


def own_gan(**kwargs) -> FaceGAN:
    torch.manual_seed(0)
    return FaceGAN(**{"generator": TinyG(), "discriminator": TinyD(), "image_size": 32, **kwargs})


def flat(net: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in net.parameters()])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An own-network GAN with an EMA after 3 batches, its EMA weights before training, its checkpoint."""
    gan = own_gan(ema_kimg=0.01, ema_rampup=None)  # a 10-image half-life: the EMA follows G closely
    before = flat(gan.generator_ema).clone()
    trainer = tiny_trainer()
    trainer.fit(gan, tiny_data())
    ckpt = tmp_path_factory.mktemp("own") / "own.ckpt"
    trainer.save_checkpoint(ckpt)
    return gan, before, ckpt


def test_own_networks_train_and_the_ema_moves_toward_g(trained):
    gan, before, _ = trained
    assert type(gan.generator) is TinyG and type(gan.generator_ema) is TinyG
    g, ema = flat(gan.generator), flat(gan.generator_ema)
    assert not torch.equal(ema, before)  # the EMA was updated ...
    assert (ema - g).norm() < 0.5 * (before - g).norm()  # ... toward G's trained weights
    assert not torch.equal(ema, g)  # an average, not a copy
    assert gan.images_seen == 3 * 8


def test_sample_gives_images_in_range_from_the_ema_generator(trained):
    gan, _, _ = trained
    z = torch.randn(5, 16, generator=torch.Generator().manual_seed(1))
    images = gan.sample(z=z)
    assert images.shape == (5, 3, 32, 32) and images.min() >= -1 and images.max() <= 1
    assert torch.allclose(gan.sample(z=z[:2]), images[:2], atol=1e-6)  # an image depends on its z only
    assert gan.hparams.latent_dim == 16


def test_checkpoints_record_the_networks_and_load_back_with_identical_samples(trained):
    gan, _, ckpt = trained
    hparams = load_checkpoint(ckpt)["hyper_parameters"]  # weights_only: no pickled module in it
    assert hparams["generator"] == {
        "class_path": f"{HERE}.TinyG",
        "init_args": {"latent_dim": 16, "width": 8, "side": 32},
    }
    assert hparams["discriminator"] == {
        "class_path": f"{HERE}.TinyD",
        "init_args": {"width": 8, "keepdim": False},
    }
    loaded = FaceGAN.load_from_checkpoint(ckpt)
    z = torch.randn(4, 16, generator=torch.Generator().manual_seed(2))
    assert torch.equal(loaded.sample(z=z), gan.sample(z=z))
    assert loaded.images_seen == gan.images_seen


def test_generate_on_the_checkpoint_writes_the_models_images_with_trust_code(trained, tmp_path, capsys):
    gan, _, ckpt = trained
    with pytest.raises(SystemExit) as stop:
        tools(["generate", "--ckpt", str(ckpt), "--out", str(tmp_path / "refused"), "--num", "3"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"names its own network classes (generator '{HERE}.TinyG', discriminator '{HERE}.TinyD')" in err
    assert "--trust-code" in err and not list((tmp_path / "refused").iterdir())  # no image written

    out = tmp_path / "faces"
    args = ["generate", "--ckpt", str(ckpt), "--out", str(out), "--num", "3", "--device", "cpu"]
    tools([*args, "--seed", "7", "--trust-code"])
    z = truncated_normal(3, 16, None, seeded(7))
    expected = to_uint8(gan.sample(z=z)).permute(0, 2, 3, 1).numpy()
    written = np.stack([np.asarray(Image.open(out / f"{i:06d}.png")) for i in range(3)])
    assert np.array_equal(written, expected)


def test_export_records_the_class_and_loads_only_when_trusted(trained, tmp_path, capsys):
    gan, _, ckpt = trained
    folder = export_generator(gan, tmp_path / "export")
    config = json.loads((folder / "config.json").read_text())
    assert config == {
        "format": "facegan-generator",
        "format_version": 3,
        "generator": {"class_path": f"{HERE}.TinyG", "init_args": {"latent_dim": 16, "width": 8, "side": 32}},
        "image_size": 32,
        "latent_dim": 16,
        "output_range": [-1.0, 1.0],
    }
    with pytest.raises(
        CheckpointError, match=r"names its own network classes \(generator 'tests.*--trust-code"
    ):
        load_generator(folder)
    generator = load_generator(folder, trust_code=True)
    z = torch.randn(6, 16, generator=torch.Generator().manual_seed(3))
    assert type(generator) is TinyG and not generator.training
    with torch.no_grad():
        assert torch.equal(generator(z).clamp(-1, 1), gan.sample(z=z))  # bit-exact
    card = (folder / "README.md").read_text()
    assert f"`{HERE}.TinyG`" in card and 'load_generator("export", trust_code=True)' in card
    # the CLI's export of the checkpoint needs --trust-code too, and writes the same config
    with pytest.raises(SystemExit):
        tools(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "cli")])
    assert "--trust-code" in capsys.readouterr().err
    tools(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "cli"), "--trust-code"])
    assert json.loads((tmp_path / "cli" / "config.json").read_text()) == config


@pytest.mark.parametrize(
    ("class_path", "message"),
    [
        ("os.system", "'os.system' is not an nn.Module class"),
        ("tests.no_such_module.G", "cannot import 'tests.no_such_module.G'"),
        ("__main__.TinyG", "a class of the script that trained it: move it into a module"),
        ("not a path", "class_path must be 'module.Class', but got 'not a path'"),
    ],
)
def test_a_tampered_class_path_is_refused_even_when_trusted(trained, tmp_path, class_path, message):
    folder = export_generator(trained[0], tmp_path / "export")
    config = json.loads((folder / "config.json").read_text())
    config["generator"]["class_path"] = class_path
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=message):
        load_generator(folder, trust_code=True)


def test_a_built_in_discriminator_pairs_with_an_own_generator(tmp_path):
    gan = own_gan(discriminator=None, d_channels=8)
    assert type(gan.discriminator).__name__ == "DCGANDiscriminator" and gan.hparams.discriminator is None
    trainer = tiny_trainer(limit_train_batches=1)
    trainer.fit(gan, tiny_data())
    trainer.save_checkpoint(tmp_path / "gan.ckpt")
    with pytest.raises(CheckpointError, match=r"names its own network classes \(generator '[\w.]+TinyG'\);"):
        model_from_checkpoint(tmp_path / "gan.ckpt")
    model = model_from_checkpoint(tmp_path / "gan.ckpt", trust_code=True)
    assert type(model.discriminator).__name__ == "DCGANDiscriminator"
    assert torch.equal(flat(model.discriminator), flat(gan.discriminator))


@pytest.mark.parametrize(
    ("generator", "discriminator"),
    [
        (DCGANGenerator(32, 16, 8), R3GANDiscriminator(32, 32, 1)),
        (R3GANGenerator(32, 16, 32, 1), ResNetDiscriminator(32, 8)),
        (ResNetGenerator(32, 16, 8), DCGANDiscriminator(32, 8, batch_norm=False)),
    ],
)
def test_the_registrys_networks_can_be_given_as_ones_own_and_mixed(generator, discriminator, tmp_path):
    gan = FaceGAN(generator=generator, discriminator=discriminator, image_size=32)
    trainer = tiny_trainer(limit_train_batches=1)
    trainer.fit(gan, tiny_data())
    trainer.save_checkpoint(tmp_path / "mixed.ckpt")
    model = model_from_checkpoint(tmp_path / "mixed.ckpt", trust_code=True)
    assert gan.hparams.generator["class_path"] == f"{type(generator).__module__}.{type(generator).__name__}"
    assert type(model.generator) is type(generator) and type(model.discriminator) is type(discriminator)
    z = torch.randn(3, 16, generator=torch.Generator().manual_seed(4))
    assert torch.equal(model.sample(z=z), gan.sample(z=z))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"generator": TinyG(side=16)},
            r"maps z \(2, 16\) to \(2, 3, 16, 16\), but must give images \(2, 3, 32, 32\)",
        ),  # fmt: skip
        ({"discriminator": TinyD(keepdim=True)}, r"to \(2, 1\), but must give one logit per image, \(2,\)"),
        ({"generator": NoLatentDim()}, "NoLatentDim has no integer `latent_dim` attribute"),
        ({"latent_dim": 32}, "`latent_dim` is 32, but the generator's `latent_dim` is 16"),
        ({"generator": ForgetsWidth()}, "does not keep its __init__ argument 'width' as an attribute"),
        ({"g_channels": 8}, "`g_channels` sets up the registry's generator; with your own generator"),
        ({"spectral_norm": True}, "`spectral_norm` sets up the registry's discriminator"),
    ],
)
def test_networks_that_break_the_contract_are_refused_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message):
        own_gan(**kwargs)


def test_a_yaml_class_path_config_trains_from_the_cli_and_a_changed_network_is_refused_on_resume(
    tmp_path, monkeypatch, capsys
):
    own = {
        "model": {
            "generator": {"class_path": f"{HERE}.TinyG", "init_args": {"width": 4}},
            "discriminator": {"class_path": f"{HERE}.TinyD"},
            "ema_kimg": 1.0,
        },
        "data": {"image_size": 32},
        "trainer": {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 0},
    }
    (tmp_path / "own.yaml").write_text(yaml.safe_dump(own))
    monkeypatch.chdir(tmp_path)
    common = ["fit", "--config", str(REPO / "configs/debug.yaml"), "--config", "own.yaml"]
    facegan([*common, "--trainer.enable_progress_bar", "false"])
    (last,) = tmp_path.glob("lightning_logs/version_0/checkpoints/last.ckpt")
    hparams = load_checkpoint(last)["hyper_parameters"]
    assert hparams["generator"] == {
        "class_path": f"{HERE}.TinyG",
        "init_args": {"latent_dim": 16, "width": 4, "side": 32},
    }
    assert hparams["g_channels"] is None and hparams["d_channels"] is None  # the CLI's widths do not apply
    assert load_checkpoint(last)["global_step"] == 4  # 2 batches, a D and a G step each
    loaded = FaceGAN.load_from_checkpoint(last)  # through LightningCLI's instantiator
    assert type(loaded.generator) is TinyG and loaded.generator.width == 4

    with pytest.raises(SystemExit) as stop:
        facegan([*common, "--model.generator.init_args.width", "8", "--ckpt_path", str(last)])
    assert "--model.generator: {'class_path'" in str(stop.value.code)
    assert "'width': 4" in str(stop.value.code) and "'width': 8" in str(stop.value.code)
    # a resume that leaves the networks out takes them from the checkpoint, as any other setting
    cli = facegan_cli(["fit", "--config", str(REPO / "configs/debug.yaml"), "--ckpt_path", str(last)])
    assert type(cli.model.generator) is TinyG and cli.model.generator.width == 4
    assert type(cli.model.discriminator) is TinyD
    assert cli.model.images_seen == 2 * 8 + 3 * 8  # epoch 1 at debug.yaml's 3 batches (a trainer setting)


README_MARKER = "<!-- example: own-networks -->"


def readme_example() -> str:
    """The README's own-networks example, as written there."""
    readme = (REPO / "README.md").read_text()
    assert README_MARKER in readme, "the README lost its own-networks example"
    block = re.search(r"```python\n(.*?)```", readme[readme.index(README_MARKER) :], re.S)
    assert block is not None
    return block.group(1)


def test_the_readme_own_networks_example_runs_as_written(tmp_path):
    report = tmp_path / "report.json"
    checks = f"""
import json
json.dump({{"shape": list(images.shape), "low": float(images.min()), "high": float(images.max()),
           "same": bool(torch.equal(same, gan.sample(z=gan.sample_z[:4]))), "steps": gan.global_step,
           "kind": type(G).__name__, "config": json.load(open(folder / "config.json"))}}, open({str(report)!r}, "w"))
"""
    (tmp_path / "example.py").write_text(readme_example() + checks)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads(report.read_text())
    assert state["shape"] == [16, 3, 32, 32] and -1 <= state["low"] < state["high"] <= 1
    assert state["same"] and state["steps"] == 20 and state["kind"] == "TinyGenerator"
    assert state["config"]["generator"] == {
        "class_path": "__main__.TinyGenerator",
        "init_args": {"latent_dim": 64, "width": 32},
    }
