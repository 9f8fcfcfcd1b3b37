"""Images/s delivered by FaceDataModule's training loader: the JPEG path against the uint8 cache.

    python benchmarks/data_throughput.py                       # ../shared/data/celeba-sample, 64 px
    python benchmarks/data_throughput.py --root PATH --image-size 128 --workers 2 --epochs 3

Both paths use the same worker count and batch size and deliver what the training step gets on a CPU
(the cache's batches are scaled to [-1, 1] and flipped in ``on_after_batch_transfer``, included
here). The cache is built (or found) first and its build time printed; the first epoch of each path
is a warm-up (worker start, page cache), the figure is the median over the next epochs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from facegan import FaceDataModule

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"


def epoch_rate(dm: FaceDataModule) -> float:
    start, count = time.perf_counter(), 0
    for batch in dm.train_dataloader():
        batch = dm.on_after_batch_transfer(batch, 0)  # uint8 -> float + flips (cache), no-op (JPEG)
        count += batch.shape[0]
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=str(SHARED / "data" / "celeba-sample"))
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1, help="loader workers for both paths")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after one warm-up epoch")
    parser.add_argument("--cache-dir", default=None, help="default: a fresh temporary folder")
    args = parser.parse_args()
    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="facegan-cache-")
    rates = {}
    for path in ("jpeg", "cache"):
        dm = FaceDataModule(
            root=args.root, image_size=args.image_size, batch_size=args.batch_size,
            num_workers=args.workers, cache=path == "cache", cache_dir=cache_dir, flip=True, pin_memory=False,
        )  # fmt: skip
        start = time.perf_counter()
        dm.setup("fit")
        if path == "cache":
            print(f"cache build (or lookup): {time.perf_counter() - start:.1f} s -> {dm.cache_path}")
        dm.trainer = SimpleNamespace(training=True)  # flips on, as in training
        epoch_rate(dm)  # warm-up
        rates[path] = statistics.median(epoch_rate(dm) for _ in range(args.epochs))
        print(f"{path}: {rates[path]:,.0f} images/s ({len(dm.datasets['train'])} images per epoch)")
    print(
        f"cache / jpeg: {rates['cache'] / rates['jpeg']:.1f}x at {args.image_size} px, "
        f"{args.workers} worker(s), batch {args.batch_size}"
    )


if __name__ == "__main__":
    main()
