"""EMA generator, R1, spectral norm, the ResNet pair, mixed precision, and one step per recipe."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision
from PIL import Image
from torch import nn

from facegan import FaceGAN
from facegan.cli import main
from facegan.nets import NetworkConfig, build_networks
from facegan.nets.resnet import ResNetDiscriminator, ResNetGenerator
from facegan.training.module import ema_beta, update_ema
from facegan.training.objective import LeCamAnchors, gradient_penalty
from tests.test_module import tiny_data, tiny_gan, tiny_trainer

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted(p for p in (REPO / "configs").glob("*.yaml") if p.name not in ("debug.yaml", "wandb.yaml"))


# ----------------------------------------------------------------------------------------- EMA
def test_ema_beta_halves_the_weight_of_the_past_every_half_life():
    # 10 kimg half-life, batches of 100: after 100 updates (10,000 images) the old average weighs 0.5.
    beta = ema_beta(100, half_life_kimg=10.0, images_seen=10**6, rampup=0.05)
    assert beta == pytest.approx(0.5 ** (100 / 10_000))
    assert beta**100 == pytest.approx(0.5)
    # Ramp-up: at 20,000 images seen the half-life is capped at 0.05 * 20,000 = 1,000 images.
    assert ema_beta(100, 10.0, images_seen=20_000, rampup=0.05) == pytest.approx(0.5 ** (100 / 1000))
    assert ema_beta(100, 10.0, images_seen=20_000, rampup=None) == pytest.approx(0.5 ** (100 / 10_000))
    assert ema_beta(100, 10.0, images_seen=0, rampup=0.05) == pytest.approx(0.0)  # start: copy G


def test_update_ema_interpolates_parameters_and_copies_buffers():
    model, ema = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([1.0, 2.0, 3.0]))
        ema.weight.copy_(torch.tensor([3.0, 2.0, 1.0]))
        model.running_mean.copy_(torch.tensor([5.0, 6.0, 7.0]))
    update_ema(ema, model, beta=0.75)
    torch.testing.assert_close(ema.weight, torch.tensor([2.5, 2.0, 1.5]))  # 0.75 * ema + 0.25 * model
    torch.testing.assert_close(ema.running_mean, model.running_mean)


def test_ema_generator_follows_g_by_the_formula_and_is_what_leaves_the_model():
    gan = tiny_gan(ema_kimg=0.05, ema_rampup=None)
    assert gan.sampling_generator is gan.generator_ema
    assert not any(p.requires_grad for p in gan.generator_ema.parameters())
    opt_params = {id(p) for opt in gan.configure_optimizers() for g in opt.param_groups for p in g["params"]}
    assert not opt_params & {id(p) for p in gan.generator_ema.parameters()}

    snapshots: list[tuple[list[torch.Tensor], list[torch.Tensor]]] = []

    class Snap(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            snapshots.append([p.detach().clone() for p in pl_module.generator_ema.parameters()])

    trainer = tiny_trainer(limit_train_batches=2, callbacks=[Snap()])
    trainer.fit(gan, tiny_data())
    ema_before = snapshots[-1]  # before the second batch
    beta = 0.5 ** (8 / 50.0)  # batch 8, half-life 50 images, no ramp-up
    for before, ema, g in zip(
        ema_before, gan.generator_ema.parameters(), gan.generator.parameters(), strict=True
    ):
        torch.testing.assert_close(ema, beta * before + (1 - beta) * g.detach())
    assert any(
        not torch.equal(a, b)
        for a, b in zip(gan.generator_ema.parameters(), gan.generator.parameters(), strict=True)
    )
    state = gan.state_dict()
    assert any(k.startswith("generator_ema.") for k in state)  # in checkpoints
    z = torch.randn(4, 16)
    ema_images = gan.sample(z=z)
    gan_raw = tiny_gan()
    gan_raw.generator.load_state_dict(gan.generator_ema.state_dict())
    torch.testing.assert_close(ema_images, gan_raw.sample(z=z))


def test_bad_ema_and_r1_settings_name_the_setting():
    with pytest.raises(ValueError, match="ema_kimg"):
        tiny_gan(ema_kimg=0)
    with pytest.raises(ValueError, match="ema_rampup"):
        tiny_gan(ema_kimg=1, ema_rampup=-1)
    with pytest.raises(ValueError, match="r1_every"):
        tiny_gan(r1_gamma=1, r1_every=0)
    with pytest.raises(ValueError, match="r1_gamma"):
        tiny_gan(r1_gamma=-1)


# ------------------------------------------------------------------------------------------ R1
class Linear(nn.Module):
    """D(x) = <w, x> per image: its input gradient is w for every image, so R1 = |w|^2."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.w).sum(dim=(1, 2, 3))


