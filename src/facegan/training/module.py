"""``FaceGAN``: the LightningModule that trains a generator against a discriminator by Lightning's
manual-optimization GAN recipe: ``fake = G(z)`` once; a D update on ``real`` and ``fake.detach()``;
every ``n_disc_steps``, a G update on the same ``fake`` (or fresh ones) through the updated D, with
:class:`~facegan.training.objective.GANObjective`'s losses. Here too: its settings' checks, its networks
(:func:`networks`), ``sample()`` (how images leave the model), ``images_seen`` (the one image count).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Literal, cast

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.parsing import AttributeDict
from torch import Tensor, nn
from torch.optim.swa_utils import update_bn
from torch.utils.data import DataLoader

from facegan.data.cache import DeviceBatches
from facegan.data.decode import NoImagesError
from facegan.images import batch_images
from facegan.io.runs import logs_this_batch
from facegan.nets import FAMILIES, NetworkConfig, build_discriminator, build_generator
from facegan.nets.custom import build_from_record, check_pair, net_record
from facegan.training import distributed
from facegan.training.objective import GANObjective, discriminator_metrics


def ema_beta(
    batch_images: int, half_life_kimg: float, images_seen: int, rampup: float | None = None
) -> float:
    """Fraction of the EMA generator kept by an update after ``batch_images`` new images (all processes',
    host counts): a half-life in images means the same at any batch size. Early on the weights move too
    fast for a long average: the half-life is capped at ``rampup * images_seen`` (StyleGAN2-ADA's
    ``ema_rampup``; ``None``: no cap)."""
    half_life = max(half_life_kimg * 1000.0, 1e-8)
    if rampup is not None:
        half_life = max(min(half_life, images_seen * rampup), 1e-8)
    return 0.5 ** (batch_images / half_life)


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """``ema <- beta * ema + (1 - beta) * model`` for parameters; buffers are copied (facegan recomputes
    the BatchNorm statistics of whichever generator it samples from)."""
    for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
        p_ema.lerp_(p.detach().to(p_ema.dtype), 1.0 - beta)
    for b_ema, b in zip(ema.buffers(), model.buffers(), strict=True):
        b_ema.copy_(b)


@torch.no_grad()
def recompute_batchnorm_stats(
    generator: nn.Module, latent_dim: int, num_batches: int = 16, batch_size: int = 64, seed: int = 0
) -> None:
    """Replace ``generator``'s BatchNorm running statistics by standing statistics (BigGAN): the mean
    batch statistics of fresh latents (``update_bn``) from their own seeded RNG, not the global one."""
    device = next(generator.parameters()).device
    rng = torch.Generator(device=device).manual_seed(seed)
    latents = (torch.randn(batch_size, latent_dim, device=device, generator=rng) for _ in range(num_batches))
    update_bn(latents, generator)


def _standing_copy(
    standing: tuple[nn.Module, nn.Module, list[Tensor]] | None, gen: nn.Module
) -> nn.Module | None:
    """The copy of ``standing`` (source, copy, the source's buffers then) if it still matches ``gen``."""
    if standing is None or standing[0] is not gen:
        return None
    now, then = [*gen.parameters(), *gen.buffers()], [*standing[1].parameters(), *standing[2]]
    same = lambda a, b: a.device == b.device and torch.equal(a, b)  # noqa: E731 (moved: new copy)
    return standing[1] if len(now) == len(then) and all(map(same, now, then)) else None


def check_batch(images: Tensor, image_size: int) -> None:
    """Raise ``ValueError`` unless ``images`` is a float ``(B, 3, S, S)`` batch in ``[-1, 1]`` (one host
    sync: for a fit's first batch). A batch in ``[0, 1]`` (torchvision's ``ToTensor``) is refused."""
    if images.ndim != 4 or tuple(images.shape[1:]) != (3, image_size, image_size):
        raise ValueError(
            f"FaceGAN: a training batch has shape {tuple(images.shape)}, but the model was built for "
            f"image_size={image_size}: batches must be (B, 3, {image_size}, {image_size}). Make the data "
            "and the model agree (the CLI links --data.image_size to the model; in Python pass the same "
            "image_size to both)"
        )
    if not images.is_floating_point():
        raise ValueError(
            f"FaceGAN: a training batch has dtype {images.dtype}; facegan trains on float images in "
            "[-1, 1] (facegan.images.from_uint8 converts uint8)"
        )
    low, high = float(images.min()), float(images.max())
    if low < -1.001 or high > 1.001 or low >= 0.0:
        raise ValueError(
            f"FaceGAN: a training batch has values in [{low:.3f}, {high:.3f}]; facegan trains on images "
            "in [-1, 1] (after torchvision's ToTensor, add Normalize((0.5,) * 3, (0.5,) * 3))"
        )


def drawn_per_rank(trainer: L.Trainer, batch_idx: int) -> int | None:
    """Images each process's training loader drew for batch ``batch_idx`` before any was skipped (the
    same on every process, unlike the batch's size under ``skip_bad_images``); ``None`` if it does not say."""
    loader = trainer.train_dataloader
    if isinstance(loader, DeviceBatches):
        return loader.batch_size
    if not isinstance(loader, DataLoader) or loader.batch_size is None:
        return None
    try:
        total = len(loader.sampler)  # type: ignore[arg-type]  # this process's sampler under DDP
    except TypeError:
        return None
    size = loader.batch_size
    return size if loader.drop_last else max(0, min(size, total - batch_idx * size))


class ImageFeed:
    """The training batches as D is fed them: a fit's first batch checked against the model, each batch
    counted in :attr:`seen` (``FaceGAN.images_seen``) on the host, an epoch without images refused.
    Under DDP a batch counts what the loaders drew times the world size, the same on every rank without
    communication; images skipped as unreadable leave the count at the epoch's last batch (one
    collective per epoch). A loader that does not say what it drew costs one all-reduce per batch."""

    def __init__(self, image_size: int) -> None:
        self.image_size = image_size
        self.seen = 0  # images shown to D since the start of training, all processes together
        self.checked = False  # whether this fit's first batch was checked
        self.epoch_images = 0  # images trained on in this epoch, by this process
        self.epoch_start = 0  # `seen` when this epoch started

    def admit(self, images: Tensor, batch_idx: int, module: L.LightningModule) -> int:
        """Count the batch ``images`` (``B`` may be 0: all skipped); its images over all processes.
        ``ValueError`` for a first batch that does not match the model; ``NoImagesError`` at the last
        batch of an epoch in which no process had an image (every rank raises, or none does)."""
        n = images.shape[0]
        if n and not self.checked:
            check_batch(images, self.image_size)
            self.checked = True
        self.epoch_images += n
        trainer, world = module.trainer, module.trainer.world_size
        drawn = drawn_per_rank(trainer, batch_idx) if world > 1 else None
        step = n if world == 1 else drawn * world if drawn is not None else self._sum(module, n)
        self.seen += step
        if batch_idx + 1 == trainer.num_training_batches:
            total = self.epoch_images if world == 1 else self._sum(module, self.epoch_images)
            self.seen = self.epoch_start + total  # images skipped as unreadable leave the count
            if not total:
                raise NoImagesError(
                    f"FaceGAN: epoch {trainer.current_epoch} trained on no images: every batch was empty "
                    "because every image was skipped as unreadable (were the files deleted or changed, or "
                    "is crop_size larger than every image?); stopped before saving anything for this epoch"
                )
        return step

    @staticmethod
    def _sum(module: L.LightningModule, count: int) -> int:
        """``count`` summed over the processes (a collective and a host read)."""
        return int(distributed.all_reduce_sum(module, torch.tensor(float(count), device=module.device)))


# ------------------------------------------------------- what FaceGAN accepts: settings and networks
DEFAULT_LATENT_DIM = 128  # the registry's generators' latent size when `latent_dim` is left unset
ARCH_ONLY = {"generator": ("g_channels",), "discriminator": ("d_channels", "spectral_norm")}


def check_settings(hp: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first setting of ``hp`` (FaceGAN's hparams) that is out of range."""
    if hp["arch"] == "keras" and (hp["g_channels"] is not None or hp["d_channels"] is not None):
        raise ValueError(
            "FaceGAN: `g_channels`/`d_channels` set the dcgan widths; the 'keras' architecture has "
            "fixed widths, so leave them unset (null)"
        )
    if hp["blocks_per_stage"] is not None and (hp["arch"] != "r3gan" or hp["blocks_per_stage"] < 1):
        raise ValueError(
            f"FaceGAN: `blocks_per_stage` applies to arch='r3gan' only (an integer >= 1); got "
            f"{hp['blocks_per_stage']} with arch={hp['arch']!r}"
        )
    for name, rule, ok in (
        ("r1_gamma", ">= 0", hp["r1_gamma"] >= 0),
        ("r1_every", "an integer >= 1", hp["r1_every"] >= 1),
        ("n_disc_steps", "an integer >= 1", hp["n_disc_steps"] >= 1),
        ("label_noise", ">= 0", hp["label_noise"] >= 0),
        ("num_samples", ">= 1", hp["num_samples"] >= 1),
        ("r2_gamma", ">= 0", hp["r2_gamma"] >= 0),
        ("ema_kimg", "> 0 or null (no EMA)", hp["ema_kimg"] is None or hp["ema_kimg"] > 0),
        ("ema_rampup", "> 0 or null", hp["ema_rampup"] is None or hp["ema_rampup"] > 0),
        ("lecam_weight", ">= 0", hp["lecam_weight"] >= 0),
    ):
        if not ok:
            raise ValueError(f"FaceGAN: `{name}` must be {rule}, but got {hp[name]}")
    if hp["ada_target"] is not None and not (0 < hp["ada_target"] < 1 and hp["ada_kimg"] > 0):
        raise ValueError(
            f"FaceGAN: `ada_target` must be in (0, 1) (ADA: 0.6) or null, and `ada_kimg` > 0; got "
            f"ada_target={hp['ada_target']}, ada_kimg={hp['ada_kimg']}"
        )
    if hp["ada_target"] is not None and not hp["augment"].strip(" ,"):
        raise ValueError(
            "FaceGAN: `ada_target` adapts the strength of the `augment` policy, which is empty; give "
            "one, e.g. augment='color,translation' (--model.augment color,translation)"
        )
    if hp["label_noise"] and hp["loss"] != "nonsaturating":
        raise ValueError("FaceGAN: `label_noise` applies to loss='nonsaturating' only")


def networks(
    hp: Mapping[str, Any], given: dict[str, Any]
) -> tuple[nn.Module, nn.Module, NetworkConfig | None, dict[str, Any]]:
    """FaceGAN's ``(generator, discriminator, config, hparams)``: each network the one ``given`` (a module
    or its record, :mod:`facegan.nets.custom`), else ``arch``'s of ``config`` (``None`` if none is built);
    the hparams recording them: ``latent_dim`` (a given generator's, else the argument or 128) and records."""
    nets = {
        role: build_from_record(net, f"FaceGAN `{role}`") if isinstance(net, dict) else net
        for role, net in given.items()
    }
    for role, names in ARCH_ONLY.items():
        for name in names:
            if nets[role] is not None and hp[name] is not None:
                raise ValueError(
                    f"FaceGAN: `{name}` sets up the registry's {role}; with your own {role} leave it "
                    "unset (null) and configure your network itself"
                )
    latent_dim = hp["latent_dim"]
    if nets["generator"] is not None:
        own = getattr(nets["generator"], "latent_dim", None)
        if isinstance(own, bool) or not isinstance(own, int) or own < 1:
            raise ValueError(
                f"FaceGAN: the generator {type(nets['generator']).__name__} has no integer `latent_dim` "
                f"attribute (got {own!r}); set `self.latent_dim` in its __init__: facegan draws latents "
                "of that size"
            )
        if latent_dim is not None and latent_dim != own:
            raise ValueError(
                f"FaceGAN: `latent_dim` is {latent_dim}, but the generator's `latent_dim` is {own}; leave "
                "`latent_dim` unset (null): it is read from your generator"
            )
        latent_dim = own
    latent_dim = DEFAULT_LATENT_DIM if latent_dim is None else latent_dim
    generator, discriminator, config = nets["generator"], nets["discriminator"], None
    if generator is None or discriminator is None:  # arch's; None widths: the papers' (R3GAN's 768)
        arch, spectral_norm, width = hp["arch"], hp["spectral_norm"], 768 if hp["arch"] == "r3gan" else 64
        if spectral_norm is None:  # the family's default (an unknown arch: NetworkConfig names it)
            spectral_norm = arch in FAMILIES and FAMILIES[arch].spectral_norm_default
        config = NetworkConfig(
            arch=arch,
            image_size=hp["image_size"],
            latent_dim=latent_dim,
            g_channels=width if hp["g_channels"] is None else hp["g_channels"],
            d_channels=width if hp["d_channels"] is None else hp["d_channels"],
            blocks_per_stage=hp["blocks_per_stage"] or 2,
            spectral_norm=spectral_norm,
        )
        if generator is None:
            generator = build_generator(config)
        if discriminator is None:
            discriminator = build_discriminator(config)
    if any(net is not None for net in nets.values()):  # a given network: the pair's shapes checked
        check_pair(generator, discriminator, latent_dim, hp["image_size"])
    records = {role: None if net is None else net_record(net, role) for role, net in nets.items()}
    return generator, discriminator, config, {"latent_dim": latent_dim, **records}


class FaceGAN(L.LightningModule):
    """A GAN that learns to draw faces.

    Args:
        arch: network family of the networks not given: ``"dcgan"`` (Radford et al.), ``"keras"``
            (the Keras DCGAN face example, 128 px only), ``"resnet"`` (SNGAN's) or ``"r3gan"`` (R3GAN's).
        image_size: side of the square images in pixels (linked to the data module in the CLI).
        latent_dim: size of the latent vector ``z``; ``None``: the given generator's ``latent_dim``
            attribute, or 128 for ``arch``'s. A value other than the given generator's is refused.
        g_channels: ``dcgan``/``resnet``: width of G's last hidden layer (doubles towards 4x4);
            ``r3gan``: width of its stages up to 32 px; ``None``: the papers' 64 (R3GAN's 768).
        d_channels: ``dcgan``/``resnet``: width of D's first layer; ``None`` means 64.
        spectral_norm: spectrally normalize D's layers (a ``dcgan`` D drops BatchNorm; not for ``r3gan``);
            ``None``: resnet's.
        loss: ``"nonsaturating"`` (BCE on logits), ``"hinge"`` or ``"rpgan"`` (relativistic pairing).
        label_noise: nonsaturating loss only: the Keras example's label noise (0.05 there): targets
            ``1 - label_noise * U(0, 1)`` for reals, ``-label_noise * U(0, 1)`` for fakes; 0: none.
        g_lr: generator Adam learning rate.
        d_lr: discriminator Adam learning rate.
        g_betas: generator Adam betas (DCGAN: ``(0.5, 0.999)``).
        d_betas: discriminator Adam betas.
        adam_eps: Adam epsilon for both optimizers (Keras uses 1e-7).
        n_disc_steps: discriminator updates per generator update.
        g_fresh_latents: the generator update draws fresh latents (the Keras example) instead of
            reusing the discriminator update's fakes (Lightning's GAN recipe; one G forward per batch).
        augment: DiffAugment policy for every image D sees in training, the fakes G is trained through
            included: comma-separated names from ``"color"``, ``"translation"``, ``"cutout"``; ``""``: none.
        ada_target: adaptive augmentation (ADA): each op of ``augment`` applied with a probability
            driven by D's overfitting toward this (ADA: 0.6); ``None``: always.
        ada_kimg: thousands of images for that probability to go 0 -> 1.
        r1_gamma: weight of the R1 penalty ``gamma / 2 * |grad_x D(x_real)|^2``; 0 disables it.
            StyleGAN2-ADA starts from 0.0002 * S^2 / batch: 0.0128 at 64 px, batch 64.
        r1_every: lazy regularization: compute R1 (and R2) every ``r1_every`` discriminator updates,
            scaled by it (StyleGAN2: 16; 1 is eager, as R3GAN), so it costs 1/16 of a D step.
        r2_gamma: weight of the R2 penalty ``gamma / 2 * |grad_x D(x_fake)|^2`` on generated images.
        lecam_weight: weight of LeCam regularization (Tseng et al. 2021), which pulls D's logits on reals
            toward a moving average of those on fakes and vice versa, for small datasets; 0 disables it.
            The official scripts: 0.3 for BigGAN on CIFAR; far less for StyleGAN2 (3e-7 on FFHQ).
        blocks_per_stage: ``r3gan`` only: residual blocks per resolution; ``None``: the paper's 2.
        ema_kimg: half-life of the EMA generator in thousands of images (StyleGAN2-ADA: 10 at batch
            32), which grids, FID, ``generate`` and ``export`` then use; ``None`` trains without one.
        ema_rampup: cap it at ``ema_rampup * images_seen`` early on (StyleGAN2-ADA: 0.05; ``None``: never).
        num_samples: number of fixed latents kept in the ``sample_z`` buffer (sample grids).
        sample_seed: seed of the fixed latents and of the BatchNorm standing statistics.
        bn_stat_batches: batches of 64 fresh latents that recompute G's BatchNorm statistics for sampling
            (8: images within 0.11 of 255 levels of 64 batches' on average, as 16 batches; half the time).
        channels_last: train with channels-last (NHWC) weights and batches: faster convolutions
            on GPUs with tensor cores, especially under ``bf16-mixed``.
        fused_adam: Adam's fused kernel (one kernel per step for all parameters); ``None``: on CUDA and CPU
            (on 2 CPU cores, widths 32: 0.8 ms per G and D step against 5.7 ms unfused).
        compile: ``torch.compile`` G and D for the training step (not R1: compiled graphs lack its double
            backward); the first steps are slow while it compiles.
        generator: your own generator instead of ``arch``'s (YAML: ``class_path``/``init_args``): an
            ``nn.Module``, ``z (N, latent_dim)`` to ``(N, 3, S, S)`` in ``[-1, 1]``, with ``latent_dim`` and
            its ``__init__`` arguments kept as same-named attributes (checkpoints rebuild it from them).
        discriminator: your own discriminator instead of ``arch``'s: images ``(N, 3, S, S)`` to
            logits ``(N,)``, its ``__init__`` arguments kept as for ``generator``.

    Example:
        >>> gan = FaceGAN(image_size=32, g_channels=8, d_channels=8)
        >>> gan.sample(4).shape
        torch.Size([4, 3, 32, 32])
    """

    hparams: AttributeDict  # Lightning types it as a mapping; the settings of __init__, by attribute
    sample_z: Tensor  # (num_samples, latent_dim) buffer

    def __init__(
        self,
        arch: Literal["dcgan", "keras", "resnet", "r3gan"] = "dcgan",
        image_size: int = 64,
        latent_dim: int | None = None,
        g_channels: int | None = None,
        d_channels: int | None = None,
        loss: Literal["nonsaturating", "hinge", "rpgan"] = "nonsaturating",
        label_noise: float = 0.0,
        g_lr: float = 2e-4,
        d_lr: float = 2e-4,
        g_betas: tuple[float, float] = (0.5, 0.999),
        d_betas: tuple[float, float] = (0.5, 0.999),
        adam_eps: float = 1e-8,
        n_disc_steps: int = 1,
        g_fresh_latents: bool = False,
        augment: str = "",
        ada_target: float | None = None,
        ada_kimg: float = 500.0,
        spectral_norm: bool | None = None,
        r1_gamma: float = 0.0,
        r1_every: int = 16,
        r2_gamma: float = 0.0,
        lecam_weight: float = 0.0,
        blocks_per_stage: int | None = None,
        ema_kimg: float | None = None,
        ema_rampup: float | None = 0.05,
        num_samples: int = 64,
        sample_seed: int = 0,
        bn_stat_batches: int = 8,
        channels_last: bool = False,
        fused_adam: bool | None = None,
        compile: bool = False,
        generator: torch.nn.Module | None = None,
        discriminator: torch.nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["generator", "discriminator"])  # no pickled modules: records
        self.automatic_optimization = False
        check_settings(self.hparams)
        given = {"generator": generator, "discriminator": discriminator}
        self.generator, self.discriminator, self.net_config, recorded = networks(self.hparams, given)
        self.hparams.update(recorded)  # latent_dim, and how to rebuild a given network
        # The EMA generator: a frozen copy, never optimized, never in DDP's reducer; in checkpoints.
        self.generator_ema: torch.nn.Module | None = None
        if ema_kimg is not None:
            self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)
        self.objective = GANObjective(
            loss, label_noise, augment, ada_target, ada_kimg, r1_gamma, r2_gamma, r1_every, lecam_weight
        )
        self.compiled: dict[str, Callable[..., Tensor]] = {}  # compile=True: outside the module tree
        seeded = torch.Generator().manual_seed(sample_seed)
        # Fixed latents: successive grids differ only because G changed. Persistent: resumes keep them.
        self.register_buffer("sample_z", torch.randn(num_samples, self.hparams.latent_dim, generator=seeded))
        self.feed = ImageFeed(image_size)
        # images_seen is a Python int (no device sync); checkpoints keep it as state_dict["images_seen"].
        self.register_state_dict_post_hook(_save_images_seen)
        self.register_load_state_dict_pre_hook(_load_images_seen)
        self.d_updates = 0  # a Python int (no host sync per step); saved in checkpoints
        # The latest D diagnostics (train/d_real, d_fake, d_acc_real, d_acc_fake, kimg; R1/R2, LeCam and
        # ADA's p as of their last step), on the device; logged in on_train_batch_end, read by DivergenceMonitor.
        self.diagnostics: dict[str, Tensor] = {}
        self._standing: tuple[nn.Module, nn.Module, list[Tensor]] | None = None  # standing_generator's

    @property
    def images_seen(self) -> int:
        """Training progress in images shown to D, all processes together (StyleGAN's kimg x 1000):
        the one count that callbacks read (a Python int: no device sync), kept by checkpoints."""
        return self.feed.seen

    # ------------------------------------------------------------------------------- sampling
    @property
    def sampling_generator(self) -> torch.nn.Module:
        """The generator used for images that leave the model (grids, FID, export): the EMA one if any."""
        return self.generator if self.generator_ema is None else self.generator_ema

    def standing_generator(self) -> torch.nn.Module:
        """What :meth:`sample` runs and exports write: :attr:`sampling_generator`, or if it has BatchNorm a
        copy (sampling leaves training state alone) with standing statistics: eval-mode running ones lag
        behind weights changing every step; standing ones match training mode, each image depending on its
        latent only. Made again whenever the generator's parameters or buffers differ from its snapshot."""
        generator = self.sampling_generator
        norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
        if not any(isinstance(m, norms) and m.track_running_stats for m in generator.modules()):
            return generator
        standing = _standing_copy(self._standing, generator)
        if standing is None:
            self._standing = None  # free the old copy before making the new one
            standing = copy.deepcopy(generator).requires_grad_(False)
            hp, trainer = self.hparams, distributed.attached_trainer(self)
            # in a fit, at its precision (bf16 autocast: half the time), as G's training forward runs
            with trainer.precision_plugin.forward_context() if trainer else contextlib.nullcontext():
                recompute_batchnorm_stats(standing, hp.latent_dim, hp.bn_stat_batches, seed=hp.sample_seed)
            self._standing = (generator, standing, [b.detach().clone() for b in generator.buffers()])
        return standing

    @torch.no_grad()
    def sample(self, n: int | None = None, z: Tensor | None = None, batch_size: int = 256) -> Tensor:
        """Images ``(n, 3, S, S)`` in ``[-1, 1]``, without gradients, from latents ``z`` ``(n, latent_dim)``
        or ``n`` fresh ones; in eval mode with standing statistics (:meth:`standing_generator`), so an image
        depends on its latent only and matches what training-mode batch statistics produce."""
        latent_dim = self.hparams.latent_dim
        if z is None:
            if n is None:
                raise ValueError("FaceGAN.sample: pass `n` (number of images) or `z` (latents)")
            z = torch.randn(n, latent_dim, device=self.device)
        elif z.ndim != 2 or z.shape[1] != latent_dim:
            raise ValueError(f"FaceGAN.sample: `z` must have shape (n, {latent_dim}), got {tuple(z.shape)}")
        generator = self.standing_generator()
        was_training = generator.training
        generator.eval()
        try:
            images = torch.cat([generator(chunk) for chunk in z.to(self.device).split(batch_size)])
        finally:
            generator.train(was_training)  # the generator's mode is restored
        return images.float().clamp_(-1.0, 1.0)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        ada = self.objective.ada.state_dict()  # p and the partial sums of its interval
        lecam = self.objective.lecam_anchors.state_dict()
        checkpoint["facegan"] = {
            "d_updates": self.d_updates,
            "rng": distributed.rng_states(),
            "ada": ada,
            "lecam": lecam,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("facegan", {})
        self.d_updates = state.get("d_updates", 0)
        if state.get("ada") is not None and self.objective.ada.target is not None:
            self.objective.ada.load_state_dict(state["ada"], self.device)
        if state.get("lecam") is not None:
            self.objective.lecam_anchors.load_state_dict(state["lecam"], self.device)
        trainer = distributed.attached_trainer(self)
        if state.get("rng") is not None and trainer is not None and trainer.state.fn == TrainerFn.FITTING:
            # Resuming a fit: the random streams go on from the checkpoint (N/2 steps + resume + N/2 = N
            # steps), set before the training iterator draws its shuffle seed; not for load_from_checkpoint.
            distributed.set_rng_states(state["rng"])

    # ------------------------------------------------------------------------------- training
    def on_train_start(self) -> None:
        self.feed.checked = False  # each fit checks its first batch
        self.diagnostics = {}
        if distributed.is_distributed(self):  # seed_everything and resumes gave every process one stream
            distributed.decorrelate_ranks(self.global_rank)

    def on_train_epoch_start(self) -> None:
        self.feed.epoch_images, self.feed.epoch_start = 0, self.feed.seen

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Logs the batch's :attr:`diagnostics` when the loggers write this batch, at the epoch's last
        batch (``callback_metrics`` for checkpoints and ``fit``'s caller) and when a callback stopped
        training. Lightning's ``self.log`` costs about 1 ms a value on the host, a GPU step's time, so
        values no logger writes are not logged; the losses are, every batch (progress bar, monitors)."""
        trainer = self.trainer
        if self.diagnostics and (
            logs_this_batch(trainer) or trainer.should_stop or batch_idx + 1 == trainer.num_training_batches
        ):
            self.log_dict(self.diagnostics)

    def on_fit_start(self) -> None:
        if self.hparams.channels_last:
            self.to(memory_format=torch.channels_last)
        if self.hparams.compile and not self.compiled:  # they share the weights; checkpoint keys stay plain
            self.compiled = {"g": torch.compile(self.generator), "d": torch.compile(self.discriminator)}

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        hp = self.hparams  # the fused kernel when fused_adam says so (None: where torch has one)
        fused = hp.fused_adam if hp.fused_adam is not None else self.device.type in ("cuda", "cpu")
        kind = {"fused": True} if fused else {}
        players = ((self.generator, hp.g_lr, hp.g_betas), (self.discriminator, hp.d_lr, hp.d_betas))
        return [
            torch.optim.Adam(net.parameters(), lr=lr, betas=betas, eps=hp.adam_eps, **kind)
            for net, lr, betas in players
        ]

    def training_step(self, batch: Any, batch_idx: int) -> None:
        hp, objective = self.hparams, self.objective
        real = batch_images(batch)  # (B, 3, S, S) in [-1, 1]
        images = self.feed.admit(real, batch_idx, self)  # all processes'; added to images_seen
        weight = 1.0
        if not real.shape[0]:  # every image of the batch was skipped as unreadable
            if not distributed.is_distributed(self):
                return  # one process: no step
            # DDP: a stand-in batch with zero weight (no gradients, no images counted): every rank runs
            # the same forwards, collectives and D/G/R1/ADA/EMA schedule, so the weights stay identical.
            real, weight = torch.zeros(2, 3, hp.image_size, hp.image_size, device=self.device), 0.0
        if hp.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        opt_g, opt_d = cast(list, self.optimizers())
        G, D = self.compiled.get("g", self.generator), self.compiled.get("d", self.discriminator)
        distributed.disable_reducer(self)  # each player's gradients are averaged right before its step
        z = torch.randn(real.shape[0], hp.latent_dim, device=self.device)
        with torch.set_grad_enabled(not hp.g_fresh_latents):  # G trains on these fakes, or fresh ones
            fake = G(z)  # (B, 3, S, S)

        # Discriminator: real -> "real", fake.detach() -> "fake". Only D's parameters require grad.
        self.toggle_optimizer(opt_d)
        d_loss, real_logits, fake_logits = objective.discriminator_loss(D, real, fake.detach())
        penalty, penalties = objective.regularization(self.discriminator, real, fake, self.d_updates)
        sum_ranks = partial(distributed.all_reduce_sum, self)  # LeCam's means each D update, ADA's sums
        lecam, lecam_logs = objective.lecam(real_logits, fake_logits, weight, sum_ranks)  # on every rank
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward((d_loss + penalty + lecam) * weight)
        shown = distributed.average_gradients(self, opt_d, real.shape[0] if weight else 0)
        if not weight and not int(shown):  # no process had an image: no step anywhere, as in one process
            self.untoggle_optimizer(opt_d)  # (a host read only in this rare stand-in step, on every rank)
            return
        opt_d.step()
        self.untoggle_optimizer(opt_d)
        self.d_updates += 1
        strength = objective.adapt(real_logits, fake_logits, weight, sum_ranks)  # on every rank
        if weight:
            self.log("train/d_loss", d_loss.detach(), prog_bar=True)
            kimg = torch.tensor(self.images_seen / 1000.0)  # on the host: no copy to the device
            metrics = discriminator_metrics(real_logits.detach(), fake_logits.detach())
            self.diagnostics.update({**metrics, "train/kimg": kimg, **penalties, **lecam_logs, **strength})

        # Generator, every n_disc_steps D updates: the same fakes (or fresh ones) through the updated D.
        if self.d_updates % hp.n_disc_steps:
            return
        self.toggle_optimizer(opt_g)
        if hp.g_fresh_latents:
            fake = G(torch.randn(real.shape[0], hp.latent_dim, device=self.device))
        g_loss = objective.generator_loss(D, fake, real)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(g_loss * weight)
        distributed.average_gradients(self, opt_g)
        opt_g.step()
        self.untoggle_optimizer(opt_g)
        if self.generator_ema is not None:  # the images since the last update (host counts, every rank alike)
            beta = ema_beta(images * hp.n_disc_steps, hp.ema_kimg, self.images_seen, hp.ema_rampup)
            update_ema(self.generator_ema, self.generator, beta)
        if weight:
            self.log("train/g_loss", g_loss.detach(), prog_bar=True)

    # ----------------------------------------------------------------------- validation / test
    def on_validation_start(self) -> None:
        distributed.broadcast_buffers(self)  # D's BatchNorm statistics drift apart per process in training

    on_test_start = on_validation_start

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """``val/d_real``: D's P(real) on held-out reals; far below ``train/d_real`` means D overfits."""
        real, prefix = batch_images(batch), "test" if self.trainer.testing else "val"
        if real.shape[0] == 0:  # every image of the batch was skipped as unreadable
            return
        fake = self.sample(z=torch.randn(real.shape[0], self.hparams.latent_dim, device=self.device))
        self.log_dict(
            {
                f"{prefix}/d_real": torch.sigmoid(self.discriminator(real)).mean(),
                f"{prefix}/d_fake": torch.sigmoid(self.discriminator(fake)).mean(),
            },
            batch_size=real.shape[0],
            sync_dist=True,  # each process holds other images: the epoch's mean is over all of them
        )

    test_step = validation_step


def _save_images_seen(module: FaceGAN, state: dict[str, Any], prefix: str, metadata: Any) -> None:
    state[prefix + "images_seen"] = torch.tensor(module.images_seen)  # () int64, as the buffer it was


def _load_images_seen(
    module: FaceGAN, state: dict, prefix: str, meta: Any, strict: bool, missing: list, *_: Any
) -> None:
    if prefix + "images_seen" in state:
        module.feed.seen = int(state.pop(prefix + "images_seen"))
    elif strict:
        missing.append(prefix + "images_seen")
