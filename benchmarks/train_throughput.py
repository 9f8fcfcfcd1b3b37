"""Training images/s of FaceGAN under a real Trainer against a minimal plain-PyTorch loop.

    python benchmarks/train_throughput.py                      # dcgan 64 px (paper widths, batch 64)
    python benchmarks/train_throughput.py --arch keras --image-size 128 --batch-size 32

Same process, same networks (same initial weights), same losses, same batches (one in-memory
DataLoader serves both), alternating repeats; prints each path's median images/s and the ratio
(target >= 0.95). The plain loop is written the efficient way a careful user would: D frozen while
G's loss is back-propagated, ``zero_grad(set_to_none=True)``. The Trainer runs FaceGAN's real
``training_step`` (logging included) with no progress bar, logger or checkpoints.
"""

from __future__ import annotations

import argparse
import statistics
import time

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from facegan import FaceGAN
from facegan.training.objective import get_losses


class BatchClock(L.Callback):
    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.ends.append(time.perf_counter())


def make_model(args: argparse.Namespace) -> FaceGAN:
    torch.manual_seed(0)
    widths = {} if args.arch == "keras" else {"g_channels": args.channels, "d_channels": args.channels}
    return FaceGAN(arch=args.arch, image_size=args.image_size, **widths)


def lightning_rate(args: argparse.Namespace, loader: DataLoader) -> float:
    model, clock = make_model(args), BatchClock()
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, limit_train_batches=args.warmup + args.batches, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[clock], limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(model, loader)
    timed = clock.ends[args.warmup - 1 :]  # from the end of the last warm-up batch
    return args.batch_size * (len(timed) - 1) / (timed[-1] - timed[0])


def plain_rate(args: argparse.Namespace, loader: DataLoader) -> float:
    model = make_model(args)
    g, d = model.generator, model.discriminator
    d_loss_fn, g_loss_fn = get_losses("nonsaturating")
    hp = model.hparams
    opt_g = torch.optim.Adam(g.parameters(), lr=hp.g_lr, betas=hp.g_betas, eps=hp.adam_eps)
    opt_d = torch.optim.Adam(d.parameters(), lr=hp.d_lr, betas=hp.d_betas, eps=hp.adam_eps)
    ends = []
    for i, real in enumerate(loader):
        if i == args.warmup + args.batches:
            break
        z = torch.randn(real.shape[0], hp.latent_dim)
        fake = g(z)
        d_loss = d_loss_fn(d(real), d(fake.detach()), 0.0)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        d.requires_grad_(False)
        g_loss = g_loss_fn(d(fake))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        d.requires_grad_(True)
        ends.append(time.perf_counter())
    timed = ends[args.warmup - 1 :]
    return args.batch_size * (len(timed) - 1) / (timed[-1] - timed[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="dcgan", choices=["dcgan", "keras", "resnet"])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--channels", type=int, default=64, help="dcgan/resnet widths (paper: 64)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batches", type=int, default=8, help="timed batches per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n = (args.warmup + args.batches) * args.batch_size
    images = torch.rand(n, 3, args.image_size, args.image_size) * 2 - 1
    loader = DataLoader(
        TensorDataset(images), batch_size=args.batch_size, collate_fn=lambda b: torch.stack([x[0] for x in b])
    )
    rates: dict[str, list[float]] = {"plain": [], "lightning": []}
    for _ in range(args.repeats):  # alternate, so drifts in machine speed hit both alike
        rates["plain"].append(plain_rate(args, loader))
        rates["lightning"].append(lightning_rate(args, loader))
    plain, lightning = statistics.median(rates["plain"]), statistics.median(rates["lightning"])
    print(f"{args.arch} {args.image_size} px, batch {args.batch_size}, {torch.get_num_threads()} threads")
    print(f"plain PyTorch loop: {plain:.1f} images/s (runs: {', '.join(f'{r:.1f}' for r in rates['plain'])})")
    print(
        f"FaceGAN + Trainer:  {lightning:.1f} images/s (runs: {', '.join(f'{r:.1f}' for r in rates['lightning'])})"
    )
    print(f"ratio: {lightning / plain:.3f}")


if __name__ == "__main__":
    main()
