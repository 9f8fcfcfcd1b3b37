"""Hostile exports and bad `generate` arguments: each refused with one line naming the file or flag."""

from __future__ import annotations

import json
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

from facegan import load_generator
from facegan.cli.tools import main
from facegan.io.checkpoints import CheckpointError
from facegan.io.export import export_generator
from tests.test_module import tiny_gan


def export(tmp_path, name: str = "export", **kwargs):
    torch.manual_seed(0)
    return export_generator(tiny_gan(**kwargs), tmp_path / name)


def edit_config(folder, **change) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **change}))


def edit_weights(folder, name: str, change) -> None:
    tensors = load_file(folder / "model.safetensors")
    tensors[name] = change(tensors[name])
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def test_a_config_asking_for_65536_blocks_is_refused_from_the_header_without_building_them(
    tmp_path, monkeypatch
):
    folder = export(tmp_path, arch="r3gan", blocks_per_stage=1)
    edit_config(folder, blocks_per_stage=65536)  # within config.json's bounds; minutes to build
    import facegan.io.export as load_module

    built, original = [], load_module.build_generator

    def spy(config):
        built.append(config.blocks_per_stage)
        return original(config)

    monkeypatch.setattr(load_module, "build_generator", spy)
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as error:
        load_generator(folder)
    assert time.perf_counter() - start < 5
    assert str(error.value) == (
        f"{str(folder / 'model.safetensors')!r} does not match the config in config.json: it holds 23 "
        "tensors, but arch='r3gan' with blocks_per_stage=65536 has 1310723"  # 23 + 20 * 65535
    )
    assert max(built) <= 2  # only the two tiny builds that give the count


@pytest.mark.parametrize("kwargs", [{"arch": "r3gan", "blocks_per_stage": 3}, {"arch": "resnet"}])
def test_the_tensor_count_from_two_tiny_builds_is_exact(tmp_path, kwargs):
    model = tiny_gan(**kwargs)
    folder = export_generator(model, tmp_path / "export")
    z = torch.randn(2, 16)
    torch.testing.assert_close(load_generator(folder)(z), model.standing_generator().eval()(z))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.index_fill(0, torch.tensor([0]), float("nan")), "holds NaN or infinite values"),
        (lambda t: t.index_fill(0, torch.tensor([0]), float("inf")), "holds NaN or infinite values"),
        (lambda t: t.to(torch.int8), "is torch.int8, but must be a floating-point tensor"),
        (lambda t: t.to(torch.bool), "is torch.bool, but must be a floating-point tensor"),
    ],
    ids=["nan", "inf", "int8", "bool"],
)
def test_weights_that_would_load_silently_wrong_are_refused_naming_the_tensor(
    tmp_path, change, message, capsys
):
    folder = export(tmp_path)
    edit_weights(folder, "net.0.weight", change)
    with pytest.raises(CheckpointError) as error:
        load_generator(folder)
    assert str(error.value).startswith(f"{str(folder / 'model.safetensors')!r}: tensor 'net.0.weight' ")
    assert message in str(error.value)
    with pytest.raises(SystemExit) as exit_info:  # generate: one line, no image
        main(["generate", "--ckpt", str(folder), "--num", "4", "--out", str(tmp_path / "grid.png")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("facegan generate: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "grid.png").exists()


def test_an_integer_buffer_of_another_integer_kind_is_refused(tmp_path):
    folder = export(tmp_path)  # dcgan: BatchNorm's num_batches_tracked is int64
    name = next(n for n in load_file(folder / "model.safetensors") if n.endswith("num_batches_tracked"))
    edit_weights(folder, name, lambda t: t.to(torch.int32))
    with pytest.raises(CheckpointError, match=rf"tensor '{name}' is torch.int32, but must be torch.int64"):
        load_generator(folder)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_weights_still_load(tmp_path, dtype):
    folder = export(tmp_path)
    tensors = {
        n: t.to(dtype) if t.is_floating_point() else t
        for n, t in load_file(folder / "model.safetensors").items()
    }
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    generator = load_generator(folder)
    assert generator.state_dict()["net.0.weight"].dtype == torch.float32
    torch.testing.assert_close(generator.state_dict()["net.0.weight"], tensors["net.0.weight"].float())


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--seed", "99999999999999999999"], "--seed must be in [-9223372036854775808, 18446744073709551615], but got 99999999999999999999"),
        (["--seed", str(-(2**63) - 1)], "--seed must be in [-9223372036854775808, 18446744073709551615]"),
        (["--device", "meta"], "--device 'meta' holds shapes only and cannot make images; available here: cpu, auto"),
        (["--device", "mps"], "--device 'mps' is not available here; available: cpu, auto"),
        (["--device", "cuda"], "--device 'cuda' is not available here; available: cpu, auto"),
        (["--device", "cuda:1"], "--device 'cuda:1' is not available here; available: cpu, auto"),
        (["--device", "gpu"], "--device 'gpu' is not a device name; available here: cpu, auto"),
        (["--out", "{tmp}/x.png"], "--out '{tmp}/x.png' is an existing folder, not an image file; give a file name, e.g. '{tmp}/x.png/grid.png'"),
        (["--out", "{tmp}/x.gif", "--interpolate", "2"], "--out '{tmp}/x.gif' is an existing folder, not an image file"),
    ],
)  # fmt: skip
def test_bad_generate_arguments_end_with_one_line_before_any_work(
    flags, message, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr("facegan.cli.generate._sampler", lambda *a: pytest.fail("the model was loaded"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    (tmp_path / "x.png").mkdir()
    (tmp_path / "x.gif").mkdir()
    flags = [flag.format(tmp=tmp_path) for flag in flags]
    out = [] if "--out" in flags else ["--out", str(tmp_path / "g.png")]
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--ckpt", str(tmp_path / "none.ckpt"), *out, *flags])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("facegan generate: error: ") and err.count("\n") == 1
    assert message.format(tmp=tmp_path) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.gif", "x.png"]


def test_the_ends_of_the_seed_range_are_accepted(tmp_path):
    folder = export(tmp_path)
    for seed in (-(2**63), 2**64 - 1):
        out = tmp_path / f"{seed}.png"
        main(["generate", "--ckpt", str(folder), "--num", "4", "--seed", str(seed), "--out", str(out), "--device", "cpu"])  # fmt: skip
        assert out.is_file()
