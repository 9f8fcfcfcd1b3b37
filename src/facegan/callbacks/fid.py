"""``FIDMonitor``: FID of ``pl_module.sample()`` against real-image statistics cached on disk."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, cast

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torchmetrics.image.fid import FrechetInceptionDistance

from facegan.images import batch_images
from facegan.io.paths import cache_dir
from facegan.io.runs import drawn_per_rank, logger_step
from facegan.metrics.fid import REAL_STATES, add_real_images, generated_fid, real_states, set_real_states
from facegan.metrics.inception import build_fid_metric
from facegan.metrics.real_stats import load_stats, save_stats, stats_file, stats_key

log = logging.getLogger(__name__)

EPOCH_KEYS = ("val/fid", "val/fid_seconds")  # what an epoch evaluation logs through the module


class FIDMonitor(L.Callback):
    """Fréchet Inception Distance of generated images, logged as ``val/fid`` and ``val/fid_seconds``.

    Wraps torchmetrics ``FrechetInceptionDistance(feature=2048, antialias=False)`` (TensorFlow-compatible
    resize, network in float32, statistics in float64) fed with :func:`facegan.images.to_uint8` images.
    Generated images come from ``pl_module.sample(z=...)`` on fixed latents. Real statistics come from
    ``trainer.datamodule.real_dataset(split)`` once, cached on disk under a key of
    ``datamodule.fingerprint(split)``, the image count and the feature extractor, so later evaluations,
    runs and resumes only pay for the generated half.

    Epoch results are logged with ``pl_module.log`` in ``on_train_epoch_end``, so
    ``ModelCheckpoint(monitor="val/fid", mode="min")`` sees them when it saves at train epoch end (its
    default with no validation or one validation per epoch; else give it ``save_on_train_epoch_end=True``).
    With ``every_n_epochs=N``, such a checkpoint needs ``every_n_epochs`` N (or a multiple): one that
    would check on epochs without FID is refused at setup, before training (Lightning would raise at
    the first such epoch).
    ``every_n_kimg`` and fit-end results go to ``trainer.loggers``. Under DDP each rank generates its
    share of the latents and every rank calls ``compute()``, which all-reduces the statistics.

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
    ) -> None:
        super().__init__()
        for ok, name, allowed, value in (
            (num_fake >= 2, "num_fake", "an integer >= 2", num_fake),
            (num_real is None or num_real >= 2, "num_real", "null or an integer >= 2", num_real),
            (every_n_epochs >= 0, "every_n_epochs", "an integer >= 0 (0 disables)", every_n_epochs),
            (every_n_kimg is None or every_n_kimg > 0, "every_n_kimg", "null or > 0", every_n_kimg),
            (batch_size >= 1, "batch_size", "an integer >= 1", batch_size),
            (isinstance(split, str) and split != "", "split", "'train', 'val' or 'test'", split),
        ):
            if not ok:
                raise ValueError(f"FIDMonitor: `{name}` must be {allowed}, but got {value!r}")
        self.num_fake, self.num_real, self.split, self.batch_size = num_fake, num_real, split, batch_size
        self.every_n_epochs, self.every_n_kimg, self.at_fit_end = every_n_epochs, every_n_kimg, at_fit_end
        self.seed, self.weights_path, self.cache_dir = seed, weights_path, cache_dir
        self.metric: FrechetInceptionDistance | None = None  # never a child of the LightningModule
        self.history: list[dict[str, Any]] = []  # per evaluation: epoch, step, kimg, fid, seconds
        self.last_fid: float | None = None
        self.cache_path: Path | None = None  # real-statistics file (global rank 0)
        self.cache_hit: bool | None = None  # whether setup found it there
        self.extractor: dict[str, Any] = {}  # what computed the features (part of the cache key)
        self._real_digest: str | None = None
        self.latents: torch.Tensor | None = None  # (num_fake, latent_dim), on the CPU, set in setup
        self._next_images = 0  # images_seen that triggers the next every_n_kimg evaluation
        self._seen = 0  # images_seen, followed on the host during a fit

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._check_checkpoints(trainer)
        datamodule = getattr(trainer, "datamodule", None)
        if not (hasattr(datamodule, "real_dataset") and hasattr(datamodule, "fingerprint")):
            raise TypeError(
                "FIDMonitor: the data module must provide `real_dataset(split)` (un-flipped (3, S, S) images "
                "in [-1, 1]) and `fingerprint(split)` (a JSON-able cache key), as FaceDataModule does; got "
                f"{type(datamodule).__name__}"
            )
        hparams = getattr(pl_module, "hparams", {})
        if not hasattr(pl_module, "sample") or "latent_dim" not in hparams:
            raise TypeError("FIDMonitor: the LightningModule needs `sample(z=...)` and `hparams.latent_dim`")
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
        self.latents = torch.randn(self.num_fake, hparams["latent_dim"], generator=seeded)
        if trainer.is_global_zero:
            self._prepare_real(datamodule)
        else:  # real statistics live on rank 0 only: compute() sums every rank's states
            set_real_states(self.metric, None)
        trainer.strategy.barrier("FIDMonitor.setup")

    def _check_checkpoints(self, trainer: L.Trainer) -> None:
        """Refuse, before training, a ``ModelCheckpoint(monitor="val/fid")`` that checks on epochs
        without FID (Lightning raises there, mid-run); its ``every_n_epochs`` must be a multiple of ours."""
        for checkpoint in trainer.checkpoint_callbacks:
            if not isinstance(checkpoint, ModelCheckpoint) or checkpoint.monitor not in EPOCH_KEYS:
                continue
            every = checkpoint.every_n_epochs or 0
            if every and (not self.every_n_epochs or every % self.every_n_epochs):
                where = f"every {self.every_n_epochs} epochs" if self.every_n_epochs else "at no epoch end"
                raise ValueError(
                    f"FIDMonitor: ModelCheckpoint(monitor={checkpoint.monitor!r}) checks every {every} "
                    f"epoch(s), but FIDMonitor logs it {where} (every_n_epochs={self.every_n_epochs}); give "
                    "the checkpoint every_n_epochs equal to FIDMonitor's (or a multiple: "
                    f"--checkpoint.every_n_epochs {self.every_n_epochs or 1} in the CLI), or FIDMonitor "
                    "every_n_epochs=1"
                )

    def _prepare_real(self, datamodule: Any) -> None:
        """Put the real statistics into the metric: from the cache, or computed and then cached."""
        metric = self.metric
        assert metric is not None
        try:
            dataset = datamodule.real_dataset(self.split)
        except ValueError as error:
            raise ValueError(f"FIDMonitor: `split` {self.split!r} is not usable: {error}") from error
        available = len(dataset)
        n = min(available, self.num_real or self.REAL_CAP)
        if n < 2:
            raise ValueError(f"FIDMonitor: the {self.split!r} split has {available} images; FID needs >= 2")
        if (self.num_real or 0) > available:
            log.warning(
                "FIDMonitor: num_real=%d but split %r has %d images", self.num_real, self.split, available
            )
        blob, digest = stats_key(datamodule.fingerprint(self.split), n, self.extractor)
        if digest == self._real_digest:
            return  # already in the metric (fit() called again)
        self.cache_path = stats_file(cache_dir("fid", self.cache_dir), digest)
        stats = load_stats(self.cache_path, blob)
        self.cache_hit = stats is not None
        if stats is None:
            start = time.perf_counter()
            set_real_states(metric, None)
            add_real_images(metric, dataset, n, self.batch_size)
            stats = {"key": blob, **real_states(metric)}
            log.info("FIDMonitor: real statistics of %d images in %.1f s", n, time.perf_counter() - start)
            save_stats(self.cache_path, stats)
        set_real_states(metric, [stats[name] for name in REAL_STATES])
        self._real_digest = digest
        log.info(
            "FIDMonitor: real statistics cache %s: %s", "hit" if self.cache_hit else "miss", self.cache_path
        )

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        """Compute the FID now (call it on every rank), append it to :attr:`history` and return that."""
        if self.metric is None or self.latents is None:
            raise RuntimeError("FIDMonitor.evaluate: call setup(trainer, pl_module, 'fit') first")
        start = time.perf_counter()
        self.metric.to(pl_module.device)
        latents = torch.tensor_split(self.latents, trainer.world_size)[trainer.global_rank]  # this rank's
        sample = cast(Any, pl_module).sample
        fid = generated_fid(
            self.metric, lambda z: sample(z=z, batch_size=self.batch_size), latents, self.batch_size
        )
        seen = getattr(pl_module, "images_seen", None)
        entry = {
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "kimg": None if seen is None else float(seen) / 1000.0,
            "fid": fid,
            "seconds": time.perf_counter() - start,
        }
        self.history.append(entry)
        self.last_fid = fid
        log.info("FIDMonitor: FID %.4f at step %d (%.1f s)", fid, entry["step"], entry["seconds"])
        return entry

    def _evaluated_at(self, step: int) -> dict[str, Any] | None:
        return self.history[-1] if self.history and self.history[-1]["step"] == step else None

    @staticmethod
    def _to_loggers(trainer: L.Trainer, entry: dict[str, Any]) -> None:
        step = logger_step(trainer)
        metrics = {"val/fid": entry["fid"], "val/fid_seconds": entry["seconds"]}
        if entry.get("kimg") is not None:  # in the same row, so dashboards can plot FID against kimg
            metrics["train/kimg"] = entry["kimg"]
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_n_kimg:
            interval = max(1, round(self.every_n_kimg * 1000))
            self._seen = int(cast(Any, pl_module).images_seen)  # one device sync per fit
            self._next_images = (self._seen // interval + 1) * interval

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self.every_n_kimg:
            return
        # Counted on the host (no sync). In one process: the batch's images, what the module adds to
        # images_seen. Under DDP every rank must take the same decision (compute() is collective), so
        # it counts what the loaders drew, skipped images included, the same on every rank; only a
        # loader that does not say what it drew costs a collective per batch.
        world, images = trainer.world_size, batch_images(batch).shape[0]
        drawn = drawn_per_rank(trainer, batch_idx) if world > 1 else images
        self._seen += (images if drawn is None else drawn) * world
        seen = self._seen
        due = seen >= self._next_images
        if drawn is None:
            due = trainer.strategy.reduce_boolean_decision(due, all=False)
        if due:
            interval = max(1, round(self.every_n_kimg * 1000))
            self._next_images = (seen // interval + 1) * interval
            self._to_loggers(trainer, self.evaluate(trainer, pl_module))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            entry = self._evaluated_at(trainer.global_step) or self.evaluate(trainer, pl_module)
            pl_module.log("val/fid", entry["fid"], prog_bar=True, sync_dist=False)
            pl_module.log("val/fid_seconds", entry["seconds"], sync_dist=False)
            if entry.get("kimg") is not None:  # the images seen, in the row of the FID (plots against kimg)
                pl_module.log("train/kimg", entry["kimg"], sync_dist=False)

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
