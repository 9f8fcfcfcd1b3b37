"""``FaceGAN``: the LightningModule that trains a generator against a discriminator (glue only).

Manual optimization, one iteration per batch (Lightning docs, "manual optimization" GAN recipe):
``fake = G(z)`` once; a discriminator update on ``real`` and ``fake.detach()``; then, every
``n_disc_steps`` batches, a generator update on the *same* ``fake`` (with ``g_fresh_latents``: on
fresh ones) through the freshly updated D (``toggle_optimizer`` freezes the other player).
Networks live in :mod:`facegan.nets`; losses, augmentation, EMA, sampling, DDP plumbing and random
states in the other modules of this package.
Mixed precision works with every option: D's logits and the losses are float32, R1 runs in float32.
``sample()`` is the one way callbacks and tools get images out of the model.
"""

from __future__ import annotations

import copy
from typing import Any, Literal, cast

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.parsing import AttributeDict
from torch import Tensor

from facegan.images import batch_images
from facegan.nets import build_networks
from facegan.training import distributed
from facegan.training.augment import parse_policy
from facegan.training.ema import ema_beta, update_ema
from facegan.training.guards import DataGuard
from facegan.training.losses import discriminator_metrics, get_losses
from facegan.training.players import Players
from facegan.training.rng import rng_states, set_rng_states
from facegan.training.sampling import StandingStats, generate, latents
from facegan.training.settings import adam_pair, check_settings, network_config


