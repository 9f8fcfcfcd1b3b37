"""A 2-process (or 1-process) CPU training run for the DDP tests: ``python tests/ddp_steps.py MODE OUT``.

Lightning's ``ddp`` strategy starts the second process by running this script again. Every process
saves ``OUT/rank<r>.pt`` (its parameters, counters and, if the run failed, the error) at the end.

Modes:
    average   SGD, a D without BatchNorm (spectral norm), a G that draws one learned image whatever
              ``z`` is (so the fakes do not depend on the processes' latents), R1 at every step; one
              step on 4 images split over 2 processes (``--devices 2``) or all 4 in one (``--devices 1``).
    skip      the full recipe (EMA, lazy R1, ADA, 2 D steps per G step); process 1's images are all
              unreadable (its batches are empty), process 0's are fine; 2 epochs.
    none      every image is unreadable on both processes.
    diverge   process 1 alone sees a non-finite loss; the DivergenceMonitor must stop both.
    cache     ``FaceDataModule(OUT/images, cache=True)``: the cache is built once (``prepare_data``).
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from facegan import FaceDataModule, FaceGAN
from facegan.callbacks import DivergenceMonitor
from facegan.data.decode import collate_images

SIZE = 32


class Faces(Dataset):
    """``n`` fixed random images in [-1, 1]; the indices in ``unreadable`` are skipped files (None)."""

    def __init__(self, n: int, unreadable: set[int]) -> None:
        self.images = torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1)) * 2 - 1
        self.unreadable = unreadable

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Tensor | None:
        return None if index in self.unreadable else self.images[index]


class OneImage(nn.Module):
    """A generator whose output does not depend on ``z``: one learned image per latent."""

    def __init__(self) -> None:
        super().__init__()
        self.image = nn.Parameter(torch.randn(3, SIZE, SIZE, generator=torch.Generator().manual_seed(2)))

    def forward(self, z: Tensor) -> Tensor:
        return torch.tanh(self.image).expand(z.shape[0], -1, -1, -1)


class SGDGAN(FaceGAN):
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [
            torch.optim.SGD(self.generator.parameters(), lr=0.5),
            torch.optim.SGD(self.discriminator.parameters(), lr=0.5),
        ]


class Record(L.Callback):
    """Every process writes what it ended with (or the error it stopped with)."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def _save(self, trainer: L.Trainer, pl_module: L.LightningModule, error: str | None) -> None:
        state: dict[str, Any] = {
            "params": {name: p.detach().clone() for name, p in pl_module.named_parameters()},
            "images_seen": int(pl_module.images_seen),  # type: ignore[arg-type]
            "d_updates": pl_module.d_updates,  # type: ignore[attr-defined]
            "ada": pl_module.objective.ada.state_dict(),  # type: ignore[attr-defined]
            "error": error,
            "draw": torch.randn(4),  # the next latents-like draw of this process's stream
        }
        torch.save(state, self.out / f"rank{trainer.global_rank}.pt")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer, pl_module, None)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._save(trainer, pl_module, f"{type(exception).__name__}: {exception}")


class PoisonRankOne(L.Callback):
    """Process 1 alone reads a NaN ``train/d_loss`` at its third batch (before the monitor looks)."""

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.global_rank == 1 and trainer.global_step >= 6:
            pl_module.log("train/d_loss", math.nan)


def main(mode: str, out: Path, devices: int) -> None:
    L.seed_everything(0)
    common: dict[str, Any] = {"image_size": SIZE, "latent_dim": 8, "g_channels": 4, "d_channels": 4}
    callbacks: list[L.Callback] = [Record(out)]
    if mode == "average":
        gan: FaceGAN = SGDGAN(**common, spectral_norm=True, r1_gamma=1.0, r1_every=1)
        gan.generator = OneImage()
        data, batch, epochs = Faces(4, set()), 4 // devices, 1
    else:
        gan = FaceGAN(**common, ema_kimg=0.01, r1_gamma=0.1, r1_every=2, n_disc_steps=2,
                      augment="translation", ada_target=0.6, ada_kimg=0.1)  # fmt: skip
        unreadable = {1, 3, 5, 7} if mode == "skip" else set(range(8)) if mode == "none" else set()
        data, batch, epochs = Faces(8, unreadable), 2, 2
        if mode == "diverge":
            callbacks = [PoisonRankOne(), DivergenceMonitor(check_every=1), *callbacks]
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
    if mode == "cache":
        logging.basicConfig(level=logging.INFO)  # the build logs "FaceDataModule: cached N images"
        images = FaceDataModule(out / "images", image_size=SIZE, batch_size=2, num_workers=0, cache=True,
                                cache_dir=str(out / "cache"))  # fmt: skip
        trainer.fit(gan, images)
        return
    # No shuffling: DistributedSampler gives process r the indices r, r + 2, r + 4, ...
    loader = DataLoader(data, batch_size=batch, shuffle=False, collate_fn=collate_images)
    trainer.fit(gan, loader)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 2)