def test_r1_of_a_linear_discriminator_is_its_squared_weight_norm_and_differentiable():
    torch.manual_seed(0)
    d = Linear(torch.randn(3, 4, 4))
    real = torch.randn(5, 3, 4, 4, requires_grad=True)
    r1 = gradient_penalty(real, d(real))
    torch.testing.assert_close(r1, d.w.square().sum())
    r1.backward()  # d|w|^2/dw = 2w: the penalty reaches D's weights
    torch.testing.assert_close(d.w.grad, 2 * d.w.detach())


def test_module_r1_runs_in_float32_through_the_augmentation_under_autocast():
    gan = tiny_gan(r1_gamma=1.0)
    gan.discriminator = Linear(torch.full((3, 32, 32), 0.5))
    real = torch.rand(4, 3, 32, 32) * 2 - 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        r1 = gan.objective.penalty(gan.discriminator, real)
    assert r1.dtype == torch.float32
    torch.testing.assert_close(r1, torch.tensor(0.25 * 3 * 32 * 32))


def test_lazy_r1_is_added_every_kth_d_step_only():
    gan = tiny_gan(r1_gamma=10.0, r1_every=2)
    calls: list[int] = []
    original = gan.objective.penalty
    gan.objective.penalty = lambda D, images: calls.append(gan.d_updates) or original(D, images)
    tiny_trainer(limit_train_batches=5).fit(gan, tiny_data())
    assert calls == [0, 2, 4]


# --------------------------------------------------------------------------------------- LeCam
def test_lecam_penalty_is_the_one_sided_squared_distance_to_the_other_anchor():
    anchors = LeCamAnchors()
    anchors.update(torch.tensor([1.0, 3.0]), torch.tensor([-1.0, -3.0]))  # first step: the means, 2 and -2
    torch.testing.assert_close(anchors.anchors(), torch.tensor([2.0, -2.0]))
    real = torch.tensor([0.0, -3.0], requires_grad=True)
    fake = torch.tensor([1.0, 4.0], requires_grad=True)
    value = anchors.penalty(real, fake)
    # reals vs a_fake = -2: relu(2, -1)^2 -> mean(4, 0) = 2; fakes vs a_real = 2: relu(1, -2)^2 -> 0.5
    assert value.item() == pytest.approx(2.5)
    value.backward()  # d/dl mean(relu(l - a)^2) = 2 relu(l - a) / n, and minus that for a - l
    torch.testing.assert_close(real.grad, torch.tensor([2.0, 0.0]))
    torch.testing.assert_close(fake.grad, torch.tensor([-1.0, 0.0]))


def test_lecam_anchors_are_zero_debiased_moving_averages_of_the_mean_logits():
    anchors = LeCamAnchors()  # decay 0.99: a_t = sum_i 0.01 * 0.99^(t-i) m_i / (1 - 0.99^t)
    anchors.update(torch.tensor([1.0, 3.0]), torch.tensor([-2.0]))
    torch.testing.assert_close(anchors.anchors(), torch.tensor([2.0, -2.0]))
    anchors.update(torch.tensor([4.0, 6.0, 8.0]), torch.tensor([0.0, 1.0]))
    expected = [(0.99 * 2.0 + 6.0) / 1.99, (0.99 * -2.0 + 0.5) / 1.99]  # (0.99 m_1 + m_2) / (1 + 0.99)
    torch.testing.assert_close(anchors.anchors(), torch.tensor(expected))
    anchors.update(torch.tensor([100.0]), torch.tensor([100.0]), weight=0.0)  # a stand-in batch: kept
    torch.testing.assert_close(anchors.anchors(), torch.tensor(expected))


