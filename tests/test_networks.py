import pytest
import torch
from torch import nn

from facegan.nets import FAMILIES, NetworkConfig, build_networks
from facegan.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from facegan.training.module import recompute_batchnorm_stats

# Parameter counts of the Keras DCGAN face example at 128 px, from the Keras formulas
# (Conv2D / Conv2DTranspose: k*k*c_in*c_out + c_out; Dense: n_in*n_out + n_out).
KERAS_D_PARAMS = (
    (4 * 4 * 3 * 64 + 64) + (4 * 4 * 64 * 128 + 128) + (4 * 4 * 128 * 128 + 128) + (16 * 16 * 128 + 1)
)
KERAS_G_PARAMS = (
    (128 * 16 * 16 * 128 + 16 * 16 * 128)
    + (4 * 4 * 128 * 128 + 128)
    + (4 * 4 * 128 * 256 + 256)
    + (4 * 4 * 256 * 512 + 512)
    + (4 * 4 * 512 * 3 + 3)
)


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_keras_parameter_counts_equal_the_keras_model():
    assert KERAS_D_PARAMS == 429_377 and KERAS_G_PARAMS == 7_136_131
    g, d = build_networks(NetworkConfig(arch="keras", image_size=128, latent_dim=128))
    assert count(g) == KERAS_G_PARAMS
    assert count(d) == KERAS_D_PARAMS


@pytest.mark.parametrize(
    ("arch", "size"), [(arch, size) for arch, family in FAMILIES.items() for size in family.sizes]
)
def test_shapes_and_ranges(arch, size):
    torch.manual_seed(0)
    width = 32 if arch == "r3gan" else 8  # r3gan: stages above 32 px halve; grouped convs need 8s
    g, d = build_networks(
        NetworkConfig(arch=arch, image_size=size, latent_dim=16, g_channels=width, d_channels=width)
    )
    images = g(torch.randn(3, 16))
    assert images.shape == (3, 3, size, size)
    if arch == "r3gan":  # no tanh (as the paper): unbounded in training, clamped in eval mode
        images = g.eval()(torch.randn(3, 16))
    assert images.min() >= -1 and images.max() <= 1
    assert images.std() > 0  # not a constant output
    logits = d(images)
    assert logits.shape == (3,)
    assert torch.isfinite(logits).all()


