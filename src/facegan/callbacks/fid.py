"""``FIDMonitor``: FID of a generator against real images from any source, their statistics cached."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from facegan.callbacks.kimg import KimgSchedule, images_seen
from facegan.io.runs import last_batch_step
from facegan.metrics.fid import (
    FID,
    SUBSET_SIZE,
    SUBSETS,
    ValueRange,
    check_value_range,
    fixed_latents,
    generated,
    resolve_real,
)
from facegan.training.distributed import random_streams_kept

log = logging.getLogger(__name__)

EPOCH_KEYS = {"val/fid": "fid", "val/kid": "kid", "val/kid_std": "kid_std", "val/fid_seconds": "seconds"}


class FIDMonitor(L.Callback):
    """FID and KID of generated images, logged as ``val/fid``, ``val/kid``, ``val/kid_std``, ``val/fid_seconds``.

    A Lightning front to :class:`facegan.metrics.fid.FID` (``facegan score``'s engine too): images of
    ``pl_module.sample(z=...)`` (or ``generator``) on fixed latents against ``real`` (default: the
    trainer's data module), whose statistics are cached. Example (any Lightning project)::

        fid = FIDMonitor(real=my_datamodule, real_range=(0, 1), num_fake=2000)
        trainer = L.Trainer(callbacks=[fid, ModelCheckpoint(monitor="val/fid", mode="min")])

    Every evaluation (``every_n_epochs``, ``every_n_kimg``, the fit's end) is logged with
    ``train/kimg`` at the latest training batch's step, and put in ``trainer.callback_metrics`` for
    ``ModelCheckpoint(monitor="val/fid")`` (saving at train epoch end; its ``every_n_epochs`` must be
    a multiple of this one's, checked at setup). Under DDP each rank evaluates its share of the
    latents and all hold the same FID and KID.

    Args:
        num_fake: generated images per evaluation (10,000 is usual on a GPU; Inception runs at about
            4.5 images/s on 2 CPU cores).
        num_real: real images (evenly spaced) behind the statistics; ``None`` -> the whole split, at
            most :attr:`REAL_CAP`. Paid once, then read from the cache.
        every_n_epochs: evaluate after every N-th training epoch; 0: never at epoch ends.
        every_n_kimg: also evaluate whenever ``pl_module.images_seen`` passes a multiple of this many
            thousand images.
        at_fit_end: evaluate when training ends, unless already done at that step.
        split: data module split of the real images (``"train"``, ``"val"`` or ``"test"``).
        real: ``None`` (the trainer's data module), a data module (facegan's, or any: its
            ``<split>_dataloader()``, read in order, shuffling undone), a ``DataLoader`` or iterable of
            batches (tensors or ``(images, ...)`` tuples), a folder, zip or CelebA folder of images
            (cropped to a square, resized to ``image_size``), or statistics: pytorch-fid's ``.npz``
            (``mu``/``sigma``) or a cache ``.pt``.
        real_range: value range of a loader's images, checked on every batch: ``[low, high]`` for floats
            or ``"uint8"`` (facegan's data module and image files need none).
        generator: a callable ``z -> images`` to measure instead of ``pl_module.sample(z=z)``.
        latent_dim: size of the latents; ``None`` -> ``pl_module.hparams.latent_dim``.
        fake_range: value range of the generated images (``[-1, 1]`` is facegan's); clamped to it.
        image_size: side that image files are resized to; ``None`` -> ``pl_module.hparams.image_size``.
        crop_size: central square cropped from image files first; ``None``: the shorter side.
        kid: also compute KID (unbiased, unlike FID at a few thousand images) from the same features;
            the real images' features are cached with their statistics (8 KB per image).
        kid_subsets: KID's random subsets; ``kid_subset_size``: images per subset, capped at the
            counts (torch-fidelity's 100 x 1000).
        batch_size: images per generator / Inception batch.
        seed: seed of the fixed latents, identical across evaluations, runs and resumes.
        weights_path: the Inception weights file ``weights-inception-2015-12-05-6726825d.pth``;
            ``None`` -> ``$FACEGAN_FID_WEIGHTS``, then ``$TORCH_HOME/hub/checkpoints/``.
        cache_dir: real-statistics cache; ``None`` -> ``$FACEGAN_CACHE/fid`` or ``~/.cache/facegan/fid``.
    """

    REAL_CAP = 10_000

    def __init__(
        self,
        num_fake: int = 1000,
        num_real: int | None = None,
        every_n_epochs: int = 1,
        every_n_kimg: float | None = None,
        at_fit_end: bool = True,
        split: str = "train",
        batch_size: int = 64,
        seed: int = 0,
        weights_path: str | None = None,
        cache_dir: str | None = None,
        real: Any = None,
        real_range: tuple[float, float] | str = (-1.0, 1.0),
        generator: Callable[[torch.Tensor], torch.Tensor] | None = None,
        latent_dim: int | None = None,
        fake_range: tuple[float, float] | str = (-1.0, 1.0),
        image_size: int | None = None,
        crop_size: int | None = None,
        kid: bool = True,
        kid_subsets: int = SUBSETS,
        kid_subset_size: int = SUBSET_SIZE,
    ) -> None:
        super().__init__()
        for ok, name, allowed in (
            (num_fake >= 2, "num_fake", "an integer >= 2"),
            (num_real is None or num_real >= 2, "num_real", "null or an integer >= 2"),
            (every_n_epochs >= 0, "every_n_epochs", "an integer >= 0 (0 disables)"),
            (every_n_kimg is None or every_n_kimg > 0, "every_n_kimg", "null or > 0"),
            (batch_size >= 1, "batch_size", "an integer >= 1"),
            (isinstance(split, str) and split != "", "split", "'train', 'val' or 'test'"),
            (generator is None or callable(generator), "generator", "a callable z -> images"),
            (latent_dim is None or latent_dim >= 1, "latent_dim", "null or an integer >= 1"),
            (image_size is None or image_size >= 1, "image_size", "null or an integer >= 1"),
            (kid_subsets >= 1, "kid_subsets", "an integer >= 1"),
            (kid_subset_size >= 2, "kid_subset_size", "an integer >= 2"),
        ):
            if not ok:
                raise ValueError(f"FIDMonitor: `{name}` must be {allowed}, but got {locals()[name]!r}")
        self.num_fake, self.num_real, self.split, self.batch_size = num_fake, num_real, split, batch_size
        self.every_n_epochs, self.every_n_kimg, self.at_fit_end = every_n_epochs, every_n_kimg, at_fit_end
        self.seed, self.weights_path, self.cache_dir = seed, weights_path, cache_dir
        self.real, self.generator, self.latent_dim = real, generator, latent_dim
        self.image_size, self.crop_size = image_size, crop_size
        self.kid, self.kid_subsets, self.kid_subset_size = kid, kid_subsets, kid_subset_size
        try:
            self.real_range: ValueRange = check_value_range(real_range, "real_range")
            self.fake_range: ValueRange = check_value_range(fake_range, "fake_range")
        except ValueError as error:
            raise ValueError(f"FIDMonitor: {error}") from None
        self.fid: FID | None = None  # the engine; never a child of the LightningModule
        # per evaluation: epoch, step, kimg and the engine's scores (fid, kid, ..., num_fake, num_real)
        self.history: list[dict[str, Any]] = []
        self.cache_path: Path | None = None  # real-statistics file (global rank 0)
        self.cache_hit: bool | None = None  # whether setup found it there
        self.latents: torch.Tensor | None = None  # (num_fake, latent_dim), on the CPU, set in setup
        self.schedule = KimgSchedule(every_n_kimg) if every_n_kimg else None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        with random_streams_kept():  # the Inception net's initialisation and real loaders draw from them
            self._refuse_checkpoints_without_fid(trainer)
            if self.real is None and getattr(trainer, "datamodule", None) is None:
                raise TypeError(
                    "FIDMonitor: no real images: give FIDMonitor(real=...) (a data module, a DataLoader, a "
                    "folder or zip of images, or a statistics file .npz/.pt), or fit with a data module"
                )
            hparams = getattr(pl_module, "hparams", {})
            latent_dim = self.latent_dim or hparams.get("latent_dim")
            if (self.generator is None and not hasattr(pl_module, "sample")) or not latent_dim:
                raise TypeError(
                    "FIDMonitor: the LightningModule needs `sample(z=...)` and `hparams.latent_dim`; or give "
                    "FIDMonitor(generator=<z -> images>, latent_dim=...)"
                )
            if self.schedule is not None:  # fail before the real statistics, not at train start
                images_seen(pl_module, "FIDMonitor(every_n_kimg=...)")
            if self.num_fake < trainer.world_size:
                raise ValueError(f"FIDMonitor: `num_fake` must be >= the {trainer.world_size} processes")
            if self.fid is None:
                self.fid = FID.load(self.weights_path, kid=self.kid, kid_subsets=self.kid_subsets,
                                    kid_subset_size=self.kid_subset_size, seed=self.seed)  # fmt: skip
            self.fid.to(trainer.strategy.root_device)  # where the module goes (it is still on the CPU)
            self.latents = fixed_latents(self.num_fake, int(latent_dim), self.seed)
            if trainer.is_global_zero:
                self._prepare_real(getattr(trainer, "datamodule", None), pl_module)
            else:  # real statistics live on rank 0 only: compute() sums every rank's states
                self.fid.set_real(None)
            trainer.strategy.barrier("FIDMonitor.setup")

    def _refuse_checkpoints_without_fid(self, trainer: L.Trainer) -> None:
        every_n_epochs = self.every_n_epochs
        for checkpoint in trainer.checkpoint_callbacks:
            if not isinstance(checkpoint, ModelCheckpoint) or checkpoint.monitor not in EPOCH_KEYS:
                continue
            every = checkpoint.every_n_epochs or 0
            if every and (not every_n_epochs or every % every_n_epochs):
                where = f"every {every_n_epochs} epochs" if every_n_epochs else "at no epoch end"
                raise ValueError(
                    f"FIDMonitor: ModelCheckpoint(monitor={checkpoint.monitor!r}) checks every {every} "
                    f"epoch(s), but FIDMonitor logs it {where} (every_n_epochs={every_n_epochs}); give "
                    "the checkpoint every_n_epochs equal to FIDMonitor's (or a multiple: "
                    f"--checkpoint.every_n_epochs {every_n_epochs or 1} in the CLI), or FIDMonitor "
                    "every_n_epochs=1"
                )

    def _prepare_real(self, datamodule: Any, pl_module: L.LightningModule) -> None:
        assert self.fid is not None
        start = time.perf_counter()
        try:
            real = resolve_real(
                self.real, datamodule, self.split, self.real_range, self.num_real or self.REAL_CAP,
                self.batch_size, lambda: self._image_size(pl_module), self.crop_size,
            )  # fmt: skip
            if not isinstance(real, Path) and (self.num_real or 0) > real.count:
                log.warning(
                    "FIDMonitor: num_real=%d but %s has %d images", self.num_real, real.name, real.count
                )
            stats = self.fid.set_real(real, self.cache_dir)
        except (ValueError, TypeError, FileNotFoundError) as error:
            raise type(error)(f"FIDMonitor: {error}") from error
        assert stats is not None
        self.cache_path, self.cache_hit = stats.path, stats.cached
        if self.kid and stats.features is None:
            log.warning("FIDMonitor: no KID: %s holds no per-image features (only mu/sigma)", real)
        log.info(
            "FIDMonitor: real statistics (cache %s, %.1f s): %s",
            "hit" if self.cache_hit else "miss", time.perf_counter() - start, self.cache_path,
        )  # fmt: skip

    def _image_size(self, pl_module: L.LightningModule) -> int:
        size = self.image_size or getattr(pl_module, "hparams", {}).get("image_size")
        if not size:
            raise ValueError("image files as `real` need `image_size` (the generated images' side)")
        return int(size)

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        """Compute the FID now (on every rank), append it to :attr:`history` and return that entry."""
        if self.fid is None or self.latents is None:
            raise RuntimeError("FIDMonitor.evaluate: call setup(trainer, pl_module, 'fit') first")
        device = pl_module.device
        self.fid.to(device)
        generator = self.generator or (lambda z: cast(Any, pl_module).sample(z=z))
        with random_streams_kept():  # a user's generator may draw from them
            scores = self.fid(
                generated(lambda z: generator(z.to(device)), self.latents, self.batch_size, self.fake_range)
            )
        seen = getattr(pl_module, "images_seen", None)
        kimg = None if seen is None else float(seen) / 1000.0
        entry = {"epoch": trainer.current_epoch, "step": trainer.global_step, "kimg": kimg, **scores}
        self.history.append(entry)
        log.info(
            "FIDMonitor: FID %.4f, KID %s at step %d (%.1f s)",
            entry["fid"], entry["kid"], entry["step"], entry["seconds"],
        )  # fmt: skip
        return entry

    @property
    def last_fid(self) -> float | None:
        return self.history[-1]["fid"] if self.history else None

    def _evaluated_at(self, step: int) -> dict[str, Any] | None:
        return self.history[-1] if self.history and self.history[-1]["step"] == step else None

    @staticmethod
    def _log(trainer: L.Trainer, entry: dict[str, Any]) -> None:
        """The one way every evaluation is logged: ``pl_module.log`` is refused in ``on_train_end`` and
        writes batch-end values to the loggers only every ``log_every_n_steps``."""
        names = {**EPOCH_KEYS, "train/kimg": "kimg"}  # logged name: the entry's key (None: not logged)
        metrics = {name: entry[key] for name, key in names.items() if entry.get(key) is not None}
        trainer.callback_metrics.update({key: torch.tensor(value) for key, value in metrics.items()})
        trainer.progress_bar_metrics["val/fid"] = entry["fid"]
        for logger in trainer.loggers:  # global rank 0's write
            logger.log_metrics({**metrics, "epoch": entry["epoch"]}, step=last_batch_step(trainer))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.schedule is not None:
            self.schedule.start(images_seen(pl_module))

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.schedule is not None and self.schedule.due(images_seen(pl_module)):
            self._log(trainer, self.evaluate(trainer, pl_module))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            entry = self._evaluated_at(trainer.global_step) or self.evaluate(trainer, pl_module)
            self._log(trainer, entry)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.at_fit_end and self._evaluated_at(trainer.global_step) is None:
            self._log(trainer, self.evaluate(trainer, pl_module))

    @property
    def state_key(self) -> str:
        return self._generate_state_key(split=self.split, num_fake=self.num_fake, seed=self.seed)

    def state_dict(self) -> dict[str, Any]:
        """Only the history: the Inception network and the metric states never enter checkpoints."""
        return {"history": [dict(entry) for entry in self.history]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [dict(entry) for entry in state_dict.get("history", [])]
