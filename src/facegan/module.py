"""``FaceGAN``: the LightningModule that trains a generator against a discriminator.

Manual optimization, one iteration per batch (Lightning docs, "manual optimization" GAN recipe):

1. ``fake = G(z)`` once per batch;
2. discriminator update on ``real`` and ``fake.detach()`` (only D's parameters receive gradients);
3. every ``n_disc_steps`` batches, a generator update on the *same* ``fake`` through the freshly
   updated D (D's parameters are frozen by ``toggle_optimizer``, so only G changes).

Under DDP, Lightning wraps the whole module (G and D) in one ``DistributedDataParallel``, whose
reducer expects every parameter to receive a gradient in every backward pass. A GAN's D backward
never reaches G and its G backward never updates D, hence the well-known "parameters that were not
used in producing loss" failure (and ``find_unused_parameters=True`` only papers over it with a graph
search per backward). ``FaceGAN`` instead does what a plain PyTorch GAN does with one DDP wrapper per
network: it switches the whole-module reducer off for its training step and all-reduces (averages)
exactly the gradients of the player that is about to step, right before ``opt.step()``.

Options that make the faces better (each off by default, each a constructor argument):
``augment`` (DiffAugment of everything D sees), ``ema_kimg`` (an EMA copy of G that is what leaves
the model: grids, FID, export), ``r1_gamma`` (lazy R1 penalty on reals), ``spectral_norm`` (D) and
``arch="resnet"`` (SNGAN's ResNet pair). Mixed precision (``Trainer(precision="bf16-mixed")`` or
``"16-mixed"``) works with all of them: D's logits and the losses are float32, and R1 runs outside
autocast in float32.

``sample()`` is the one way callbacks and tools get images out of the model.
"""

from __future__ import annotations

import copy
import random
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from facegan.augment import diff_augment, parse_policy
from facegan.ema import ema_beta, update_ema
from facegan.losses import get_losses, r1_penalty
from facegan.networks import SPECTRAL_NORM_DEFAULT, NetworkConfig, build_networks, recompute_batchnorm_stats


def _rng_states() -> dict[str, Any]:
    """This process's random states (torch CPU and CUDA, Python, NumPy) as tensors and plain types.

    Not Lightning's ``_collect_rng_states``: it keeps NumPy's state as an ndarray, which
    ``torch.load(weights_only=True)`` refuses, and facegan only ever loads checkpoints that way.
    """
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": list(random.getstate()[1]),
        "python_version": random.getstate()[0],
        "python_gauss": random.getstate()[2],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
    }


def _decorrelate_ranks(rank: int) -> None:
    """Give each process its own random streams, deterministically from the current (shared) state.

    ``seed_everything`` seeds every DDP process alike, and a resume restores rank 0's states on all
    of them: every process would then draw the same latents (and augmentations), so the ranks'
    "different" fake batches would be copies. Draw one number from the shared state, add the rank,
    and reseed torch (CPU and CUDA), Python and NumPy with it.
    """
    seed = int(torch.randint(0, 2**62, (1,))) + rank
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def _set_rng_states(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))


