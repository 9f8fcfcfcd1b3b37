"""``python -m facegan prepare``: a source's images into LitData shards that stream to many nodes.

    python -m facegan prepare --root /data/celeba --out /data/celeba-64 --image-size 64 --workers 8
    aws s3 sync /data/celeba-64 s3://bucket/celeba-64        # then --data.root s3://bucket/celeba-64

The images are decoded and split exactly as ``FaceDataModule`` does (:mod:`facegan.data.shards`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

HELP = "decode a folder/zip/CelebA into LitData shards for streaming (local or s3://)"


def add_parser(commands: Any) -> None:
    """Add the ``prepare`` subcommand to ``commands`` (an argparse subparsers object)."""
    prep = commands.add_parser("prepare", help=HELP, description=__doc__.split("\n\n")[0])
    prep.add_argument("--root", required=True, help="a folder or zip of images, or a CelebA folder")
    prep.add_argument("--out", required=True, help="the folder to write (empty or new)")
    prep.add_argument("--image-size", type=int, required=True, help="side of the square images stored")
    prep.add_argument("--crop-size", type=int, help="central square first (default: shorter side)")
    prep.add_argument("--source", default="auto", choices=["auto", "folder", "celeba", "zip"])
    prep.add_argument("--workers", type=int, help="worker processes (default: one per core)")
    prep.add_argument("--chunk-size", type=int, help="images per chunk (default: 64 MB chunks)")
    prep.add_argument("--val-fraction", type=float, default=0.02, help="held out without a partition file")
    prep.add_argument("--test-fraction", type=float, default=0.02, help="held out without a partition file")
    prep.add_argument("--split-seed", type=int, default=0)
    prep.add_argument(
        "--skip-bad-images", action="store_true", help="skip unreadable images (listed in the JSON)"
    )
    prep.add_argument("--max-skipped-fraction", type=float, default=0.1, help="with --skip-bad-images")
    prep.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the prepared folder at --out (one with facegan-shards.json)",
    )


def run(ns: argparse.Namespace) -> Path:
    """Prepare the shards ``ns`` describes; print what was written."""
    from facegan.data.shards import META_NAME, prepare_shards

    start = time.perf_counter()
    names = "crop_size source val_fraction test_fraction split_seed skip_bad_images max_skipped_fraction"
    data = {name: getattr(ns, name) for name in names.split()}  # FaceDataModule's settings
    meta = prepare_shards(ns.root, ns.out, ns.image_size, ns.workers, ns.chunk_size, ns.overwrite, **data)
    seconds = time.perf_counter() - start
    counts = {split: info["count"] for split, info in meta["splits"].items()}
    skipped = sum(len(info["skipped"]) for info in meta["splits"].values())
    total = sum(counts.values())
    print(
        f"facegan prepare: {total} images ({counts}; {skipped} skipped) at {ns.image_size} px in "
        f"{seconds:.1f} s ({total / seconds:.0f} images/s)"
    )
    return Path(ns.out) / META_NAME
