"""``FIDMonitor``: FID of a generator against real images from any source, their statistics cached."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import lightning as L
import torch
from torchmetrics.image.fid import FrechetInceptionDistance

from facegan.callbacks.fid_schedule import (
    NO_REAL,
    check_arguments,
    entry_metrics,
    refuse_checkpoints_without_fid,
)
from facegan.callbacks.kimg import KimgSchedule
from facegan.io.paths import cache_dir
from facegan.io.runs import logger_step
from facegan.metrics.fid import generated_fid, set_real_states
from facegan.metrics.inception import build_fid_metric
from facegan.metrics.kid import SUBSET_SIZE, SUBSETS, kid
from facegan.metrics.real_images import ValueRange, check_value_range, fake_uint8, resolve_real
from facegan.metrics.real_stats import real_statistics
from facegan.training.distributed import gather_rows, random_streams_kept

log = logging.getLogger(__name__)


class FIDMonitor(L.Callback):
    """FID and KID of generated images, logged as ``val/fid``, ``val/kid``, ``val/kid_std``, ``val/fid_seconds``.

    Wraps torchmetrics ``FrechetInceptionDistance(feature=2048, antialias=False)`` (TensorFlow-compatible
    resize, network in float32, statistics in float64) fed with uint8 images. Generated images come
    from ``pl_module.sample(z=...)`` (or a given ``generator``) on fixed latents. Real images come from
    ``real``: by default the trainer's data module (facegan's, or any other through its
    ``<split>_dataloader()``), or a data module, ``DataLoader``, folder / zip of images or statistics
    file given here. Their statistics are computed once and cached on disk under a key of the data
    (facegan's fingerprint of the files, else a hash of the pixels used), the count and the feature
    extractor, so later evaluations, runs and resumes only pay for the generated half.

    Example (any Lightning project)::

        fid = FIDMonitor(real=my_datamodule, real_range=(0, 1), num_fake=2000)
        trainer = L.Trainer(callbacks=[fid, ModelCheckpoint(monitor="val/fid", mode="min")])

    Epoch results are logged with ``pl_module.log`` in ``on_train_epoch_end``, so
    ``ModelCheckpoint(monitor="val/fid", mode="min")`` sees them when it saves at train epoch end (its
    default with no validation or one validation per epoch; else give it ``save_on_train_epoch_end=True``).
    With ``every_n_epochs=N``, such a checkpoint needs ``every_n_epochs`` N (or a multiple): one that
    would check on epochs without FID is refused at setup, before training (Lightning would raise at
    the first such epoch).
    ``every_n_kimg`` and fit-end results go to ``trainer.loggers``. Under DDP each rank generates its
    share of the latents, every rank calls ``compute()`` (it all-reduces), KID is rank 0's, broadcast.

    Args:
        num_fake: generated images per evaluation. 10,000 is the usual figure on a GPU; the default
            suits CPUs, where Inception runs at about 4.5 images/s on 2 cores.
        num_real: real images (evenly spaced over the split) behind the statistics; ``None`` -> the
            whole split, at most :attr:`REAL_CAP` (10,000). Paid once, then read from the cache.
        every_n_epochs: evaluate after every N-th training epoch; 0 disables epoch evaluations.
        every_n_kimg: also evaluate whenever ``pl_module.images_seen`` passes a multiple of this many
            thousand images; ``None`` disables it.
        at_fit_end: evaluate when training ends, unless already done at that step.
        split: data module split of the real images (``"train"``, ``"val"`` or ``"test"``).
        real: the real images. ``None``: the trainer's data module. A data module (facegan's or any:
            its ``<split>_dataloader()``, read in order: ``num_real`` evenly spaced images, shuffling undone),
            a ``DataLoader`` or any iterable of batches (tensors or ``(images, ...)`` tuples), a folder,
            zip or CelebA folder of image files (cropped to a square, resized to ``image_size``), or a
            statistics file: ``.npz`` with ``mu``/``sigma`` (pytorch-fid's format) or a cache ``.pt``.
        real_range: value range of a loader's images: ``[low, high]`` for floats (``[-1, 1]``,
            ``[0, 1]``) or ``"uint8"``; every batch is checked against it. facegan's data module and
            image files need none.
        generator: a callable ``z -> images`` to measure instead of ``pl_module.sample(z=z)``.
        latent_dim: size of the latents; ``None`` -> ``pl_module.hparams.latent_dim``.
        fake_range: value range of the generated images (``[-1, 1]`` is facegan's); clamped to it.
        image_size: side that image files are resized to; ``None`` -> ``pl_module.hparams.image_size``.
        crop_size: central square cropped from image files first; ``None``: the shorter side.
        kid: also compute KID (unbiased, unlike FID at a few thousand images) from the same features;
            the real images' features are cached with their statistics (8 KB per image).
        kid_subsets: KID's random subsets; ``kid_subset_size``: images per subset, capped at the
            counts (torch-fidelity's 100 x 1000; with fewer images every subset is the whole set).
        batch_size: images per generator / Inception batch.
        seed: seed of the fixed latents, identical across evaluations, runs and resumes.
        weights_path: the Inception weights file ``weights-inception-2015-12-05-6726825d.pth``;
            ``None`` -> ``$FACEGAN_FID_WEIGHTS``, then ``$TORCH_HOME/hub/checkpoints/`` (where
            torchmetrics downloads it when online).
        cache_dir: folder of the real-statistics cache; ``None`` -> ``$FACEGAN_CACHE/fid``, else
            ``~/.cache/facegan/fid``.
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
        check_arguments(locals())
        self.num_fake, self.num_real, self.split, self.batch_size = num_fake, num_real, split, batch_size
        self.every_n_epochs, self.every_n_kimg, self.at_fit_end = every_n_epochs, every_n_kimg, at_fit_end
        self.seed, self.weights_path, self.cache_dir = seed, weights_path, cache_dir
        self.real, self.generator, self.latent_dim = real, generator, latent_dim
        self.image_size, self.crop_size = image_size, crop_size
        self.kid, self.kid_subsets, self.kid_subset_size = kid, kid_subsets, kid_subset_size
        self._real_features: torch.Tensor | None = None  # (num_real, 2048) for KID, global rank 0
        try:
            self.real_range: ValueRange = check_value_range(real_range, "real_range")
            self.fake_range: ValueRange = check_value_range(fake_range, "fake_range")
        except ValueError as error:
            raise ValueError(f"FIDMonitor: {error}") from None
        self.metric: FrechetInceptionDistance | None = None  # never a child of the LightningModule
        # per evaluation: epoch, step, kimg, fid, seconds, num_fake, num_real (images behind the FID)
        self.history: list[dict[str, Any]] = []
        self.last_fid: float | None = None
        self.cache_path: Path | None = None  # real-statistics file (global rank 0)
        self.cache_hit: bool | None = None  # whether setup found it there
        self.extractor: dict[str, Any] = {}  # what computed the features (part of the cache key)
        self._num_real: int | None = None  # real images behind the statistics (global rank 0)
        self.latents: torch.Tensor | None = None  # (num_fake, latent_dim), on the CPU, set in setup
        self.schedule = KimgSchedule(every_n_kimg) if every_n_kimg else None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        with random_streams_kept():  # the Inception net's initialisation and real loaders draw from them
            self._setup(trainer, pl_module)

    def _setup(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        refuse_checkpoints_without_fid(trainer, self.every_n_epochs)
        if self.real is None and getattr(trainer, "datamodule", None) is None:
            raise TypeError(NO_REAL)
        hparams = getattr(pl_module, "hparams", {})
        latent_dim = self.latent_dim or hparams.get("latent_dim")
        if (self.generator is None and not hasattr(pl_module, "sample")) or not latent_dim:
            raise TypeError(
                "FIDMonitor: the LightningModule needs `sample(z=...)` and `hparams.latent_dim`; or give "
                "FIDMonitor(generator=<z -> images>, latent_dim=...)"
            )
        if self.every_n_kimg and not hasattr(pl_module, "images_seen"):
            raise TypeError(
                "FIDMonitor: `every_n_kimg` needs an `images_seen` counter on the LightningModule"
            )
        if self.num_fake < trainer.world_size:
            raise ValueError(f"FIDMonitor: `num_fake` must be >= the {trainer.world_size} processes")
        if self.metric is None:
            self.metric, self.extractor = build_fid_metric(self.weights_path)
        self.metric.to(trainer.strategy.root_device)  # where the module goes (it is still on the CPU)
        seeded = torch.Generator().manual_seed(self.seed)
        self.latents = torch.randn(self.num_fake, int(latent_dim), generator=seeded)
        if trainer.is_global_zero:
            self._prepare_real(getattr(trainer, "datamodule", None), pl_module)
        else:  # real statistics live on rank 0 only: compute() sums every rank's states
            set_real_states(self.metric, None)
        trainer.strategy.barrier("FIDMonitor.setup")

    def _prepare_real(self, datamodule: Any, pl_module: L.LightningModule) -> None:
        """Put the real statistics into the metric: from a statistics file, the cache, or computed."""
        assert self.metric is not None
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
            stats = real_statistics(
                self.metric, real, self.extractor, cache_dir("fid", self.cache_dir), features=self.kid
            )
            self.cache_path, self.cache_hit, self._real_features = stats.path, stats.cached, stats.features
            self._num_real = stats.count  # None for a pytorch-fid .npz, which does not record it
            if self.kid and self._real_features is None:
                log.warning("FIDMonitor: no KID: %s holds no per-image features (only mu/sigma)", real)
        except (ValueError, TypeError, FileNotFoundError) as error:
            raise type(error)(f"FIDMonitor: {error}") from error
        set_real_states(self.metric, stats.states)
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
        """Compute the FID now (call it on every rank), append it to :attr:`history` and return that.

        The training's random streams are left as they were (a user's ``generator`` may draw).
        """
        if self.metric is None or self.latents is None:
            raise RuntimeError("FIDMonitor.evaluate: call setup(trainer, pl_module, 'fit') first")
        with random_streams_kept():
            return self._evaluate(trainer, pl_module)

    def _evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        start = time.perf_counter()
        self.metric.to(pl_module.device)
        latents = torch.tensor_split(self.latents, trainer.world_size)[trainer.global_rank]  # this rank's
        generator = self.generator or (lambda z: cast(Any, pl_module).sample(z=z))
        device = pl_module.device

        def sample(z: torch.Tensor) -> torch.Tensor:
            return fake_uint8(generator(z.to(device)), self.fake_range)

        features: list[torch.Tensor] | None = [] if self.kid else None
        fid = generated_fid(self.metric, sample, latents, self.batch_size, features)
        kid_mean = kid_std = None
        if features is not None:  # collectives on every rank; the real features live on rank 0
            fake, real = gather_rows(trainer, features[0].to(pl_module.device)).cpu(), self._real_features
            score = (
                None if real is None else kid(real, fake, self.kid_subsets, self.kid_subset_size, self.seed)
            )
            kid_mean, kid_std = score[:2] if score else (None, None)
            if trainer.world_size > 1:
                kid_mean, kid_std = trainer.strategy.broadcast((kid_mean, kid_std))  # rank 0's
        seen = getattr(pl_module, "images_seen", None)
        entry = {
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "kimg": None if seen is None else float(seen) / 1000.0,
            "fid": fid,
            "kid": kid_mean,
            "kid_std": kid_std,
            "seconds": time.perf_counter() - start,
            "num_fake": self.num_fake,
            "num_real": self._num_real,
        }
        self.history.append(entry)
        self.last_fid = fid
        log.info(
            "FIDMonitor: FID %.4f, KID %s at step %d (%.1f s)", fid, kid_mean, entry["step"], entry["seconds"]
        )
        return entry

    def _evaluated_at(self, step: int) -> dict[str, Any] | None:
        return self.history[-1] if self.history and self.history[-1]["step"] == step else None

    @staticmethod
    def _to_loggers(trainer: L.Trainer, entry: dict[str, Any]) -> None:
        step = logger_step(trainer)
        for logger in trainer.loggers:
            logger.log_metrics(entry_metrics(entry), step=step)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.schedule is not None:
            self.schedule.start(int(cast(Any, pl_module).images_seen))

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.schedule is not None and self.schedule.due(int(cast(Any, pl_module).images_seen)):
            self._to_loggers(trainer, self.evaluate(trainer, pl_module))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            entry = self._evaluated_at(trainer.global_step) or self.evaluate(trainer, pl_module)
            for key, value in entry_metrics(entry).items():
                # Every rank holds the same FID/KID (compute() all-reduces, KID is broadcast): "max"
                # keeps them exact (a mean of equal floats need not be), and gives the slowest rank's
                # seconds; synced, Lightning has no warning to print on each rank for each key.
                pl_module.log(key, value, prog_bar=key == "val/fid", sync_dist=True, reduce_fx="max")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.at_fit_end and self._evaluated_at(trainer.global_step) is None:
            self._to_loggers(trainer, self.evaluate(trainer, pl_module))

    @property
    def state_key(self) -> str:
        return self._generate_state_key(split=self.split, num_fake=self.num_fake, seed=self.seed)

    def state_dict(self) -> dict[str, Any]:
        """Only the history: the Inception network and the metric states never enter checkpoints."""
        return {"history": [dict(entry) for entry in self.history]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [dict(entry) for entry in state_dict.get("history", [])]
        self.last_fid = self.history[-1]["fid"] if self.history else None