class FaceGAN(L.LightningModule):
    """A GAN that learns to draw faces.

    Args:
        arch: network family, ``"dcgan"`` (Radford et al., 32/64/128 px), ``"keras"`` (the
            Keras DCGAN face example at 128 px) or ``"resnet"`` (SNGAN's ResNet, 32/64/128 px).
        image_size: side of the square images in pixels (linked to the data module in the CLI).
        latent_dim: size of the latent vector ``z``.
        g_channels: ``dcgan``/``resnet``: width of G's last hidden layer (doubles towards 4x4);
            ``None`` means the papers' 64. The ``keras`` widths are fixed.
        d_channels: ``dcgan``/``resnet``: width of D's first layer; ``None`` means 64.
        spectral_norm: spectrally normalize every layer of D (a ``dcgan`` D then drops its
            BatchNorm); ``None`` means the architecture's default (on for ``resnet`` only).
        loss: ``"nonsaturating"`` (BCE on logits) or ``"hinge"``.
        label_noise: nonsaturating loss only: add ``label_noise * U(0, 1)`` to D's targets
            (0.05 in the Keras example); 0 disables it.
        g_lr: generator Adam learning rate.
        d_lr: discriminator Adam learning rate.
        g_betas: generator Adam betas (DCGAN: ``(0.5, 0.999)``).
        d_betas: discriminator Adam betas.
        adam_eps: Adam epsilon for both optimizers (Keras uses 1e-7).
        n_disc_steps: discriminator updates per generator update.
        augment: DiffAugment policy applied to every image D sees in training, real and fake, and
            to the fakes G is trained through: comma-separated names from ``"color"``,
            ``"translation"``, ``"cutout"``; ``""`` for none (see :mod:`facegan.augment`).
        r1_gamma: weight of the R1 penalty ``gamma / 2 * |grad_x D(x_real)|^2``; 0 disables it.
            StyleGAN2-ADA uses 0.0002 * S^2 / batch (about 0.1 at 64 px and batch 64) as a start.
        r1_every: lazy regularization: compute R1 every ``r1_every`` discriminator updates and
            scale it by ``r1_every`` (StyleGAN2: 16), so it costs 1/16 of a D forward-backward.
        ema_kimg: half-life of the EMA generator in thousands of images (StyleGAN2-ADA: 10 at
            batch 32); ``None`` trains without one. With an EMA, grids, FID, ``generate`` and
            ``export`` use it.
        ema_rampup: cap the half-life at ``ema_rampup * images_seen`` early on (StyleGAN2-ADA:
            0.05); ``None`` disables the ramp-up.
        num_samples: number of fixed latents kept in the ``sample_z`` buffer (sample grids).
        sample_seed: seed of the fixed latents and of the BatchNorm standing statistics.
        bn_stat_batches: batches of fresh latents used to recompute G's BatchNorm statistics
            before sampling (see :func:`facegan.networks.recompute_batchnorm_stats`).
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

    def __init__(
        self,
        arch: Literal["dcgan", "keras", "resnet"] = "dcgan",
        image_size: int = 64,
        latent_dim: int = 128,
        g_channels: int | None = None,
        d_channels: int | None = None,
        loss: Literal["nonsaturating", "hinge"] = "nonsaturating",
        label_noise: float = 0.0,
        g_lr: float = 2e-4,
        d_lr: float = 2e-4,
        g_betas: tuple[float, float] = (0.5, 0.999),
        d_betas: tuple[float, float] = (0.5, 0.999),
        adam_eps: float = 1e-8,
        n_disc_steps: int = 1,
        augment: str = "",
        spectral_norm: bool | None = None,
        r1_gamma: float = 0.0,
        r1_every: int = 16,
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
        if arch == "keras" and (g_channels is not None or d_channels is not None):
            raise ValueError(
                "FaceGAN: `g_channels`/`d_channels` set the dcgan widths; the 'keras' architecture has "
                "fixed widths, so leave them unset (null)"
            )
        if n_disc_steps < 1:
            raise ValueError(f"FaceGAN: `n_disc_steps` must be an integer >= 1, but got {n_disc_steps}")
        if label_noise < 0:
            raise ValueError(f"FaceGAN: `label_noise` must be >= 0, but got {label_noise}")
        if num_samples < 1:
            raise ValueError(f"FaceGAN: `num_samples` must be >= 1, but got {num_samples}")
        if r1_gamma < 0 or r1_every < 1:
            raise ValueError(
                f"FaceGAN: `r1_gamma` must be >= 0 and `r1_every` an integer >= 1, but got "
                f"r1_gamma={r1_gamma}, r1_every={r1_every}"
            )
        if ema_kimg is not None and ema_kimg <= 0:
            raise ValueError(f"FaceGAN: `ema_kimg` must be > 0 or null (no EMA), but got {ema_kimg}")
        if ema_rampup is not None and ema_rampup <= 0:
            raise ValueError(f"FaceGAN: `ema_rampup` must be > 0 or null, but got {ema_rampup}")
        self.augment_policy = parse_policy(augment)
        self.net_config = NetworkConfig(
            arch=arch,
            image_size=image_size,
            latent_dim=latent_dim,
            g_channels=64 if g_channels is None else g_channels,
            d_channels=64 if d_channels is None else d_channels,
            spectral_norm=SPECTRAL_NORM_DEFAULT.get(arch, False) if spectral_norm is None else spectral_norm,
        )
        self.generator, self.discriminator = build_networks(self.net_config)
        # The EMA generator: a frozen copy, never optimized, never in DDP's reducer; in checkpoints.
        self.generator_ema: torch.nn.Module | None = None
        if ema_kimg is not None:
            self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)
        self.d_loss_fn, self.g_loss_fn = get_losses(loss)
        if label_noise and loss != "nonsaturating":
            raise ValueError("FaceGAN: `label_noise` applies to loss='nonsaturating' only")

        seeded = torch.Generator().manual_seed(sample_seed)
        # Fixed latents: successive grids differ only because G changed. Persistent: resumes keep them.
        self.register_buffer("sample_z", torch.randn(num_samples, latent_dim, generator=seeded))
        # Training progress in images shown to D (StyleGAN's kimg); persistent, so resumes keep it.
        self.register_buffer("images_seen", torch.zeros((), dtype=torch.long))
        self.d_updates = 0  # a Python int (no host sync per step); saved in checkpoints
        self._images_seen_host = 0  # images_seen as a Python int, set at train start
        # Compiled forwards share the networks' parameters; kept out of the module tree (and thus out
        # of state_dict and checkpoints, whose keys stay those of the plain networks).
        self._compiled: dict[str, Any] = {}
        self._bn_stats_at_step: int | None = None  # global_step at which G's BN stats were recomputed

    # ---------------------------------------------------------------------------- distributed
    def _world_size(self) -> int:
        trainer = self._trainer  # None outside a Trainer (e.g. a user's own loop)
        return trainer.world_size if trainer is not None else 1

    def _distributed(self) -> bool:
        return self._world_size() > 1 and dist.is_available() and dist.is_initialized()

    def _disable_ddp_reducer(self) -> None:
        """Stop the whole-module DDP wrapper from reducing gradients (see the module docstring)."""
        trainer = self._trainer
        wrapper = getattr(trainer.strategy, "model", None) if trainer is not None else None
        if isinstance(wrapper, DistributedDataParallel):
            wrapper.require_backward_grad_sync = False  # Lightning's pre_backward then skips the reducer

    def _average_gradients(self, optimizer: Any) -> None:
        """All-reduce (mean over processes) the gradients of ``optimizer``'s parameters, in one flat buffer."""
        if not self._distributed():
            return
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return
        flat = torch._utils._flatten_dense_tensors(grads)
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
        for grad, synced in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads), strict=True):
            grad.copy_(synced)

    def _broadcast_buffers(self) -> None:
        """Give every process rank 0's buffers (BatchNorm statistics), as DDP's ``broadcast_buffers`` does."""
        if not self._distributed():
            return
        for buffer in self.buffers():
            dist.broadcast(buffer, src=0)

    # ------------------------------------------------------------------------------- sampling
    @property
    def sampling_generator(self) -> torch.nn.Module:
        """The generator used for images that leave the model (grids, FID, export): the EMA one if any."""
        return self.generator if self.generator_ema is None else self.generator_ema

    @torch.no_grad()
    def sample(self, n: int | None = None, z: Tensor | None = None, batch_size: int = 256) -> Tensor:
        """Generate images in ``[-1, 1]``, shape ``(n, 3, S, S)``, without gradients.

        ``z`` (``(n, latent_dim)``) fixes the latents; otherwise ``n`` fresh ones are drawn. The
        generator runs in eval mode with BatchNorm "standing statistics" recomputed from the current
        weights (once per training step), so an image depends on its latent only, not on the rest of
        the batch, and matches what training-mode batch statistics produce.
        """
        if z is None:
            if n is None:
                raise ValueError("FaceGAN.sample: pass `n` (number of images) or `z` (latents)")
            z = torch.randn(n, self.hparams.latent_dim, device=self.device)
        elif z.ndim != 2 or z.shape[1] != self.hparams.latent_dim:
            raise ValueError(
                f"FaceGAN.sample: `z` must have shape (n, {self.hparams.latent_dim}), got {tuple(z.shape)}"
            )
        generator = self.sampling_generator
        if self._bn_stats_at_step != self.global_step:
            recompute_batchnorm_stats(
                generator,
                self.hparams.latent_dim,
                num_batches=self.hparams.bn_stat_batches,
                batch_size=64,
                seed=self.hparams.sample_seed,
            )
            self._bn_stats_at_step = self.global_step
        was_training = generator.training
        generator.eval()
        try:
            z = z.to(self.device)
            images = torch.cat([generator(chunk) for chunk in z.split(batch_size)])
        finally:
            generator.train(was_training)
        return images.float().clamp_(-1.0, 1.0)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["facegan"] = {"d_updates": self.d_updates, "rng": _rng_states()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("facegan", {})
        self.d_updates = state.get("d_updates", 0)
        self._bn_stats_at_step = None
        trainer = self._trainer
        if state.get("rng") is not None and trainer is not None and trainer.state.fn == TrainerFn.FITTING:
            # Resuming a fit: continue the random streams (latents, data order, flips, dropout) where
            # the checkpoint left them, so N/2 steps + resume + N/2 steps equals N steps straight. Set
            # here, before the first training iterator draws its shuffle seed (Lightning's sanity
            # check runs with its RNG isolated); `FaceGAN.load_from_checkpoint` leaves the RNG alone.
            _set_rng_states(state["rng"])

    # ------------------------------------------------------------------------------- training
    def on_train_start(self) -> None:
        self._images_seen_host = int(self.images_seen)  # one device sync per fit, none per step
        if self._distributed():
            _decorrelate_ranks(dist.get_rank())

    def on_fit_start(self) -> None:
        if self.hparams.channels_last:
            self.to(memory_format=torch.channels_last)
        if self.hparams.compile and not self._compiled:
            self._compiled = {"g": torch.compile(self.generator), "d": torch.compile(self.discriminator)}

    def _g(self, z: Tensor) -> Tensor:
        return self._compiled.get("g", self.generator)(z)

    def _d(self, images: Tensor) -> Tensor:
        return self._compiled.get("d", self.discriminator)(images)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        hp = self.hparams
        fused = hp.fused_adam if hp.fused_adam is not None else self.device.type == "cuda"
        kind = {"fused": True} if fused else {}
        opt_g = torch.optim.Adam(
            self.generator.parameters(), lr=hp.g_lr, betas=hp.g_betas, eps=hp.adam_eps, **kind
        )
        opt_d = torch.optim.Adam(
            self.discriminator.parameters(), lr=hp.d_lr, betas=hp.d_betas, eps=hp.adam_eps, **kind
        )
        return [opt_g, opt_d]

    def _augment(self, images: Tensor) -> Tensor:
        """What D sees in training: ``images`` through the DiffAugment policy (if any)."""
        return diff_augment(images, self.augment_policy) if self.augment_policy else images

    def _logits(self, images: Tensor) -> Tensor:
        """D's float32 logits ``(B,)`` of augmented ``images`` (losses stay float32 under autocast)."""
        return self._d(self._augment(images)).float()

    def _r1(self, real: Tensor) -> Tensor:
        """R1 penalty on ``real`` through the augmentation, in float32 with autocast off (eager D)."""
        with torch.autocast(device_type=self.device.type, enabled=False):
            real = real.detach().float().requires_grad_(True)
            return r1_penalty(real, self.discriminator(self._augment(real)).float())

    @staticmethod
    def _images(batch: Any) -> Tensor:
        """Accept a tensor batch, or ``(images, labels...)`` from a user's own dataset."""
        return batch[0] if isinstance(batch, list | tuple) else batch

    def training_step(self, batch: Any, batch_idx: int) -> None:
        real = self._images(batch)  # (B, 3, S, S) in [-1, 1]
        if real.shape[0] == 0:  # every image of the batch was skipped as unreadable
            return
        opt_g, opt_d = self.optimizers()
        self._disable_ddp_reducer()
        if self.hparams.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        z = torch.randn(real.shape[0], self.hparams.latent_dim, device=self.device)
        fake = self._g(z)  # (B, 3, S, S); graph kept for the generator update

        # Discriminator: real -> "real", fake.detach() -> "fake". Only D's parameters require grad.
        self.toggle_optimizer(opt_d)
        real_logits = self._logits(real)  # (B,)
        fake_logits = self._logits(fake.detach())  # (B,)
        d_loss = self.d_loss_fn(real_logits, fake_logits, self.hparams.label_noise)
        d_total = d_loss
        hp = self.hparams
        if hp.r1_gamma > 0 and self.d_updates % hp.r1_every == 0:  # lazy R1: every k-th step, times k
            r1 = self._r1(real)
            d_total = d_loss + (0.5 * hp.r1_gamma * hp.r1_every) * r1
            self.log("train/r1", r1.detach())
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(d_total)
        self._average_gradients(opt_d)
        opt_d.step()
        self.untoggle_optimizer(opt_d)
        self.images_seen += real.shape[0] * self._world_size()  # every process sees its own batch
        self._images_seen_host += real.shape[0] * self._world_size()  # the same, without a device sync
        self.d_updates += 1
        self.log("train/d_loss", d_loss.detach(), prog_bar=True)
        self.log_dict(
            {
                "train/d_real": torch.sigmoid(real_logits.detach()).mean(),  # D's P(real) on reals
                "train/d_fake": torch.sigmoid(fake_logits.detach()).mean(),  # D's P(real) on fakes
                "train/kimg": self.images_seen.float() / 1000.0,
            }
        )

        # Generator: the same fake through the updated D, D frozen.
        if self.d_updates % self.hparams.n_disc_steps == 0:
            self.toggle_optimizer(opt_g)
            g_loss = self.g_loss_fn(self._logits(fake))
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(g_loss)
            self._average_gradients(opt_g)
            opt_g.step()
            self.untoggle_optimizer(opt_g)
            if self.generator_ema is not None:
                batch = real.shape[0] * self._world_size() * hp.n_disc_steps  # images since last update
                beta = ema_beta(batch, hp.ema_kimg, self._images_seen_host, hp.ema_rampup)
                update_ema(self.generator_ema, self.generator, beta)
            self.log("train/g_loss", g_loss.detach(), prog_bar=True)

    # ----------------------------------------------------------------------- validation / test
    def on_validation_start(self) -> None:
        self._broadcast_buffers()  # D's BatchNorm statistics drift apart per process in training

    def on_test_start(self) -> None:
        self._broadcast_buffers()

    def _evaluate(self, batch: Any, prefix: str) -> None:
        real = self._images(batch)
        fake = self.sample(z=torch.randn(real.shape[0], self.hparams.latent_dim, device=self.device))
        self.log_dict(
            {
                f"{prefix}/d_real": torch.sigmoid(self.discriminator(real)).mean(),
                f"{prefix}/d_fake": torch.sigmoid(self.discriminator(fake)).mean(),
            },
            batch_size=real.shape[0],
        )

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """``val/d_real``: D's P(real) on held-out reals; far below ``train/d_real`` means D overfits."""
        self._evaluate(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test")
