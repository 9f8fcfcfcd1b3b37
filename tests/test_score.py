"""`python -m facegan score FAKE REAL`: agrees with torch-fidelity on two folders of PNGs and with
FIDMonitor on a checkpoint; statistics saved as .npz score the same; bad input fails before Inception."""

from __future__ import annotations

import json
import pathlib
import urllib.error
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from facegan.callbacks import FIDMonitor
from facegan.cli.tools import main
from facegan.io.checkpoints import model_from_checkpoint
from facegan.metrics.fid import WEIGHTS_FILE
from tests.test_module import tiny_data, tiny_gan, tiny_trainer

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread


def pngs(folder: pathlib.Path, count: int, side: int, mean: float, seed: int) -> pathlib.Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        pixels = np.clip(rng.normal(mean, 50, (side, side, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return folder


def test_two_folders_of_pngs_score_as_torch_fidelity_does(weights, tmp_path, capsys):
    import torch_fidelity

    fake = pngs(tmp_path / "fake", 20, 64, 128, seed=0)
    real = pngs(tmp_path / "real", 20, 64, 160, seed=1)
    out = tmp_path / "fid.json"
    main(["score", str(fake), str(real), "--weights", weights, "--cache-dir", str(tmp_path / "cache"),
          "--json", str(out), "--device", "cpu", "--no-progress"])  # fmt: skip
    ours = json.loads(out.read_text())
    theirs = torch_fidelity.calculate_metrics(
        input1=str(fake), input2=str(real), fid=True, kid=True, kid_subset_size=20, cuda=False, cache=False,
        verbose=False, feature_extractor_weights_path=weights,
    )  # fmt: skip
    assert ours["fid"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-3)
    # KID: subsets of all 20 images on both sides, so torch-fidelity's own subset draws give the same
    assert ours["kid"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-3, abs=1e-6)
    assert (ours["num_fake"], ours["num_real"], ours["image_size"]) == (20, 20, 64)
    printed = capsys.readouterr().out
    assert f"FID        {ours['fid']:.4f}" in printed and "20 images from" in printed


def test_a_checkpoint_scores_as_fid_monitor_and_saved_statistics_score_the_same(weights, tmp_path, capsys):
    torch.manual_seed(0)
    trainer = tiny_trainer(limit_train_batches=1)
    gan = tiny_gan()
    trainer.fit(gan, tiny_data())
    ckpt = tmp_path / "tiny.ckpt"
    trainer.save_checkpoint(ckpt)
    real = pngs(tmp_path / "real", 8, 40, 128, seed=2)  # 40 px files, resized to the model's 32 px
    cache = str(tmp_path / "cache")
    args = [
        "score",
        str(ckpt),
        str(real),
        "--num",
        "8",
        "--weights",
        weights,
        "--cache-dir",
        cache,
        "--no-progress",
    ]
    main([*args, "--json", str(tmp_path / "a.json"), "--save-stats", str(tmp_path / "real.npz")])
    scored = json.loads((tmp_path / "a.json").read_text())

    monitor = FIDMonitor(real=str(real), num_fake=8, weights_path=weights, cache_dir=cache)
    strategy = SimpleNamespace(root_device=torch.device("cpu"), barrier=lambda name=None: None)
    fake_trainer = SimpleNamespace(datamodule=None, world_size=1, global_rank=0, is_global_zero=True,
                                   strategy=strategy, current_epoch=0, global_step=0, checkpoint_callbacks=[])  # fmt: skip
    model = model_from_checkpoint(ckpt)
    monitor.setup(fake_trainer, model, "fit")
    assert monitor.cache_hit is True and str(monitor.cache_path) == scored["real_statistics"]  # score's cache
    entry = monitor.evaluate(fake_trainer, model)
    assert entry["fid"] == pytest.approx(scored["fid"], rel=1e-5)
    assert entry["kid"] == pytest.approx(scored["kid"], rel=1e-4, abs=1e-7)  # the cached real features too

    main(["score", str(ckpt), str(tmp_path / "real.npz"), "--num", "8", "--weights", weights,
          "--json", str(tmp_path / "b.json"), "--no-progress"])  # fmt: skip
    from_npz = json.loads((tmp_path / "b.json").read_text())
    assert from_npz["fid"] == pytest.approx(scored["fid"], rel=1e-4) and from_npz["num_real"] == 8
    assert from_npz["kid"] is None  # an .npz holds mu and sigma only
    assert scored["image_size"] == 32 and scored["real_statistics_cached"] is False


@pytest.mark.parametrize(
    ("fake", "real", "flags", "message"),
    [
        ("missing", "real", [], "FAKE '{tmp}/missing' does not exist"),
        ("fake", "missing.npz", [], "statistics file '{tmp}/missing.npz' does not exist"),
        ("fake", "config.yaml", [], "has no `data:` section"),
        ("fake", "real", ["--num", "1"], "--num must be >= 2"),
    ],
)
def test_bad_input_fails_with_one_line_before_inception_loads(
    fake, real, flags, message, tmp_path, capsys, monkeypatch
):
    import facegan.metrics.fid as fid_engine

    monkeypatch.setattr(fid_engine, "build_fid_metric", lambda *a, **k: pytest.fail("Inception was loaded"))
    pngs(tmp_path / "fake", 2, 8, 100, seed=0)
    pngs(tmp_path / "real", 2, 8, 100, seed=1)
    (tmp_path / "config.yaml").write_text("model:\n  arch: dcgan\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["score", str(tmp_path / fake), str(tmp_path / real), *flags, "--no-progress"])
    assert exit_info.value.code == 2
    assert message.format(tmp=tmp_path) in capsys.readouterr().err


def test_without_weights_offline_score_says_how_to_give_them(tmp_path, capsys, monkeypatch):
    import torch_fidelity.feature_extractor_inceptionv3 as inception

    def offline(*args, **kwargs):
        raise urllib.error.URLError("simulated: no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("FACEGAN_FID_WEIGHTS", raising=False)
    monkeypatch.setattr(inception, "load_state_dict_from_url", offline)
    pngs(tmp_path / "a", 2, 8, 100, seed=0)
    with pytest.raises(SystemExit):
        main(["score", str(tmp_path / "a"), str(tmp_path / "a"), "--no-progress"])
    hub = tmp_path / "torch/hub/checkpoints"
    assert capsys.readouterr().err.splitlines() == [
        "facegan score: error: cannot load the FID Inception weights (<urlopen error simulated: "
        f"no network>); looked at {hub / WEIGHTS_FILE} (no file there), then downloading it. The file is "
        f"{WEIGHTS_FILE} from https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{WEIGHTS_FILE}: "
        f"give its path with --weights PATH or the FACEGAN_FID_WEIGHTS environment variable, or put it in "
        f"{hub}/ ($TORCH_HOME/hub/checkpoints/, where torchmetrics downloads it)."
    ]
    given = ["--weights", str(tmp_path / "w.pth")]  # a file given that is not there: the message names it
    with pytest.raises(SystemExit):
        main(["score", str(tmp_path / "a"), str(tmp_path / "a"), "--no-progress", *given])
    assert f"looked at {tmp_path / 'w.pth'} (the file given)" in capsys.readouterr().err


def test_without_weights_fid_monitor_says_how_to_give_them_in_a_config(tmp_path, monkeypatch):
    from facegan.metrics.fid import WeightsError, build_fid_metric

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("FACEGAN_FID_WEIGHTS", str(tmp_path / "missing.pth"))
    with pytest.raises(WeightsError) as error:
        build_fid_metric()
    assert str(error.value) == (
        f"FIDMonitor: cannot load the FID Inception weights ('{tmp_path / 'missing.pth'}' is not a file); "
        f"looked at {tmp_path / 'missing.pth'} ($FACEGAN_FID_WEIGHTS). The file is {WEIGHTS_FILE} from "
        f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{WEIGHTS_FILE}: give its path with "
        "FIDMonitor(weights_path=PATH) (in a config: `weights_path: PATH` in its init_args) or the "
        f"FACEGAN_FID_WEIGHTS environment variable, or put it in {tmp_path / 'torch/hub/checkpoints'}/ "
        "($TORCH_HOME/hub/checkpoints/, where torchmetrics downloads it)."
    )
