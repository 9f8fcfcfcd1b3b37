"""``prepare`` images/s, and training-loader images/s from the shards against the memmap cache.

    python benchmarks/stream_throughput.py                  # ../shared/data/celeba-sample, 64 px
    python benchmarks/stream_throughput.py --root PATH --image-size 128 --prepare-workers 8 --epochs 3

Writes the shards and the cache under ``--work`` (default: a fresh temporary folder, never the
repository). ``prepare`` is timed end to end (source scan, decoding in ``--prepare-workers``
processes, writing, metadata). Each loader delivers what the training step gets on a CPU: uint8
batches scaled to ``[-1, 1]`` and flipped in ``on_after_batch_transfer``; the first epoch is a
warm-up; then the loaders take turns, an epoch each, ``--epochs`` rounds (on a shared machine the
load changes from minute to minute; taking turns exposes every path to the same), and the figures
are each path's median and best epoch, and (loaders without workers, all their work in this process)
images per CPU second, which other processes' load disturbs less.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from facegan import FaceDataModule
from facegan.data.shards import prepare_shards

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"


def epoch_rate(dm: FaceDataModule, loader) -> tuple[float, float]:
    """``(images per wall second, images per CPU second of this process)`` over one epoch."""
    start, cpu, count = time.perf_counter(), time.process_time(), 0
    for batch in loader:
        count += dm.on_after_batch_transfer(batch, 0).shape[0]  # uint8 -> [-1, 1] + flips
    return count / (time.perf_counter() - start), count / max(time.process_time() - cpu, 1e-9)


def warm_loader(dm: FaceDataModule):
    dm.setup("fit")
    dm.trainer = SimpleNamespace(training=True)  # flips on, as in training
    loader = dm.train_dataloader()  # one loader for all epochs, as Lightning keeps it
    epoch_rate(dm, loader)  # warm-up
    return loader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=str(SHARED / "data" / "celeba-sample"))
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--prepare-workers", type=int, default=2)
    parser.add_argument("--loader-workers", type=int, nargs="+", default=[0, 1], help="streaming loader")
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per loader, after a warm-up")
    parser.add_argument("--work", default=None, help="folder for shards and cache (default: temporary)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    # One thread: on a busy 2-core machine two spinning intra-op threads made the in-process paths
    # 10-20x slower (cache: 2,855 vs 49,503 images/s) and the figures swing from epoch to epoch.
    torch.set_num_threads(args.threads)
    work = Path(args.work or tempfile.mkdtemp(prefix="facegan-stream-"))
    start = time.perf_counter()
    meta = prepare_shards(args.root, work / "shards", args.image_size, num_workers=args.prepare_workers)
    seconds = time.perf_counter() - start
    total = sum(info["count"] for info in meta["splits"].values())
    print(f"prepare: {total} images in {seconds:.1f} s = {total / seconds:,.0f} images/s "
          f"({args.prepare_workers} workers, {args.image_size} px) -> {work / 'shards'}")  # fmt: skip
    common = {"image_size": args.image_size, "batch_size": args.batch_size, "flip": True, "pin_memory": False}
    cache = FaceDataModule(args.root, cache=True, cache_dir=str(work / "cache"), **common)
    start = time.perf_counter()
    cache.setup("fit")
    print(f"memmap cache build: {time.perf_counter() - start:.1f} s")
    paths = {"memmap cache (0 workers)": (cache, warm_loader(cache))}
    for workers in args.loader_workers:
        shards = FaceDataModule(str(work / "shards"), num_workers=workers, **common)
        paths[f"streaming shards ({workers} workers)"] = (shards, warm_loader(shards))
    rates: dict[str, list[tuple[float, float]]] = {name: [] for name in paths}
    for _ in range(args.epochs):
        for name, (dm, loader) in paths.items():
            rates[name].append(epoch_rate(dm, loader))
    base = statistics.median(wall for wall, _ in rates["memmap cache (0 workers)"])
    for name, epochs in rates.items():
        walls = [wall for wall, _ in epochs]
        median = statistics.median(walls)
        cpu = (
            "" if "(0 workers)" not in name else f", {statistics.median(c for _, c in epochs):,.0f} per CPU-s"
        )
        print(f"{name}: median {median:,.0f} images/s ({median / base:.2f}x the cache), best "
              f"{max(walls):,.0f}{cpu}; batch {args.batch_size}, {len(epochs)} epochs")  # fmt: skip


if __name__ == "__main__":
    main()
