"""``python -m facegan score FAKE REAL``: FID and KID of a checkpoint, an export or image files against real images.

    python -m facegan score last.ckpt /data/celeba                   # FID of 1,000 generated faces
    python -m facegan score generated/ real/ --json fid.json          # two folders (or zips) of images
    python -m facegan score export/ real-stats.npz --num 10000        # against saved statistics
    python -m facegan score last.ckpt configs/celeba64.yaml --split val --save-stats celeba64.npz

REAL may also be a facegan cache ``.pt`` or a config whose ``data:`` section builds a ``FaceDataModule``.
Engine, crop and resize, latents and statistics cache are FIDMonitor's: both give the same number.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import yaml
from PIL import Image
from tqdm import tqdm

from facegan.cli.generate import _device, _sampler, seeded
from facegan.data.decode import BadImageError, as_options, error_message
from facegan.data.sources import resolve_source
from facegan.io.atomic import atomic_write
from facegan.io.export import is_export_folder
from facegan.io.hub import is_repo_id
from facegan.metrics.fid import (
    FID,
    STATS_SUFFIXES,
    RealImages,
    fixed_latents,
    from_datamodule,
    from_files,
    generated,
    save_npz,
)

CONFIG_SUFFIXES = (".yaml", ".yml")
TRUST_CODE_HELP = "load a checkpoint/export of your own network classes (imports the modules it names)"
# The data module's advice for unreadable images, as this command's options (prepare does the same).
OPTIONS = {
    "--data.skip_bad_images true": "--skip-bad-images",
    "--data.max_skipped_fraction": "`max_skipped_fraction` in the data section of REAL's config",
}


def add_parser(commands: Any, help_text: str) -> None:
    """The ``score`` subcommand's options, on the tools' subparsers."""
    score = commands.add_parser("score", help=help_text, description=__doc__.split("\n\n")[0])
    score.add_argument(
        "fake", metavar="FAKE", help="checkpoint (.ckpt), export folder, or folder/zip of images"
    )
    score.add_argument(
        "real", metavar="REAL", help="folder/zip of images, statistics (.npz/.pt) or config YAML"
    )
    score.add_argument("--num", type=int, default=1000, help="generated images (default 1000; 10k+ on a GPU)")
    score.add_argument(
        "--num-real", type=int, default=10_000, help="real images, evenly spaced (default 10000)"
    )
    score.add_argument("--split", default="train", help="data module split of a config REAL (default train)")
    score.add_argument("--seed", type=int, default=0, help="seed of the latents (FIDMonitor's default: 0)")
    score.add_argument("--batch-size", type=int, default=64)
    score.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    score.add_argument("--weights", default=None, help="the Inception weights file (offline use)")
    score.add_argument("--image-size", type=int, default=None, help="side for image files (default: FAKE's)")
    score.add_argument("--crop-size", type=int, default=None, help="central square of image files first")
    score.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="leave unreadable image files out with a warning (FAKE's and REAL's) instead of failing",
    )
    score.add_argument(
        "--cache-dir", default=None, help="real-statistics cache (default ~/.cache/facegan/fid)"
    )
    score.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")
    score.add_argument("--save-stats", default=None, metavar="PATH", help="write REAL's statistics as .npz")
    score.add_argument("--no-progress", action="store_true", help="no progress bars")
    score.add_argument("--trust-code", action="store_true", help=TRUST_CODE_HELP)


def _generated(path: Path, device: torch.device, ns: argparse.Namespace) -> tuple[RealImages, int]:
    """FAKE as uint8 batches, and the side image files are resized to."""
    if path.suffix == ".ckpt" or is_export_folder(path) or is_repo_id(ns.fake):
        sample, latent_dim = _sampler(ns.fake if is_repo_id(ns.fake) else str(path), device, ns.trust_code)
        z = fixed_latents(ns.num, latent_dim, ns.seed)  # as FIDMonitor
        side = ns.image_size or int(sample(z[:1]).shape[-1])
        return RealImages(str(path), lambda: generated(sample, z, ns.batch_size), ns.num), side
    if not path.exists():
        raise FileNotFoundError(
            f"FAKE {str(path)!r} does not exist: give a .ckpt, an export folder or image files"
        )
    side = ns.image_size or ns.crop_size or _first_side(path, ns.skip_bad_images)
    return from_files(path, side, ns.crop_size, ns.num, ns.batch_size, ns.skip_bad_images), side


def _first_side(path: Path, skip_bad_images: bool) -> int:
    """The shorter side of FAKE's first (readable) image: the square its images are cropped to."""
    _, source, _ = resolve_source(str(path))
    if source is None or len(source) == 0:
        raise ValueError(f"FAKE {str(path)!r}: no images (jpg, png, webp, bmp) found")
    for i in range(len(source)):
        try:
            with Image.open(io.BytesIO(source.read(i))) as image:
                return min(image.size)
        except Exception as error:  # PIL raises many types for a file that is no image
            if not skip_bad_images:  # skipped: from_files warns when it reaches the file
                raise BadImageError(
                    f"FAKE {str(path)!r}: cannot read image {source.location(i)}: {type(error).__name__}: "
                    f"{error}. FAKE's files must be images: fix or remove the file, or give "
                    "--skip-bad-images to skip unreadable images"
                ) from error
    raise BadImageError(f"FAKE {str(path)!r}: none of its {len(source)} image files can be read")


