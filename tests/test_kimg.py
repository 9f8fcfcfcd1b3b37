"""Training counted in images: ``KimgBudget`` stops at ``max_kimg``, ``SampleGridMonitor`` and
``KimgCheckpoint`` write every N kimg, and the CLI takes all three."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from facegan.callbacks import KimgBudget, KimgCheckpoint, SampleGridMonitor
from facegan.callbacks.kimg import KimgSchedule
from facegan.callbacks.samples import kimg_label
from facegan.cli import main
from tests.conftest import REPO
from tests.test_module import tiny_data, tiny_gan, tiny_trainer


def test_the_budget_stops_the_fit_at_the_first_batch_past_max_kimg_and_a_resume_past_it_at_once(tmp_path):
    torch.manual_seed(0)
    gan = tiny_gan()
    trainer = tiny_trainer(max_epochs=-1, limit_train_batches=None, callbacks=[KimgBudget(max_kimg=0.02)])
    trainer.fit(gan, tiny_data())  # 8 images per batch, 8 batches per epoch: 20 images -> 3 batches
    assert (
        int(gan.images_seen) == 24 and gan.d_updates == 3 and trainer.current_epoch == 1
    )  # ended as at an epoch end
    again = tiny_trainer(max_epochs=-1, callbacks=[KimgBudget(max_kimg=0.02)])
    again.fit(gan, tiny_data())
    assert int(gan.images_seen) == 24 and gan.d_updates == 3  # no batch: the budget was spent


def test_grids_every_n_kimg_and_not_twice_for_the_epochs_last_batch(tmp_path):
    torch.manual_seed(0)
    gan = tiny_gan()
    grids = SampleGridMonitor(every_n_epochs=1, num_images=4, every_n_kimg=0.1)
    written: list[int] = []
    write = grids.write_grid
    grids.write_grid = lambda trainer, module: (
        written.append(int(module.images_seen)) or write(trainer, module)
    )
    trainer = tiny_trainer(default_root_dir=tmp_path, limit_train_batches=5, callbacks=[grids])
    trainer.fit(gan, tiny_data(batch_size=40, num_procedural=200))
    assert written == [120, 200]  # past 100 after 3 batches, at 200 after 5; the epoch end is that batch
    names = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert names == ["epoch=0000-kimg=0.12.png", "epoch=0000-kimg=0.2.png"]


def test_grids_close_together_get_names_of_their_own(tmp_path):
    """Every 40 images: rounded to 0.1 kimg, 80 and 120 (and 160 and 200) would share a file."""
    grids = SampleGridMonitor(every_n_epochs=1, num_images=4, every_n_kimg=0.04)
    trainer = tiny_trainer(default_root_dir=tmp_path, limit_train_batches=5, callbacks=[grids])
    trainer.fit(tiny_gan(), tiny_data(batch_size=40, num_procedural=200))
    names = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert names == [f"epoch=0000-kimg={k}.png" for k in ("0.04", "0.08", "0.12", "0.16", "0.2")]


@pytest.mark.parametrize(
    ("images", "label"),
    [(0, "0.0"), (64, "0.064"), (120, "0.12"), (1000, "1.0"), (385536, "385.536"), (25_000_000, "25000.0")],
)
def test_grid_names_give_the_exact_thousands_of_images(images, label):
    assert kimg_label(images) == label


def test_checkpoints_every_n_kimg(tmp_path):
    torch.manual_seed(0)
    checkpoints = KimgCheckpoint(
        dirpath=tmp_path,
        filename="{step}",
        every_n_kimg=0.016,
        save_top_k=-1,
        every_n_epochs=0,
        save_last=True,
    )
    trainer = tiny_trainer(limit_train_batches=5, enable_checkpointing=True, callbacks=[checkpoints])
    trainer.fit(tiny_gan(), tiny_data())
    # 16 images = 2 batches of 8; {step} is the logged step of the batch saved after (0-based), not
    # global_step, which counts G's and D's optimizer steps: 2 per batch.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "step=1.ckpt", "step=3.ckpt"]
    saved = torch.load(tmp_path / "step=3.ckpt", weights_only=True)
    assert int(saved["state_dict"]["images_seen"]) == 32 and saved["global_step"] == 8


def test_the_cli_takes_max_kimg_and_kimg_schedules(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = main(
        ["fit", "--config", str(REPO / "configs/debug.yaml"), "--trainer.max_epochs", "-1",
         "--trainer.limit_train_batches", "null", "--data.batch_size", "50", "--data.num_procedural", "400",
         "--budget.max_kimg", "0.3", "--checkpoint.save_top_k", "-1", "--samples.every_n_kimg", "0.1", "--checkpoint.every_n_kimg", "0.2"]
    )  # fmt: skip
    assert int(cli.model.images_seen) == 300 and cli.trainer.current_epoch == 1  # 6 of 8 batches
    run = tmp_path / "lightning_logs/version_0"
    names = sorted(p.name for p in (run / "samples").iterdir())
    assert names == [f"epoch=0000-kimg=0.{k}.png" for k in (1, 2, 3)]  # 0.3: the fit's end, once
    # at 200 images (4 batches: logged step 3, global_step 8), and at the stop (6 batches) as at an epoch end
    steps = {p.name.split("step=")[-1] for p in (run / "checkpoints").glob("epoch=*.ckpt")}
    assert steps == {"3.ckpt", "5.ckpt"} and (run / "checkpoints/last.ckpt").is_file()


def points(schedule: KimgSchedule, start: int, batch: int, until: int) -> list[int]:
    """The counts at which ``schedule`` says "due", fed every ``batch`` images from ``start``."""
    schedule.start(start)
    return [seen for seen in range(start + batch, until + 1, batch) if schedule.due(seen)]


@pytest.mark.parametrize(
    ("every", "first", "start", "batch", "until", "expected"),
    [
        (8, None, 0, 64, 20_000, [8000, 16000]),  # 125 and 250 batches of 64: exactly on the multiples
        (8, 2, 0, 64, 20_000, [2048, 8000, 16000]),  # 2000 / 64 = 31.25: the 32nd batch passes it
        (5, 1, 0, 64, 11_000, [1024, 5056, 10048]),  # the CLI's default, at the default batch of 64
        (8, 2, 0, 3000, 20_000, [3000, 9000, 18000]),  # a batch past both points: one grid, not two
        (1, 2.5, 0, 500, 4000, [1000, 2000, 2500, 3000, 4000]),  # a first point past the interval: added
        (8, 2, 4992, 64, 20_000, [8000, 16000]),  # a resume past the first point: not again
        (8, 2, 1000, 500, 9000, [2000, 8000]),  # a resume before it: still there
    ],
)
def test_kimg_schedule_points(every, first, start, batch, until, expected):
    assert points(KimgSchedule(every, first_kimg=first), start, batch, until) == expected


def test_the_default_fit_draws_a_first_grid_within_a_few_thousand_images_then_every_few(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--print_config"])
    config = yaml.safe_load(capsys.readouterr().out)
    samples = config["samples"]
    assert (
        samples["first_kimg"] == 1.0 and samples["every_n_kimg"] == 5.0
    )  # ~20 s, then ~1.5 min at 58 images/s
    assert samples["every_n_epochs"] == 0  # no second grid a few batches after each kimg grid
    # The recipe of those grids: 4x the updates of batches of 64 at the same images/s, and an EMA
    # generator whose half-life ramps up with the images seen (else the first grids are a blur).
    assert config["data"]["batch_size"] == 16
    assert (config["model"]["ema_kimg"], config["model"]["ema_rampup"]) == (10.0, 0.05)


def test_the_default_fits_first_grid_is_written_early_and_shows_distinct_images(tmp_path, monkeypatch):
    """The CLI's own defaults (no debug overlay) with a short schedule: the first grid comes after the
    first batch, and is a picture: not one colour, and not one image repeated."""
    monkeypatch.chdir(tmp_path)
    main(
        ["fit", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "0",
         "--trainer.enable_progress_bar", "false", "--data.batch_size", "8", "--data.num_procedural", "64",
         "--data.num_workers", "0", "--model.bn_stat_batches", "2", "--samples.num_images", "16",
         "--samples.first_kimg", "0.008", "--samples.every_n_kimg", "0.02"]
    )  # fmt: skip
    samples = tmp_path / "lightning_logs/version_0/samples"
    # 8 images: the first point; 24 (3 batches) passes 20 and ends the fit: that grid is not written twice
    assert sorted(p.name for p in samples.iterdir()) == [
        "epoch=0000-kimg=0.008.png",
        "epoch=0000-kimg=0.024.png",
    ]
    with Image.open(samples / "epoch=0000-kimg=0.008.png") as image:
        grid = np.asarray(image.convert("RGB")).astype(int)
    assert grid.shape == (4 * 66 + 2, 4 * 66 + 2, 3)  # 4 x 4 images of 64 px, 2 px padding
    tiles = [grid[2 + 66 * r : 66 * (r + 1), 2 + 66 * c : 66 * (c + 1)] for r in range(4) for c in range(4)]
    assert all(tile.std() > 5 for tile in tiles)  # every image has content, not one flat colour
    assert len(np.unique(grid.reshape(-1, 3), axis=0)) > 1000
    differences = [np.abs(tiles[0] - tile).mean() for tile in tiles[1:]]
    assert min(differences) > 1  # no image repeats the first (a collapse draws one image 16 times)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: KimgBudget(max_kimg=0), "KimgBudget: `max_kimg` must be > 0 or null"),
        (lambda: KimgCheckpoint(every_n_kimg=-1.0), "KimgCheckpoint: `every_n_kimg` must be > 0 or null"),
        (lambda: SampleGridMonitor(every_n_kimg=0.0), "SampleGridMonitor: `every_n_kimg` must be > 0"),
        (
            lambda: SampleGridMonitor(every_n_kimg=5, first_kimg=0),
            "SampleGridMonitor: `first_kimg` must be > 0",
        ),
        (
            lambda: SampleGridMonitor(first_kimg=1),
            r"SampleGridMonitor: `first_kimg` \(1\) is the first point of the `every_n_kimg` schedule, which is "
            "null; set `every_n_kimg` too, or `first_kimg` to null",
        ),
        (lambda: KimgSchedule(1, once=True, first_kimg=0.5), "KimgSchedule: `first_kimg` is an early point"),
    ],
)
def test_bad_schedules_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()