class FaceGAN(L.LightningModule):
    """A GAN that learns to draw faces.

    Args:
        arch: network family, ``"dcgan"`` (Radford et al., 32/64/128 px), ``"keras"`` (the Keras DCGAN
            face example, 128 px), ``"resnet"`` (SNGAN's ResNet) or ``"r3gan"`` (R3GAN's, 32/64/128 px).
        image_size: side of the square images in pixels (linked to the data module in the CLI).
        latent_dim: size of the latent vector ``z``.
        g_channels: ``dcgan``/``resnet``: width of G's last hidden layer (doubles towards 4x4);
            ``r3gan``: width of its stages up to 32 px; ``None``: the papers' 64 (R3GAN's 768).
        d_channels: ``dcgan``/``resnet``: width of D's first layer; ``None`` means 64.
        spectral_norm: spectrally normalize every layer of D (a ``dcgan`` D then drops its
            BatchNorm); ``None`` means the architecture's default (on for ``resnet`` only).
        loss: ``"nonsaturating"`` (BCE on logits), ``"hinge"`` or ``"rpgan"`` (relativistic pairing).
        label_noise: nonsaturating loss only: the Keras example's label noise (0.05 there): real
            targets ``1 - label_noise * U(0, 1)``, fake targets ``-label_noise * U(0, 1)``, logits
            clipped as Keras clips probabilities (see :mod:`facegan.training.losses`); 0 disables it.
        g_lr: generator Adam learning rate.
        d_lr: discriminator Adam learning rate.
        g_betas: generator Adam betas (DCGAN: ``(0.5, 0.999)``).
        d_betas: discriminator Adam betas.
        adam_eps: Adam epsilon for both optimizers (Keras uses 1e-7).
        n_disc_steps: discriminator updates per generator update.
        g_fresh_latents: the generator update draws fresh latents (the Keras example) instead of
            reusing the discriminator update's fakes (Lightning's GAN recipe; one G forward per batch).
        augment: DiffAugment policy applied to every image D sees in training, real and fake, and
            to the fakes G is trained through: comma-separated names from ``"color"``,
            ``"translation"``, ``"cutout"``; ``""`` for none (see :mod:`facegan.training.augment`).
        ada_target: adaptive augmentation (ADA): each op of ``augment`` applied with a probability
            driven by D's overfitting toward this (ADA: 0.6); ``None``: always (see
            :mod:`facegan.training.ada`). ``ada_kimg``: thousands of images for ``p`` to go 0 -> 1.
        r1_gamma: weight of the R1 penalty ``gamma / 2 * |grad_x D(x_real)|^2``; 0 disables it.
            StyleGAN2-ADA starts from 0.0002 * S^2 / batch: 0.0128 at 64 px, batch 64.
        r1_every: lazy regularization: compute R1 (and R2) every ``r1_every`` discriminator updates,
            scaled by it (StyleGAN2: 16; 1 is eager, as R3GAN), so it costs 1/16 of a D step.
        r2_gamma: weight of the R2 penalty ``gamma / 2 * |grad_x D(x_fake)|^2`` on generated images.
        blocks_per_stage: ``r3gan`` only: residual blocks per resolution; ``None``: the paper's 2.
        ema_kimg: half-life of the EMA generator in thousands of images (StyleGAN2-ADA: 10 at
            batch 32); ``None`` trains without one. With an EMA, grids, FID, ``generate`` and
            ``export`` use it.
        ema_rampup: cap the half-life at ``ema_rampup * images_seen`` early on (StyleGAN2-ADA:
            0.05); ``None`` disables the ramp-up.
        num_samples: number of fixed latents kept in the ``sample_z`` buffer (sample grids).
        sample_seed: seed of the fixed latents and of the BatchNorm standing statistics.
        bn_stat_batches: batches of fresh latents used to recompute G's BatchNorm statistics
            before sampling (see :mod:`facegan.training.sampling`).
        channels_last: train with channels-last (NHWC) weights and batches: faster convolutions
            on GPUs with tensor cores, especially under ``bf16-mixed``.
        fused_adam: Adam's fused kernel (one launch per step for all parameters); ``None`` uses
            it when the model is on a CUDA device and PyTorch's default (foreach) elsewhere.
        compile: ``torch.compile`` G and D for the training step (not for R1, whose double
            backward compiled graphs do not support); first steps are slow while it compiles.

    Example:
        >>> gan = FaceGAN(image_size=32, g_channels=8, d_channels=8)
        >>> gan.sample(4).shape
        torch.Size([4, 3, 32, 32])
    """

    hparams: AttributeDict  # Lightning types it as a mapping; the settings of __init__, by attribute
    sample_z: Tensor  # (num_samples, latent_dim) buffer
    images_seen: Tensor  # () int64 buffer

    def __init__(
        self,
        arch: Literal["dcgan", "keras", "resnet", "r3gan"] = "dcgan",
        image_size: int = 64,
        latent_dim: int = 128,
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
        blocks_per_stage: int | None = None,
        ema_kimg: float | None = None,
        ema_rampup: float | None = 0.05,
        num_samples: int = 64,
        sample_seed: int = 0,
        bn_stat_batches: int = 16,
        channels_last: bool = False,
        fused_adam: bool | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        check_settings(self.hparams)
        self.augment_policy = parse_policy(augment)
        self.net_config = network_config(self.hparams)
        self.generator, self.discriminator = build_networks(self.net_config)
        # The EMA generator: a frozen copy, never optimized, never in DDP's reducer; in checkpoints.
        self.generator_ema: torch.nn.Module | None = None
        if ema_kimg is not None:
            self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)
        self.d_loss_fn, self.g_loss_fn = get_losses(loss)
        seeded = torch.Generator().manual_seed(sample_seed)
        # Fixed latents: successive grids differ only because G changed. Persistent: resumes keep them.
        self.register_buffer("sample_z", torch.randn(num_samples, latent_dim, generator=seeded))
        # Training progress in images shown to D (StyleGAN's kimg); persistent, so resumes keep it.
        self.register_buffer("images_seen", torch.zeros((), dtype=torch.long))
        self.d_updates = 0  # a Python int (no host sync per step); saved in checkpoints
        self.data_guard = DataGuard(image_size)  # first batch checked, epochs without images refused
        self.players = Players(self)  # G and D as the step uses them; the augmentation strength (ADA)
        # A copy of the sampling generator with BatchNorm standing statistics, made when its weights change.
        self.standing_stats = StandingStats(latent_dim, bn_stat_batches, sample_seed)

    # ------------------------------------------------------------------------------- sampling
    @property
    def sampling_generator(self) -> torch.nn.Module:
        """The generator used for images that leave the model (grids, FID, export): the EMA one if any."""
        return self.generator if self.generator_ema is None else self.generator_ema

    def standing_generator(self) -> torch.nn.Module:
        """What :meth:`sample` runs: :attr:`sampling_generator` with BatchNorm standing statistics for
        its current weights, in a copy (the module's own running statistics are never changed); the
        sampling generator itself when it has no BatchNorm. Exports write its weights."""
        return self.standing_stats.net(self.sampling_generator)

    @torch.no_grad()
    def sample(self, n: int | None = None, z: Tensor | None = None, batch_size: int = 256) -> Tensor:
        """Generate images in ``[-1, 1]``, shape ``(n, 3, S, S)``, without gradients.

        ``z`` (``(n, latent_dim)``) fixes the latents; otherwise ``n`` fresh ones are drawn. The
        generator runs in eval mode with BatchNorm "standing statistics" recomputed from the current
        weights (whenever they have changed, however), so an image depends on its latent only, not on
        the rest of the batch, and matches what training-mode batch statistics produce.
        """
        z = latents(n, z, self.hparams.latent_dim, self.device)
        return generate(self.standing_generator(), z, batch_size)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        ada = self.players.ada.state_dict()  # p and the partial sums of its interval
        checkpoint["facegan"] = {"d_updates": self.d_updates, "rng": rng_states(), "ada": ada}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("facegan", {})
        self.d_updates = state.get("d_updates", 0)
        if state.get("ada") is not None and self.players.ada.adaptive:
            self.players.ada.load_state_dict(state["ada"], self.device)
        trainer = distributed.attached_trainer(self)
        if state.get("rng") is not None and trainer is not None and trainer.state.fn == TrainerFn.FITTING:
            # Resuming a fit: the random streams continue where the checkpoint left them (N/2 steps +
            # resume + N/2 = N steps straight); set before the first training iterator draws its
            # shuffle seed. `FaceGAN.load_from_checkpoint` leaves the RNG alone.
            set_rng_states(state["rng"])

    # ------------------------------------------------------------------------------- training
    def on_train_start(self) -> None:
        self.data_guard.start_fit()

    def on_train_epoch_start(self) -> None:
        self.data_guard.start_epoch()

    def on_fit_start(self) -> None:
        if self.hparams.channels_last:
            self.to(memory_format=torch.channels_last)
        if self.hparams.compile:
            self.players.compile()

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return adam_pair(self.generator, self.discriminator, self.hparams, self.device)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        real = batch_images(batch)  # (B, 3, S, S) in [-1, 1]
        if not self.data_guard.admit(real, batch_idx, distributed.attached_trainer(self)):
            # Every image of the batch was skipped as unreadable. In one process: no step. Under DDP,
            # a stand-in batch with zero weight (no gradients, no images counted): every rank runs the
            # same forwards, collectives and D/G/R1/ADA/EMA schedule, so the weights stay identical.
            if not distributed.is_distributed(self):
                return
            size = self.hparams.image_size
            return self._step(torch.zeros(2, 3, size, size, device=self.device), weight=0.0)
        self._step(real, weight=1.0)

    def _step(self, real: Tensor, weight: float) -> None:
        """One D update (and, on schedule, one G update) on ``real``; losses scaled by ``weight``."""
        hp = self.hparams
        opt_g, opt_d = cast(list, self.optimizers())
        distributed.disable_reducer(self)
        if hp.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        images = real.shape[0] if weight else 0  # what this process shows D in this step
        z = torch.randn(real.shape[0], hp.latent_dim, device=self.device)
        if hp.g_fresh_latents:  # G trains on fakes of its own: no graph kept for these
            with torch.no_grad():
                fake = self.players.fakes(z)  # (B, 3, S, S)
        else:
            fake = self.players.fakes(z)  # (B, 3, S, S); graph kept for the generator update

        # Discriminator: real -> "real", fake.detach() -> "fake". Only D's parameters require grad.
        self.toggle_optimizer(opt_d)
        real_logits = self.players.logits(real)  # (B,)
        fake_logits = self.players.logits(fake.detach())  # (B,)
        d_loss = self.d_loss_fn(real_logits, fake_logits, hp.label_noise)
        penalty, penalties = self.players.regularization(real, fake, self.d_updates)  # lazy R1 + R2
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward((d_loss + penalty) * weight)
        shown = distributed.average_gradients(self, opt_d, images)  # all processes' images this step
        if not weight and not int(shown):  # no process had an image: no step anywhere, as in one process
            self.untoggle_optimizer(opt_d)  # (a host read only in this rare stand-in step, on every rank)
            return
        opt_d.step()
        self.untoggle_optimizer(opt_d)
        self.images_seen += shown
        self.d_updates += 1
        strength = self.players.adapt(real_logits, fake_logits, weight)  # every rank, same updates
        if weight:
            self.log("train/d_loss", d_loss.detach(), prog_bar=True)
            metrics = discriminator_metrics(real_logits.detach(), fake_logits.detach(), self.images_seen)
            self.log_dict({**metrics, **penalties, **strength})

        # Generator: the same fake (or fresh ones) through the updated D, D frozen.
        if self.d_updates % hp.n_disc_steps == 0:
            self.toggle_optimizer(opt_g)
            if hp.g_fresh_latents:
                fake = self.players.fakes(torch.randn(real.shape[0], hp.latent_dim, device=self.device))
            g_loss = self.players.g_loss(fake, real)
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(g_loss * weight)
            distributed.average_gradients(self, opt_g)
            opt_g.step()
            self.untoggle_optimizer(opt_g)
            if self.generator_ema is not None:
                # Images since the last update, and the ramp-up's images_seen: the device counters,
                # identical on every process (the step's count is all-reduced with D's gradients).
                beta = ema_beta(shown * hp.n_disc_steps, hp.ema_kimg, self.images_seen, hp.ema_rampup)
                update_ema(self.generator_ema, self.generator, beta)
            if weight:
                self.log("train/g_loss", g_loss.detach(), prog_bar=True)

    # ----------------------------------------------------------------------- validation / test
    def on_validation_start(self) -> None:
        distributed.broadcast_buffers(self)  # D's BatchNorm statistics drift apart per process in training

    on_test_start = on_validation_start

    def _evaluate(self, batch: Any, prefix: str) -> None:
        real = batch_images(batch)
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

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """``val/d_real``: D's P(real) on held-out reals; far below ``train/d_real`` means D overfits."""
        self._evaluate(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test")