def _real(path: Path, side: int, ns: argparse.Namespace) -> RealImages | Path:
    if path.suffix in STATS_SUFFIXES:
        if not path.is_file():
            raise FileNotFoundError(f"statistics file {str(path)!r} does not exist")
        return path
    if path.suffix in CONFIG_SUFFIXES:
        from facegan.data.datamodule import FaceDataModule

        config = yaml.safe_load(path.read_text()) if path.is_file() else None
        data = (config or {}).get("data") if isinstance(config, dict) else None
        if not isinstance(data, dict):
            raise ValueError(
                f"REAL {str(path)!r} has no `data:` section (a facegan config, e.g. configs/celeba64.yaml)"
            )
        data = {k: v for k, v in data.get("init_args", data).items() if k != "class_path"}
        if ns.skip_bad_images:
            data["skip_bad_images"] = True
        datamodule = FaceDataModule(**data)
        return from_datamodule(datamodule, ns.split, (-1.0, 1.0), ns.num_real, ns.batch_size)
    if not path.exists():
        raise FileNotFoundError(
            f"REAL {str(path)!r} does not exist: give image files, a .npz/.pt or a config YAML"
        )
    return from_files(path, side, ns.crop_size, ns.num_real, ns.batch_size, ns.skip_bad_images)


def _progress(images: RealImages, desc: str, ns: argparse.Namespace) -> RealImages:
    total, batches = math.ceil(images.count / ns.batch_size), images.batches
    bar = dict(total=total, desc=desc, unit="batch", disable=ns.no_progress)
    return replace(images, batches=lambda: iter(tqdm(batches(), **bar)))


def score(ns: argparse.Namespace) -> dict[str, Any]:
    """The FID of ``ns.fake`` against ``ns.real``, as a dict; an unreadable image's error and a skipped
    one's warning name this command's options."""
    seeded(ns.seed)  # --seed out of torch's range: one line naming it, before any work
    for name in ("num", "num_real", "batch_size"):
        if getattr(ns, name) < (1 if name == "batch_size" else 2):
            raise ValueError(f"--{name.replace('_', '-')} must be >= {1 if name == 'batch_size' else 2}")
    start = time.perf_counter()
    with warnings.catch_warnings():  # restores showwarning
        show = warnings.showwarning
        warnings.showwarning = lambda message, *args, **kwargs: show(
            as_options(str(message), OPTIONS), *args, **kwargs
        )
        try:
            device = _device(ns.device)
            # bad input fails before Inception loads
            fake, side = _generated(Path(ns.fake).expanduser(), device, ns)
            real = _real(Path(ns.real).expanduser(), side, ns)
            fid = FID.load(ns.weights, owner="", option="--weights PATH", seed=ns.seed).to(device)
            stats = fid.set_real(
                _progress(real, "real images", ns) if isinstance(real, RealImages) else real, ns.cache_dir
            )
            assert stats is not None
            if ns.save_stats:
                save_npz(ns.save_stats, stats.states)
            scores = fid(_progress(fake, "generated", ns).batches(), f"FAKE {ns.fake!r}")
        except BadImageError as error:
            raise BadImageError(as_options(error_message(error), OPTIONS)) from error
    return {
        **{key: scores[key] for key in ("fid", "kid", "kid_std", "kid_subset_size", "num_fake", "num_real")},
        "fake": str(ns.fake),
        "real": str(ns.real),
        "image_size": side,
        "real_statistics": str(stats.path),
        "real_statistics_cached": stats.cached,
        "extractor": fid.extractor,
        "seconds": round(time.perf_counter() - start, 2),
    }


def report(results: dict[str, Any], ns: argparse.Namespace) -> str:
    """The small table ``score`` prints; writes ``--json`` too."""
    if ns.json:
        with atomic_write(Path(ns.json).expanduser(), "w") as file:
            json.dump(results, file, indent=2, default=str)
    source = "read from" if results["real_statistics_cached"] else "computed, saved to"
    rows = [
        ("FID", f"{results['fid']:.4f}"),
        (
            "KID",
            "n/a (statistics without per-image features)"
            if results["kid"] is None
            else f"{results['kid']:.5f} +- {results['kid_std']:.5f} (subsets of {results['kid_subset_size']})",
        ),
        ("generated", f"{results['num_fake']} images from {results['fake']} at {results['image_size']} px"),
        (
            "real",
            f"{results['num_real'] or 'an unknown number of'} images from {results['real']} "
            f"({source} {results['real_statistics']})",
        ),
        ("seconds", f"{results['seconds']:.1f}"),
    ]
    return "\n".join(f"{name:<10} {value}" for name, value in rows)
