"""`python -m facegan generate|export`, `load_generator`, and loading files without running their code."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from facegan import FaceGAN, load_generator
from facegan.cli.generate import slerp, truncated_normal
from facegan.cli.tools import main
from facegan.io.checkpoints import CheckpointError, load_checkpoint, model_from_checkpoint
from tests.conftest import REPO
from tests.test_module import tiny_data, tiny_gan, tiny_trainer


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> pathlib.Path:
    """A checkpoint of a tiny, briefly trained FaceGAN (32 px, DCGAN with BatchNorm)."""
    torch.manual_seed(0)
    gan = tiny_gan()
    trainer = tiny_trainer(limit_train_batches=2)
    trainer.fit(gan, tiny_data())
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    trainer.save_checkpoint(path)
    return path


def read(path) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).copy())


def test_generate_grid_is_reproducible_by_seed(ckpt, tmp_path):
    main(["generate", "--ckpt", str(ckpt), "--num", "9", "--out", str(tmp_path / "a.png"), "--device", "cpu"])
    main(["generate", "--ckpt", str(ckpt), "--num", "9", "--out", str(tmp_path / "b.png")])
    main(["generate", "--ckpt", str(ckpt), "--num", "9", "--out", str(tmp_path / "c.png"), "--seed", "1"])
    a, b, c = read(tmp_path / "a.png"), read(tmp_path / "b.png"), read(tmp_path / "c.png")
    assert a.shape == (2 + 3 * 34, 2 + 3 * 34, 3)  # 3x3 grid of 32 px images, 2 px padding
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_generate_folder_writes_one_png_per_image_matching_sample(ckpt, tmp_path):
    main(
        ["generate", "--ckpt", str(ckpt), "--num", "5", "--batch-size", "2", "--out", str(tmp_path / "faces")]
    )
    files = sorted((tmp_path / "faces").iterdir())
    assert [f.name for f in files] == [f"{i:06d}.png" for i in range(5)]
    model = model_from_checkpoint(ckpt)
    z = truncated_normal(5, model.hparams.latent_dim, None, torch.Generator().manual_seed(0))
    expected = ((model.sample(z=z) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    for file, image in zip(files, expected, strict=True):
        assert torch.equal(read(file), image)


def test_truncation_bounds_every_latent_entry():
    z = truncated_normal(500, 16, 0.5, torch.Generator().manual_seed(0))
    assert z.abs().max() <= 0.5 and z.std() > 0.2
    with pytest.raises(ValueError, match="truncation"):
        truncated_normal(2, 2, 0.0, torch.Generator())


def test_slerp_ends_and_norm():
    a, b = torch.randn(3, 8), torch.randn(3, 8)
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-5) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-5)
    unit = slerp(a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True), 0.5)
    assert torch.allclose(unit.norm(dim=1), torch.ones(3), atol=1e-5)  # stays on the sphere


def test_interpolate_writes_a_looping_gif(ckpt, tmp_path):
    out = tmp_path / "walk.gif"
    main(["generate", "--ckpt", str(ckpt), "--num", "4", "--interpolate", "3", "--out", str(out)])
    gif = Image.open(out)
    assert gif.n_frames == 4 * 3 and gif.size == (2 + 2 * 34, 2 + 2 * 34)
    with pytest.raises(SystemExit):
        main(["generate", "--ckpt", str(ckpt), "--interpolate", "3", "--out", str(tmp_path / "x.png")])


def test_export_holds_the_generator_only_and_reloads_without_lightning(ckpt, tmp_path):
    main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "export")])
    tensors = load_file(tmp_path / "export/model.safetensors")
    model = model_from_checkpoint(ckpt)
    assert set(tensors) == set(model.generator.state_dict())  # no discriminator, optimizer or metric
    config = json.loads((tmp_path / "export/config.json").read_text())
    assert (config["arch"], config["image_size"], config["latent_dim"]) == ("dcgan", 32, 16)
    generator = load_generator(tmp_path / "export")
    main(["generate", "--ckpt", str(tmp_path / "export"), "--num", "4", "--out", str(tmp_path / "e.png")])
    main(["generate", "--ckpt", str(ckpt), "--num", "4", "--out", str(tmp_path / "c.png")])
    assert torch.equal(read(tmp_path / "e.png"), read(tmp_path / "c.png"))  # export == checkpoint
    z = torch.randn(6, 16)
    with torch.no_grad():
        assert torch.allclose(generator(z), model.sample(z=z), atol=1e-6)
    # Without Lightning: a fresh interpreter that refuses to import it.
    code = (
        "import sys; sys.modules['lightning'] = None; sys.modules['pytorch_lightning'] = None\n"
        "import torch\nfrom facegan.io.export import load_generator\n"
        f"g = load_generator({str(tmp_path / 'export')!r})\nprint(tuple(g(torch.randn(2, 16)).shape))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.stdout.strip() == "(2, 3, 32, 32)", result.stderr[-2000:]


def test_a_pickle_that_runs_code_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}, "payload": Payload()}, evil)
    with pytest.raises(CheckpointError, match="not loaded .loading it could execute code"):
        load_checkpoint(evil)
    for command in ("generate", "export"):
        result = subprocess.run(
            [sys.executable, "-m", "facegan", command, "--ckpt", str(evil), "--out", str(tmp_path / "o")],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2 and "could execute code" in result.stderr
    assert not marker.exists()


def test_foreign_truncated_and_tampered_files_fail_clearly(ckpt, tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.ckpt")
    with pytest.raises(CheckpointError, match="not a FaceGAN checkpoint"):
        load_checkpoint(tmp_path / "foreign.ckpt")
    (tmp_path / "cut.ckpt").write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(tmp_path / "cut.ckpt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt")

    export = tmp_path / "export"
    main(["export", "--ckpt", str(ckpt), "--out", str(export)])
    weights = export / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[:200])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_generator(export)
    weights.write_bytes(good)
    config = json.loads((export / "config.json").read_text())
    (export / "config.json").write_text(json.dumps({**config, "g_channels": 16}))
    with pytest.raises(CheckpointError, match="does not match the config"):
        load_generator(export)
    (export / "config.json").write_text(json.dumps({**config, "arch": "stylegan9"}))
    with pytest.raises(CheckpointError, match="`arch` must be one of"):
        load_generator(export)
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_generator(tmp_path)


def test_checkpoint_round_trip_keeps_weights_and_sample_latents(ckpt):
    model = model_from_checkpoint(ckpt)
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    for name, value in model.state_dict().items():
        assert torch.equal(value, state[name]), name
    assert isinstance(model, FaceGAN) and not model.training


def test_generate_refuses_a_folder_with_earlier_images_unless_asked_to_overwrite(ckpt, tmp_path, capsys):
    out = tmp_path / "faces"
    main(["generate", "--ckpt", str(ckpt), "--num", "6", "--out", str(out)])
    (out / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--ckpt", str(ckpt), "--num", "2", "--out", str(out), "--seed", "1"])
    assert exit_info.value.code == 2
    assert "already holds 7 files" in capsys.readouterr().err
    assert len(list(out.glob("*.png"))) == 6  # nothing written, nothing removed
    main(["generate", "--ckpt", str(ckpt), "--num", "2", "--out", str(out), "--seed", "1", "--overwrite"])
    assert sorted(p.name for p in out.iterdir()) == ["000000.png", "000001.png", "notes.txt"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--truncation", "nan"], "--truncation must be a finite number > 0, but got nan"),
        (["--truncation", "inf"], "--truncation must be a finite number > 0, but got inf"),
        (["--nrow", "-2"], "--nrow must be >= 1, but got -2"),
    ],
)
def test_bad_generate_flags_fail_with_one_line_before_any_work(flags, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("facegan.cli.generate._sampler", lambda *a: pytest.fail("the model was loaded"))
    with pytest.raises(SystemExit):
        main(["generate", "--ckpt", str(tmp_path / "none.ckpt"), "--out", str(tmp_path / "g.png"), *flags])
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("out", ["blocker/grid.png", "blocker/faces"])
def test_an_unwritable_out_fails_before_any_image_is_made(out, tmp_path, capsys, monkeypatch):
    (tmp_path / "blocker").write_text("a file where a folder would have to be")
    monkeypatch.setattr("facegan.cli.generate._sampler", lambda *a: pytest.fail("the model was loaded"))
    with pytest.raises(SystemExit):
        main(["generate", "--ckpt", str(tmp_path / "none.ckpt"), "--out", str(tmp_path / out)])
    err = capsys.readouterr().err
    assert "--out" in err and "blocker" in err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"latent_dim": 1_000_000_000}, r"`latent_dim` must be in \[1, 65536\], but got 1000000000"),
        ({"g_channels": True}, r"`g_channels` must be an integer, but got True"),
        ({"image_size": "64"}, r"`image_size` must be an integer, but got '64'"),
        ({"arch": ["dcgan"]}, r"`arch` must be one of .* but got \['dcgan'\]"),
        (
            {"latent_dim": 17},
            r"does not match the config in config.json \(.*'net.0.weight': \(16, 32, 4, 4\) stored, \(17, 32, 4, 4\) expected",
        ),
    ],
    ids=["huge", "bool", "string", "list", "shape"],
)
def test_an_export_config_is_validated_before_any_network_is_built(
    ckpt, tmp_path, change, message, monkeypatch
):
    export = tmp_path / "export"
    main(["export", "--ckpt", str(ckpt), "--out", str(export)])
    config = json.loads((export / "config.json").read_text())
    (export / "config.json").write_text(json.dumps({**config, **change}))
    import facegan.io.export as load_module

    built, original = [], load_module.build_generator

    def spy(config):
        built.append(torch.empty(0).device.type)  # "meta" inside the shape check's device context
        return original(config)

    monkeypatch.setattr(load_module, "build_generator", spy)
    with pytest.raises(CheckpointError, match=message):
        load_generator(export)
    assert set(built) <= {"meta"}  # refused from the config and the file header: no memory allocated


def test_a_deeply_nested_export_config_is_refused_clearly(ckpt, tmp_path):
    export = tmp_path / "export"
    main(["export", "--ckpt", str(ckpt), "--out", str(export)])
    (export / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match=r"config.json' is not valid JSON \(RecursionError\)"):
        load_generator(export)


def test_an_export_folder_given_as_a_checkpoint_says_what_it_is(ckpt, tmp_path, capsys):
    export = tmp_path / "export"
    main(["export", "--ckpt", str(ckpt), "--out", str(export)])
    with pytest.raises(SystemExit):
        main(["export", "--ckpt", str(export), "--out", str(tmp_path / "again")])
    message = capsys.readouterr().err
    assert "is an export folder (the sampling generator only" in message and "generate --ckpt" in message
    assert not (tmp_path / "again").exists()
    with pytest.raises(CheckpointError, match=r"is a folder; give the \.ckpt file inside it"):
        load_checkpoint(tmp_path)
    main(["generate", "--ckpt", str(export), "--out", str(tmp_path / "grid.png"), "--num", "4"])  # it samples
    assert (tmp_path / "grid.png").is_file()
