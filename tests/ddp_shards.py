"""Training over prepared shards, for ``tests/test_streaming.py``: ``python tests/ddp_shards.py ROOT OUT DEVICES STOP``.

Three fits of ``FaceDataModule(ROOT)`` (2 epochs, batch 4, no flips), one after the other: ``full``;
``stopped``, which saves ``OUT/mid.ckpt`` after batch ``STOP`` of epoch 0 and stops; ``resumed``,
from that checkpoint. Every process writes ``OUT/<fit>-rank<r>.json``: ``[epoch, batch, [digest of
each image]]`` for every batch it trained on (with ``DEVICES`` 2, Lightning's ``ddp`` strategy
starts the second process by running this script again).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import lightning as L

from facegan import FaceDataModule, FaceGAN


def digest(image: Any) -> str:
    return hashlib.sha1(image.cpu().numpy().tobytes()).hexdigest()[:12]


class Record(L.Callback):
    def __init__(self, out: Path, name: str, stop: int | None = None) -> None:
        self.out, self.name, self.stop, self.seen = out, name, stop, []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.seen.append([trainer.current_epoch, batch_idx, [digest(image) for image in batch]])

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.stop is not None and trainer.current_epoch == 0 and batch_idx == self.stop:
            trainer.save_checkpoint(self.out / "mid.ckpt")  # every process takes part; rank 0 writes
            trainer.should_stop = True

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        (self.out / f"{self.name}-rank{trainer.global_rank}.json").write_text(json.dumps(self.seen))


def fit(root: str, out: Path, devices: int, name: str, stop: int | None = None, ckpt: Path | None = None,
        workers: int = 0) -> None:  # fmt: skip
    L.seed_everything(0)
    gan = FaceGAN(image_size=32, latent_dim=8, g_channels=4, d_channels=4)
    data = FaceDataModule(root, image_size=32, batch_size=4, num_workers=workers, flip=False,
                          cache_dir=str(out / "streamed"))  # fmt: skip
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[Record(out, name, stop)],
    )
    trainer.fit(gan, data, ckpt_path=ckpt)


def main(root: str, out: Path, devices: int, stop: int, workers: int = 0) -> None:
    fit(root, out, devices, "full", workers=workers)
    fit(root, out, devices, "stopped", stop=stop, workers=workers)
    fit(root, out, devices, "resumed", ckpt=out / "mid.ckpt", workers=workers)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
