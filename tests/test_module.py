import csv
from pathlib import Path

import lightning as L
import pytest
import torch

from facegan import FaceDataModule, FaceGAN


def tiny_gan(**kwargs) -> FaceGAN:
    return FaceGAN(**{"image_size": 32, "latent_dim": 16, "g_channels": 8, "d_channels": 8, **kwargs})


def tiny_data(**kwargs) -> FaceDataModule:
    return FaceDataModule(
        **{"image_size": 32, "batch_size": 8, "num_procedural": 64, "num_workers": 0, **kwargs}
    )


def tiny_trainer(**kwargs) -> L.Trainer:
    defaults = dict(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return L.Trainer(**{**defaults, **kwargs})


class StepRecorder(L.Callback):
    """Records, for every optimizer step, which networks' parameters it changed."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, bool, bool]] = []

    def on_train_start(self, trainer, pl_module):
        nets = {"G": pl_module.generator, "D": pl_module.discriminator}
        for name, optimizer in zip(("G", "D"), trainer.optimizers, strict=True):
            snapshot = {}

            def pre(opt, args, kwargs, snapshot=snapshot):
                for key, net in nets.items():
                    snapshot[key] = [p.detach().clone() for p in net.parameters()]

            def post(opt, args, kwargs, name=name, snapshot=snapshot):
                changed = {
                    key: any(
                        not torch.equal(a, b) for a, b in zip(snapshot[key], net.parameters(), strict=True)
                    )
                    for key, net in nets.items()
                }
                self.steps.append((name, changed["G"], changed["D"]))

            optimizer.register_step_pre_hook(pre)
            optimizer.register_step_post_hook(post)


def test_each_update_changes_only_its_own_network_and_both_step_every_batch():
    torch.manual_seed(0)
    recorder = StepRecorder()
    tiny_trainer(callbacks=[recorder]).fit(tiny_gan(), tiny_data())
    # One D update (changes D only), then one G update (changes G only), per batch.
    assert recorder.steps == [("D", False, True), ("G", True, False)] * 3


def test_n_disc_steps_updates_generator_every_nth_batch():
    recorder = StepRecorder()
    gan = tiny_gan(n_disc_steps=2)
    tiny_trainer(callbacks=[recorder], limit_train_batches=4).fit(gan, tiny_data())
    assert [name for name, _, _ in recorder.steps] == ["D", "D", "G", "D", "D", "G"]
    assert gan.d_updates == 4


def test_training_logs_losses_d_outputs_and_images_seen():
    gan = tiny_gan()
    trainer = tiny_trainer()
    trainer.fit(gan, tiny_data())
    metrics = trainer.callback_metrics
    for key in ("train/d_loss", "train/g_loss", "train/d_real", "train/d_fake", "train/kimg"):
        assert key in metrics and torch.isfinite(metrics[key])
    assert 0.0 <= metrics["train/d_real"] <= 1.0 and 0.0 <= metrics["train/d_fake"] <= 1.0
    # One count, a Python int (callbacks read it every batch without a device sync); checkpoints keep
    # it as the tensor state_dict["images_seen"], and loading one restores it.
    assert type(gan.images_seen) is int and gan.images_seen == 3 * 8
    assert metrics["train/kimg"].item() == pytest.approx(0.024)
    state = gan.state_dict()
    assert state["images_seen"].dtype == torch.long and int(state["images_seen"]) == 24
    fresh = tiny_gan()
    fresh.load_state_dict(state)
    assert fresh.images_seen == 24
    with pytest.raises(RuntimeError, match="Missing key.*images_seen"):
        fresh.load_state_dict({k: v for k, v in state.items() if k != "images_seen"})
    assert trainer.global_step == 6  # Lightning counts optimizer steps: one D + one G per batch


class LoggedKeys(L.Callback):
    """Per batch: the names FaceGAN passed to ``self.log`` and its ``train/d_real`` diagnostic; stops
    training after batch ``stop_after`` (as a budget or early stopping does) if given."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.keys: list[set[str]] = []
        self.d_real: list[float] = []
        self.stop_after = stop_after

    def on_train_start(self, trainer, pl_module):
        log = pl_module.log

        def recording(name, value, *args, **kwargs):
            self.keys[-1].add(name)
            return log(name, value, *args, **kwargs)

        pl_module.log = recording  # log_dict calls self.log per value

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.keys.append(set())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.d_real.append(float(pl_module.diagnostics["train/d_real"]))
        if batch_idx == self.stop_after:
            trainer.should_stop = True


@pytest.mark.parametrize("stop_after", [None, 3])
def test_diagnostics_are_logged_only_where_a_logger_writes_them_and_are_that_batchs(tmp_path, stop_after):
    """Lightning's self.log costs about 1 ms a value: the losses go every batch, D's diagnostics only at
    the batches the loggers write (every 3rd here), the epoch's last and the one a callback stopped at."""
    torch.manual_seed(0)
    record = LoggedKeys(stop_after)
    logger = L.pytorch.loggers.CSVLogger(tmp_path)
    trainer = tiny_trainer(logger=logger, log_every_n_steps=3, limit_train_batches=7, callbacks=[record])
    trainer.fit(tiny_gan(), tiny_data())
    losses = {"train/d_loss", "train/g_loss"}
    everything = losses | {
        "train/d_real",
        "train/d_fake",
        "train/d_acc_real",
        "train/d_acc_fake",
        "train/kimg",
    }
    full = [2, 5, 6] if stop_after is None else [2, 3]  # written batches; the last (epoch end or stop)
    assert record.keys == [everything if i in full else losses for i in range(len(record.keys))]
    assert len(record.keys) == (7 if stop_after is None else 4)
    with open(Path(logger.log_dir) / "metrics.csv") as f:
        rows = [row for row in csv.DictReader(f) if row.get("train/d_real")]
    written = [2, 5] if stop_after is None else [2, 3]  # Lightning writes no row for batch 6 (epoch end)
    assert [float(row["train/d_real"]) for row in rows] == pytest.approx([record.d_real[i] for i in written])
    assert float(trainer.callback_metrics["train/d_real"]) == pytest.approx(record.d_real[-1])


def test_validation_and_test_report_d_outputs_on_held_out_faces():
    gan, data = tiny_gan(), tiny_data()
    trainer = tiny_trainer(limit_val_batches=2, limit_test_batches=2)
    (val,) = trainer.validate(gan, data, verbose=False)
    (test,) = trainer.test(gan, data, verbose=False)
    assert set(val) == {"val/d_real", "val/d_fake"} and set(test) == {"test/d_real", "test/d_fake"}


def test_sample_is_per_image_deterministic_without_grad_and_in_range():
    gan = tiny_gan()
    z = torch.randn(16, 16)
    images = gan.sample(z=z)
    assert images.shape == (16, 3, 32, 32) and not images.requires_grad
    assert images.min() >= -1 and images.max() <= 1
    # Eval-mode BatchNorm: an image depends on its own latent only, not on the rest of the batch.
    torch.testing.assert_close(gan.sample(z=z[:4]), images[:4])
    torch.testing.assert_close(gan.sample(z=z, batch_size=5), images)
    assert gan.sample(3).shape == (3, 3, 32, 32)
    assert gan.generator.training  # sample() restores the mode it found


def test_sample_matches_training_mode_images_after_training():
    """Grids and FID use sample(); its images must be as good as the batch-statistics ones of training."""
    torch.manual_seed(0)
    gan = tiny_gan(g_lr=2e-3)  # fast-moving weights: the running statistics lag far behind
    tiny_trainer(limit_train_batches=8).fit(gan, tiny_data())
    z = torch.randn(512, 16)
    with torch.no_grad():
        training_mode = gan.generator.train()(z)
        lagging = gan.generator.eval()(z)  # plain eval(): momentum-0.1 running statistics
        gan.generator.train()
    sampled = gan.sample(z=z)
    error_sampled = (sampled - training_mode).abs().mean().item()
    error_lagging = (lagging - training_mode).abs().mean().item()
    assert error_sampled < 0.02
    assert error_sampled < 0.5 * error_lagging


def test_sample_rejects_wrong_latents():
    gan = tiny_gan()
    with pytest.raises(ValueError, match=r"`z` must have shape \(n, 16\), got \(2, 8\)"):
        gan.sample(z=torch.zeros(2, 8))
    with pytest.raises(ValueError, match="pass `n`"):
        gan.sample()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"arch": "keras", "image_size": 128, "g_channels": 32}, "fixed widths"),
        ({"n_disc_steps": 0}, r"`n_disc_steps` must be an integer >= 1, but got 0"),
        ({"loss": "hinge", "label_noise": 0.05}, "label_noise"),
        ({"image_size": 48}, r"`image_size` must be one of \(32, 64, 128\)"),
    ],
)
def test_bad_settings_fail_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FaceGAN(**kwargs)


