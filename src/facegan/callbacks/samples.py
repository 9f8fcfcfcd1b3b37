"""``SampleGridMonitor``: a fixed-latent image grid every N epochs (or kimg, with an early first one), as PNG
and in every image logger."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

from facegan.callbacks.kimg import KimgSchedule, images_seen
from facegan.images import grid_image
from facegan.io.runs import last_batch_step, run_dir
from facegan.training.distributed import gather_rows, random_streams_kept, share

log = logging.getLogger(__name__)


def kimg_label(images: int) -> str:
    """Images seen as exact thousands (``120`` -> ``"0.12"``, ``1000`` -> ``"1.0"``), for file names and
    captions: unlike a rounded ``0.1``, grids at 120 and 140 images get two names."""
    whole, rest = divmod(int(images), 1000)
    return f"{whole}.{f'{rest:03d}'.rstrip('0') or '0'}"


class SampleGridMonitor(L.Callback):
    """Save a grid of ``pl_module.sample(z=pl_module.sample_z)`` images every ``every_n_epochs`` and,
    if set, every ``every_n_kimg`` thousand images (and once at ``first_kimg``), to
    ``<run folder>/samples/epoch=EEEE-kimg=K.png`` and to ``WandbLogger`` (captioned) and
    ``TensorBoardLogger``. Under DDP the processes share the sampling; global rank 0 writes and logs.

    Args:
        every_n_epochs: epochs between grids (a grid is also written after the last epoch); 0: none
            at epoch ends.
        every_n_kimg: also a grid every this many thousand images (as papers schedule snapshots).
        first_kimg: also a grid at this many thousand images, before the first ``every_n_kimg``
            point: a first picture within seconds of a fit's start; needs ``every_n_kimg``.
        num_images: images in the grid, at most the module's ``num_samples`` fixed latents.
        nrow: images per grid row; ``None`` -> a square-ish grid.
        key: name of the image in the loggers.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        num_images: int = 64,
        nrow: int | None = None,
        key: str = "samples",
        every_n_kimg: float | None = None,
        first_kimg: float | None = None,
    ):
        super().__init__()
        if every_n_epochs < 0:
            raise ValueError(f"SampleGridMonitor: `every_n_epochs` must be >= 0, but got {every_n_epochs}")
        if every_n_kimg is not None and every_n_kimg <= 0:
            raise ValueError(f"SampleGridMonitor: `every_n_kimg` must be > 0 or null, but got {every_n_kimg}")
        if first_kimg is not None and first_kimg <= 0:
            raise ValueError(f"SampleGridMonitor: `first_kimg` must be > 0 or null, but got {first_kimg}")
        if first_kimg is not None and every_n_kimg is None:
            raise ValueError(
                f"SampleGridMonitor: `first_kimg` ({first_kimg}) is the first point of the `every_n_kimg` "
                "schedule, which is null; set `every_n_kimg` too, or `first_kimg` to null"
            )
        if num_images < 1:
            raise ValueError(f"SampleGridMonitor: `num_images` must be >= 1, but got {num_images}")
        self.every_n_epochs = every_n_epochs
        self.schedule = None if every_n_kimg is None else KimgSchedule(every_n_kimg, first_kimg=first_kimg)
        self.num_images = num_images
        self.nrow = nrow or max(1, int(num_images**0.5))
        self.key = key
        self.last_path: Path | None = None
        self.kimg_grid_at = -1  # global_step of the last every_n_kimg grid

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not callable(getattr(pl_module, "sample", None)) or not hasattr(pl_module, "sample_z"):
            raise TypeError(
                "SampleGridMonitor: the LightningModule needs `sample(z=...)` and a `sample_z` buffer"
            )
        available = cast(Any, pl_module).sample_z.shape[0]
        if self.num_images > available:
            raise ValueError(
                f"SampleGridMonitor: `num_images` ({self.num_images}) exceeds the module's fixed latents "
                f"({available}); raise --model.num_samples or lower num_images"
            )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.schedule is not None:
            self.schedule.start(images_seen(pl_module, "SampleGridMonitor(every_n_kimg=...)"))

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.schedule is not None and self.schedule.due(images_seen(pl_module)):
            self.write_grid(trainer, pl_module)
            self.kimg_grid_at = trainer.global_step

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        last = trainer.current_epoch + 1 >= (trainer.max_epochs or -1) > 0 or trainer.should_stop
        every = self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0
        if (every or last) and self.kimg_grid_at != trainer.global_step:  # not twice for one batch
            self.write_grid(trainer, pl_module)

    @torch.no_grad()
    def write_grid(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Path | None:
        """Sample (under DDP each process its share), save and log one grid at the latest batch's step;
        its path on rank 0 (else ``None``)."""
        module = cast(Any, pl_module)  # any LightningModule with sample(z=...), sample_z and images_seen
        with random_streams_kept():  # a module's sample() may draw; the training's streams stay as they were
            images = gather_rows(module.sample(z=share(module.sample_z[: self.num_images])))
        if not trainer.is_global_zero:
            return None
        # One uint8 picture for the PNG and every logger: W&B casts float images to uint8 without
        # scaling (wandb >= 0.31: a [0, 1] grid logs black), so loggers get bytes, never floats.
        grid = grid_image(images, nrow=self.nrow)
        pixels = np.asarray(grid)  # (H, W, 3) uint8
        epoch, kimg = trainer.current_epoch, kimg_label(int(module.images_seen))
        folder = run_dir(trainer) / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"epoch={epoch:04d}-kimg={kimg}.png"
        grid.save(path)
        caption = f"epoch {epoch}, {kimg} kimg"
        step = last_batch_step(trainer)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key=self.key, images=[pixels], caption=[caption], step=step)
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(self.key, pixels, step, dataformats="HWC")
        log.info("SampleGridMonitor: wrote %s", path)
        self.last_path = path
        return path
