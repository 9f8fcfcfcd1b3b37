"""Training speed of a facegan config: seconds per epoch and images/s, as the CLI runs it.

    python benchmarks/train_speed.py                                   # the default run
    python benchmarks/train_speed.py --config configs/celeba64.yaml --data.root ../shared/data/celeba-sample

Any CLI argument is passed on. Runs one epoch limited to --batches batches (default 40), skips the
first 5 (warm-up) and prints images/s over the rest and the implied seconds per full epoch.
"""

from __future__ import annotations

import sys
import time

import lightning as L

from facegan.cli import main


class Timer(L.Callback):
    def __init__(self, warmup: int = 5) -> None:
        self.warmup, self.times, self.sizes = warmup, [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.times.append(time.perf_counter())
        self.sizes.append(len(batch))


if __name__ == "__main__":
    args = sys.argv[1:]
    batches = 40
    if "--batches" in args:
        i = args.index("--batches")
        batches = int(args[i + 1])
        del args[i : i + 2]
    timer = Timer()
    cli = main(["fit", *args, "--trainer.max_epochs", "0", "--trainer.logger", "false"])
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=batches,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[timer],
        accelerator=cli.trainer.accelerator,
    )
    trainer.fit(cli.model, cli.datamodule)
    seconds = timer.times[-1] - timer.times[timer.warmup]
    images = sum(timer.sizes[timer.warmup + 1 :])
    rate = images / seconds
    epoch_images = len(cli.datamodule.train_dataloader()) * cli.datamodule.batch_size
    print(f"images/s: {rate:.1f}  ({images} images in {seconds:.1f} s after {timer.warmup} warm-up batches)")
    print(f"seconds per epoch: {epoch_images / rate:.0f}  ({epoch_images} images per epoch)")