def test_lecam_anchors_are_the_same_on_every_process_from_the_means_over_all_images():
    # Two processes as two threads whose all_reduce_sum adds what both sent (as torch.distributed would).
    barrier, sent = threading.Barrier(2), [torch.zeros(0)] * 2
    batches = [  # (real, fake, weight) per process and step; process 1's second batch is a stand-in
        [
            (torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0]), 1.0),
            (torch.tensor([5.0]), torch.tensor([1.0]), 1.0),
        ],
        [
            (torch.tensor([8.0, 8.0]), torch.tensor([-4.0, -4.0]), 1.0),
            (torch.tensor([9.0]), torch.tensor([9.0]), 0.0),
        ],
    ]
    results: list[list[torch.Tensor]] = [[], []]

    def process(rank: int) -> None:
        def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
            sent[rank] = tensor
            barrier.wait()
            total = sent[0] + sent[1]
            barrier.wait()  # both have read before either sends again
            return total

        anchors = LeCamAnchors()
        for real, fake, weight in batches[rank]:
            anchors.update(real, fake, weight, all_reduce_sum)
            results[rank].append(anchors.anchors())

    threads = [threading.Thread(target=process, args=(rank,)) for rank in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first = torch.tensor([5.0, -2.0])  # the means of all 4 reals (1, 3, 8, 8) and all 4 fakes
    second = (0.99 * first + torch.tensor([5.0, 1.0])) / 1.99  # only process 0's images count
    for rank in (0, 1):
        torch.testing.assert_close(results[rank][0], first)
        torch.testing.assert_close(results[rank][1], second)


@pytest.mark.parametrize("lecam_weight", [0.0, 0.5])
def test_the_d_step_adds_lecam_weight_times_the_penalty_and_nothing_at_zero(lecam_weight):
    torch.manual_seed(0)
    gan = tiny_gan(lecam_weight=lecam_weight)
    seen: dict[str, torch.Tensor] = {}
    discriminator_loss, manual_backward = gan.objective.discriminator_loss, gan.manual_backward

    def record_d_loss(*args):
        out = discriminator_loss(*args)
        seen.setdefault("d_loss", out[0].detach())
        seen.setdefault("real", out[1].detach())
        seen.setdefault("fake", out[2].detach())
        return out

    def record_total(loss, *args, **kwargs):
        seen.setdefault("total", loss.detach())  # the first call: the first D step's
        manual_backward(loss, *args, **kwargs)

    gan.objective.discriminator_loss, gan.manual_backward = record_d_loss, record_total
    trainer = tiny_trainer(limit_train_batches=1)
    trainer.fit(gan, tiny_data())
    if not lecam_weight:
        assert torch.equal(seen["total"], seen["d_loss"])  # bit for bit the loss without LeCam
        assert gan.objective.lecam_anchors.state is None and "train/lecam" not in trainer.callback_metrics
        return
    # The first step's anchors are that batch's mean logits (zero-debiased), then the penalty on it.
    real, fake = seen["real"], seen["fake"]
    hand = (real - fake.mean()).clamp(min=0).pow(2).mean() + (real.mean() - fake).clamp(min=0).pow(2).mean()
    torch.testing.assert_close(seen["total"], seen["d_loss"] + 0.5 * hand)
    torch.testing.assert_close(trainer.callback_metrics["train/lecam"], hand)


def test_lecam_anchors_survive_a_checkpoint(tmp_path):
    gan = tiny_gan(lecam_weight=0.1)
    trainer = tiny_trainer(limit_train_batches=3)
    trainer.fit(gan, tiny_data())
    trainer.save_checkpoint(tmp_path / "lecam.ckpt")
    anchors = gan.objective.lecam_anchors.anchors()
    assert torch.all(anchors != 0)
    loaded = FaceGAN.load_from_checkpoint(tmp_path / "lecam.ckpt")
    assert loaded.objective.lecam_weight == 0.1
    assert torch.equal(loaded.objective.lecam_anchors.state, gan.objective.lecam_anchors.state)
    assert torch.equal(loaded.objective.lecam_anchors.anchors(), anchors)


def test_a_negative_lecam_weight_is_refused():
    with pytest.raises(ValueError, match="`lecam_weight` must be >= 0, but got -0.1"):
        tiny_gan(lecam_weight=-0.1)


# ------------------------------------------------------------------------- networks and SN
@pytest.mark.parametrize("size", [32, 64, 128])
def test_resnet_shapes_widths_and_spectral_norm(size):
    g = ResNetGenerator(size, latent_dim=16, channels=4)
    d = ResNetDiscriminator(size, channels=4)
    n = int(math.log2(size // 4))
    assert len(g.blocks) == n and g.top == 4 * 2**n  # one upsampling block per doubling from 4x4
    assert len(d.blocks) == n + 1
    x = g(torch.randn(2, 16))
    assert x.shape == (2, 3, size, size) and d(x).shape == (2,)
    gen, disc = build_networks(
        NetworkConfig(
            arch="resnet", image_size=size, latent_dim=16, g_channels=4, d_channels=4, spectral_norm=True
        )
    )
    layers = [m for m in disc.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert layers and all(hasattr(m, "parametrizations") for m in layers)
    assert not any(hasattr(m, "parametrizations") for m in gen.modules())


def test_spectral_norm_bounds_the_layer_norm_and_drops_dcgan_batchnorm():
    torch.manual_seed(0)
    _, d = build_networks(NetworkConfig(arch="dcgan", image_size=32, spectral_norm=True))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in d.modules())
    for _ in range(20):  # power iterations converge in training mode
        d(torch.randn(2, 3, 32, 32))
    conv = d.net[2]
    sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
    assert float(sigma) == pytest.approx(1.0, abs=0.05)
    assert FaceGAN(arch="resnet").net_config.spectral_norm  # the resnet default
    assert not FaceGAN(arch="resnet", spectral_norm=False).net_config.spectral_norm


# ------------------------------------------------------------------------------ mixed precision
@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
@pytest.mark.parametrize("arch", ["dcgan", "resnet"])
def test_mixed_precision_trains_with_every_option_and_stays_finite(precision, arch):
    # Trainer(precision="16-mixed") on a CPU silently becomes bf16; the plugin itself keeps float16
    # autocast and its GradScaler (scale, unscale before each of the two optimizer steps, update).
    plugin = None
    if precision == "16-mixed":
        plugin = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))
    torch.manual_seed(0)
    gan = tiny_gan(
        arch=arch,
        spectral_norm=True,
        r1_gamma=1.0,
        r1_every=2,
        ema_kimg=0.1,
        augment="color,translation,cutout",
        lecam_weight=0.3,
    )
    before = {k: v.clone() for k, v in gan.state_dict().items()}
    if plugin is None:
        trainer = tiny_trainer(limit_train_batches=4, precision=precision)
    else:
        trainer = tiny_trainer(limit_train_batches=4, plugins=[plugin])
    trainer.fit(gan, tiny_data())
    assert trainer.precision_plugin.precision == precision
    if plugin is not None:
        assert 0 < plugin.scaler.get_scale() < float("inf")  # the scaler ran and stayed finite
    metrics = trainer.callback_metrics
    for key in ("train/d_loss", "train/g_loss", "train/r1", "train/lecam"):
        assert torch.isfinite(metrics[key]), key
    after = gan.state_dict()
    assert all(torch.isfinite(v.float()).all() for v in after.values())
    for prefix in ("generator.", "discriminator.", "generator_ema."):
        changed = [k for k in after if k.startswith(prefix) and not torch.equal(after[k], before[k])]
        assert changed, prefix
    assert all(p.dtype == torch.float32 for p in gan.parameters())  # autocast leaves the weights float32


# ---------------------------------------------------------------------------------- recipes
@pytest.fixture(scope="module")
def small_celeba(tmp_path_factory) -> Path:
    """A CelebA layout of 16 noise images at the sample's half size (89x109) with its partition file."""
    root = tmp_path_factory.mktemp("celeba")
    (root / "img_align_celeba").mkdir()
    rng = np.random.default_rng(0)
    names = [f"{i:06d}.jpg" for i in range(1, 17)]
    for name in names:
        pixels = rng.integers(0, 256, (109, 89, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "img_align_celeba" / name, quality=90)
    codes = [0] * 12 + [1] * 2 + [2] * 2
    (root / "list_eval_partition.txt").write_text(
        "".join(f"{n} {c}\n" for n, c in zip(names, codes, strict=True))
    )
    return root


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_recipe_trains_one_step_on_cpu(recipe, tmp_path, small_celeba):
    # The recipes' own options, at test-sized widths (the GPU-sized ones write ~1 GB checkpoints).
    text = recipe.read_text()
    width = "16" if "arch: r3gan" in text else "8"  # r3gan: grouped convs need multiples of 8 at 64 px
    widths = [] if "arch: keras" in text else [f"--model.g_channels={width}", f"--model.d_channels={width}"]
    cli = main(
        [
            "--config", str(recipe),
            "--config", str(REPO / "configs/debug.yaml"),
            "--data.root", str(small_celeba),
            "--data.batch_size", "4",
            "--trainer.max_epochs", "1",
            "--trainer.max_steps", "-1",
            "--trainer.limit_train_batches", "2",  # "1" would parse as 1.0: the whole epoch
            "--trainer.limit_val_batches", "0",
            "--trainer.logger", "false",
            "--trainer.default_root_dir", str(tmp_path),
            "--samples.num_images", "4",
            *widths,
        ],
        run=False,
    )  # fmt: skip
    model = cli.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cli.trainer.fit(model, cli.datamodule)
    after = model.state_dict()
    assert torch.isfinite(cli.trainer.callback_metrics["train/d_loss"])
    d_changed = [k for k in after if k.startswith("discriminator.") and not torch.equal(after[k], before[k])]
    assert d_changed
    if model.hparams.n_disc_steps == 1:
        assert any(k.startswith("generator.") and not torch.equal(after[k], before[k]) for k in after)
    assert (model.generator_ema is not None) == (model.hparams.ema_kimg is not None)