def test_dcgan_widths_double_towards_4x4_and_follow_radford_init():
    g = DCGANGenerator(image_size=64, latent_dim=100, channels=64)
    d = DCGANDiscriminator(image_size=64, channels=64)
    g_convs = [m for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    d_convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in g_convs] == [512, 256, 128, 64, 3]
    assert [m.out_channels for m in d_convs] == [64, 128, 256, 512, 1]
    # The paper's published DCGAN-64 sizes (latent 100, no biases): 3.58 M and 2.77 M parameters.
    assert count(g) == 3_576_704 and count(d) == 2_765_568
    weights = torch.cat([m.weight.flatten() for m in g_convs + d_convs])
    assert abs(weights.std().item() - 0.02) < 0.001
    assert not any(isinstance(m, nn.BatchNorm2d) for m in list(d.net)[:2])  # no BN on D's input layer


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"arch": "stylegan"},
            r"`arch` must be one of \('dcgan', 'keras', 'resnet', 'r3gan'\), but got 'stylegan'",
        ),
        (
            {"arch": "dcgan", "image_size": 48},
            r"`image_size` must be one of \(32, 64, 128\) for arch='dcgan'",
        ),
        ({"arch": "keras", "image_size": 64}, r"`image_size` must be one of \(128,\) for arch='keras'"),
        ({"latent_dim": 0}, r"`latent_dim` must be a positive integer, but got 0"),
    ],
)
def test_bad_network_config_names_the_setting(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NetworkConfig(**kwargs)


def test_standing_statistics_match_training_mode_and_leave_global_rng_alone():
    torch.manual_seed(0)
    g = DCGANGenerator(image_size=32, latent_dim=16, channels=8)
    with torch.no_grad():  # make the running statistics stale, as fast-changing training does
        for m in g.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.fill_(0.5)
                m.running_var.fill_(4.0)
    z = torch.randn(512, 16)
    with torch.no_grad():
        train_out = g.train()(z)
        stale = g.eval()(z)
        state = torch.get_rng_state()
        recompute_batchnorm_stats(g, 16, num_batches=16, batch_size=64, seed=1)
        assert torch.equal(torch.get_rng_state(), state)
        standing = g.eval()(z)
    stale_err = (stale - train_out).abs().mean()
    standing_err = (standing - train_out).abs().mean()
    assert standing_err < 0.1 * stale_err
    assert standing_err < 0.01


def test_standing_statistics_follow_the_generator_that_is_sampled():
    """Sampling recomputes BatchNorm statistics for whichever generator leaves the model (EMA or raw)."""
    from facegan import FaceGAN

    gan = FaceGAN(image_size=32, latent_dim=16, g_channels=8, d_channels=8, ema_kimg=1.0)
    with torch.no_grad():
        for p in gan.generator.parameters():
            p.add_(0.05 * torch.randn_like(p))  # the raw generator now differs from its EMA copy
    z = gan.sample_z[:4]
    ema_images = gan.sample(z=z)
    ema, gan.generator_ema = gan.generator_ema, None
    raw_images = gan.sample(z=z)  # same step, another generator: its own standing statistics
    recompute_batchnorm_stats(
        gan.generator, 16, num_batches=gan.hparams.bn_stat_batches, batch_size=64, seed=0
    )
    assert torch.equal(raw_images, gan.generator.eval()(z).float().clamp(-1, 1))
    assert not torch.allclose(raw_images, ema_images)
    gan.generator_ema = ema


def test_standing_statistics_in_a_bf16_fit_are_computed_under_its_autocast():
    """In a bf16-mixed fit the statistics come from G's forward under bf16 autocast, as in training;
    outside a trainer in float32."""
    import copy

    import lightning as L

    from facegan import FaceGAN

    torch.manual_seed(0)
    gan = FaceGAN(image_size=32, latent_dim=16, g_channels=8, d_channels=8)
    fp32, bf16 = copy.deepcopy(gan.generator), copy.deepcopy(gan.generator)
    recompute_batchnorm_stats(fp32, 16, gan.hparams.bn_stat_batches, seed=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        recompute_batchnorm_stats(bf16, 16, gan.hparams.bn_stat_batches, seed=0)

    def means(generator):
        return [m.running_mean for m in generator.modules() if isinstance(m, torch.nn.BatchNorm2d)]

    assert not all(map(torch.equal, means(fp32), means(bf16)))  # the two are told apart
    assert all(map(torch.equal, means(gan.standing_generator()), means(fp32)))
    torch.manual_seed(0)
    in_fit = FaceGAN(image_size=32, latent_dim=16, g_channels=8, d_channels=8)
    in_fit.trainer = L.Trainer(accelerator="cpu", precision="bf16-mixed", logger=False)
    assert all(map(torch.equal, means(in_fit.standing_generator()), means(bf16)))


def test_sample_outside_a_trainer_follows_loaded_and_changed_weights():
    """global_step stays 0 outside a Trainer: standing statistics must follow the weights themselves."""
    from facegan import FaceGAN

    def gan(seed):
        torch.manual_seed(seed)
        return FaceGAN(image_size=32, latent_dim=16, g_channels=8, d_channels=8)

    user, other = gan(0), gan(1)
    z = user.sample_z[:4]
    user.sample(z=z)  # statistics for the initial weights
    user.load_state_dict(other.state_dict())  # a user's own loop loads other weights
    assert torch.equal(user.sample(z=z), other.sample(z=z))
    with torch.no_grad():  # ... or steps its own optimizer
        for model in (user, other):
            for p in model.generator.parameters():
                p.mul_(1.1)
    assert torch.equal(user.sample(z=z), other.sample(z=z))
    fresh = gan(2)
    fresh.load_state_dict(user.state_dict())
    assert torch.equal(user.sample(z=z), fresh.sample(z=z))


def test_sample_leaves_the_modules_own_weights_and_running_statistics_as_they_were():
    """Standing statistics go into a copy: the generators' buffers are training state (checkpoints)."""
    from facegan import FaceGAN

    gan = FaceGAN(image_size=32, latent_dim=16, g_channels=8, d_channels=8, ema_kimg=1.0)
    gan.generator.train()(torch.randn(8, 16))  # running statistics away from their initial values
    before = {name: value.clone() for name, value in gan.state_dict().items()}
    images = gan.sample(z=gan.sample_z[:4])
    assert {name for name, value in gan.state_dict().items() if not torch.equal(value, before[name])} == set()
    standing = gan.standing_generator()
    assert standing is not gan.generator_ema and torch.equal(
        standing.eval()(gan.sample_z[:4]).clamp(-1, 1), images
    )
    recompute_batchnorm_stats(gan.generator_ema, 16, num_batches=8, batch_size=64, seed=0)  # in place
    assert torch.equal(gan.generator_ema.eval()(gan.sample_z[:4]).clamp(-1, 1), images)