def test_keras_recipe_trains_one_step_with_label_noise():
    recorder = StepRecorder()
    gan = FaceGAN(arch="keras", image_size=128, g_lr=1e-4, d_lr=1e-4, label_noise=0.05, adam_eps=1e-7)
    data = FaceDataModule(image_size=128, batch_size=2, num_procedural=4, num_workers=0)
    tiny_trainer(callbacks=[recorder], limit_train_batches=1).fit(gan, data)
    assert recorder.steps == [("D", False, True), ("G", True, False)]


def test_decorrelated_ranks_draw_different_latents_deterministically():
    from facegan.training.distributed import decorrelate_ranks

    draws = {}
    for rank in (0, 1, 1):
        torch.manual_seed(0)  # what seed_everything leaves on every process
        decorrelate_ranks(rank)
        draws.setdefault(rank, []).append(torch.randn(4))
    assert not torch.equal(draws[0][0], draws[1][0])  # processes no longer share their fakes
    assert torch.equal(draws[1][0], draws[1][1])  # yet each rank's stream is reproducible


@pytest.mark.parametrize("fresh", [False, True])
def test_generator_step_reuses_or_redraws_its_latents(fresh):
    """Lightning's recipe trains G on the D step's fakes (one G forward per batch); the Keras example
    draws fresh latents for the G step (two forwards, the first without a graph)."""
    calls = []
    gan = tiny_gan(g_fresh_latents=fresh)
    gan.generator.register_forward_hook(
        lambda m, args, out: calls.append((args[0].clone(), out.requires_grad))
    )
    tiny_trainer(limit_train_batches=1).fit(gan, tiny_data())
    if fresh:
        (z_d, grad_d), (z_g, grad_g) = calls
        assert not grad_d and grad_g and not torch.equal(z_d, z_g)
    else:
        ((_, grad),) = calls
        assert grad


class _Batches(torch.utils.data.Dataset):
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], 0  # (image, label), as torchvision datasets give


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (
            torch.rand(8, 3, 64, 64) * 2 - 1,
            r"shape \(4, 3, 64, 64\), but the model was built for image_size=32",
        ),
        (torch.rand(8, 1, 32, 32) * 2 - 1, r"shape \(4, 1, 32, 32\).*\(B, 3, 32, 32\)"),
        (torch.rand(8, 3, 32, 32), r"values in \[0\.\d+, [01]\.\d+\]; facegan trains on images in \[-1, 1\]"),
        (torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8), "dtype torch.uint8"),
    ],
    ids=["resolution", "channels", "zero-to-one", "uint8"],
)
def test_a_batch_that_does_not_match_the_model_fails_on_the_first_batch(images, message):
    gan = tiny_gan()
    before = {k: v.clone() for k, v in gan.state_dict().items()}
    loader = torch.utils.data.DataLoader(_Batches(images), batch_size=4)
    with pytest.raises(ValueError, match=message):
        tiny_trainer(limit_train_batches=2).fit(gan, loader)
    assert all(torch.equal(v, before[k]) for k, v in gan.state_dict().items())  # nothing trained
