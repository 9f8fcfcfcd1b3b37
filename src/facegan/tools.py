"""``python -m facegan generate`` and ``python -m facegan export``: what to do with a trained model.

    python -m facegan generate --ckpt last.ckpt --num 64 --out grid.png            # one grid
    python -m facegan generate --ckpt last.ckpt --num 10000 --out faces/           # one PNG per image
    python -m facegan generate --ckpt last.ckpt --num 16 --interpolate 24 --out walk.gif
    python -m facegan export --ckpt last.ckpt --out generator/                     # safetensors + JSON

``--ckpt`` takes a Lightning checkpoint written by facegan or an export folder. Both are read
without executing code from the file (see :mod:`facegan.export`).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torchvision.utils import make_grid
from tqdm import tqdm

from facegan.export import CheckpointError, export_generator, load_generator, model_from_checkpoint
from facegan.images import to_uint8

GRID_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
KEYFRAMES = 4  # latents per image that an interpolation loops through


def truncated_normal(n: int, dim: int, psi: float | None, generator: torch.Generator) -> Tensor:
    """``(n, dim)`` standard normal latents; with ``psi``, every entry redrawn until ``|z| <= psi``."""
    z = torch.randn(n, dim, generator=generator)
    if psi is None:
        return z
    if psi <= 0:
        raise ValueError(f"--truncation must be > 0, but got {psi}")
    outside = z.abs() > psi
    while outside.any():
        z[outside] = torch.randn(int(outside.sum()), generator=generator)
        outside = z.abs() > psi
    return z


def slerp(a: Tensor, b: Tensor, t: float) -> Tensor:
    """Spherical interpolation between latents ``a`` and ``b`` (rows), ``t`` in [0, 1]."""
    cos = torch.nn.functional.cosine_similarity(a, b, dim=1).clamp(-1.0, 1.0)[:, None]
    omega = torch.acos(cos)
    sin = torch.sin(omega)
    linear = sin.abs() < 1e-6
    wa = torch.where(linear, torch.full_like(sin, 1.0 - t), torch.sin((1.0 - t) * omega) / sin)
    wb = torch.where(linear, torch.full_like(sin, t), torch.sin(t * omega) / sin)
    return wa * a + wb * b


def _sampler(ckpt: str, device: torch.device) -> tuple[Callable[[Tensor], Tensor], int]:
    """``(z -> images in [-1, 1], latent_dim)`` from a checkpoint file or an export folder."""
    if Path(ckpt).is_dir():
        generator = load_generator(ckpt, device)
        return (lambda z: generator(z.to(device)).clamp(-1, 1)), int(generator.latent_dim)
    model = model_from_checkpoint(ckpt).to(device)
    return (lambda z: model.sample(z=z.to(device))), int(model.hparams.latent_dim)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(
            f"--device {name!r} is not a device ({error}); use cpu, cuda, cuda:1 or auto"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name!r}: no CUDA device is available here; use --device cpu")
    return device


def _save_png(images: Tensor, path: Path) -> None:
    Image.fromarray(to_uint8(images).permute(1, 2, 0).cpu().numpy()).save(path)


@torch.no_grad()
def generate(
    ckpt: str,
    out: str,
    num: int = 64,
    seed: int = 0,
    batch_size: int = 64,
    device: str = "auto",
    truncation: float | None = None,
    interpolate: int | None = None,
    nrow: int | None = None,
    progress: bool = True,
) -> Path:
    """Write ``num`` generated faces to ``out`` (a grid image, a folder of PNGs, or a GIF); see module doc."""
    if num < 1:
        raise ValueError(f"--num must be >= 1, but got {num}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, but got {batch_size}")
    target = Path(out)
    suffix = target.suffix.lower()
    if interpolate is not None:
        if interpolate < 2:
            raise ValueError(f"--interpolate takes the frames per transition (>= 2), but got {interpolate}")
        if suffix != ".gif":
            raise ValueError(f"--interpolate writes an animation: --out must end in .gif, got {out!r}")
    elif suffix == ".gif":
        raise ValueError("--out *.gif needs --interpolate STEPS (frames per transition)")
    sample, latent_dim = _sampler(ckpt, _device(device))
    rng = torch.Generator().manual_seed(seed)
    nrow = nrow or max(1, math.isqrt(num))
    target.parent.mkdir(parents=True, exist_ok=True)

    if interpolate is not None:  # each grid cell walks a loop through KEYFRAMES latents
        keys = truncated_normal(KEYFRAMES * num, latent_dim, truncation, rng).view(KEYFRAMES, num, latent_dim)
        frames = []
        steps = [(k, i / interpolate) for k in range(KEYFRAMES) for i in range(interpolate)]
        for k, t in tqdm(steps, desc="frames", disable=not progress):
            z = slerp(keys[k], keys[(k + 1) % KEYFRAMES], t)
            images = torch.cat([sample(chunk).cpu() for chunk in z.split(batch_size)])
            grid = make_grid(images, nrow=nrow, padding=2, pad_value=-1.0)
            frames.append(Image.fromarray(to_uint8(grid).permute(1, 2, 0).numpy()))
        frames[0].save(target, save_all=True, append_images=frames[1:], duration=80, loop=0)
        return target

    z = truncated_normal(num, latent_dim, truncation, rng)
    as_grid = suffix in GRID_SUFFIXES
    if not as_grid:
        if target.exists() and not target.is_dir():
            raise ValueError(f"--out {out!r} is a file; give a folder, or a .png/.jpg name for a grid")
        target.mkdir(parents=True, exist_ok=True)
    parts, written = [], 0
    with tqdm(total=num, desc="images", unit="img", disable=not progress or num <= batch_size) as bar:
        for chunk in z.split(batch_size):
            images = sample(chunk).cpu()
            if as_grid:
                parts.append(images)
            else:
                for image in images:
                    _save_png(image, target / f"{written:06d}.png")
                    written += 1
            bar.update(len(chunk))
    if as_grid:
        _save_png(make_grid(torch.cat(parts), nrow=nrow, padding=2, pad_value=-1.0), target)
    return target


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m facegan", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="write generated faces: a grid, a folder of PNGs or a GIF")
    gen.add_argument("--ckpt", required=True, help="facegan checkpoint (.ckpt) or export folder")
    gen.add_argument("--out", required=True, help="grid.png | DIR (one PNG per image) | walk.gif")
    gen.add_argument("--num", type=int, default=64, help="number of images (grid cells with --interpolate)")
    gen.add_argument("--seed", type=int, default=0, help="seed of the latents")
    gen.add_argument("--batch-size", type=int, default=64)
    gen.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    gen.add_argument("--truncation", type=float, default=None, metavar="PSI", help="truncate |z| to PSI")
    gen.add_argument(
        "--interpolate", type=int, default=None, metavar="STEPS", help="GIF, frames per transition"
    )
    gen.add_argument("--nrow", type=int, default=None, help="images per grid row (default: square)")
    exp = commands.add_parser(
        "export", help="the generator alone: safetensors + JSON, loadable without Lightning"
    )
    exp.add_argument("--ckpt", required=True, help="facegan checkpoint (.ckpt)")
    exp.add_argument("--out", required=True, help="folder to write generator.safetensors and config.json to")
    return parser


def main(args: list[str] | None = None) -> Path:
    """Run ``generate`` or ``export``; exits with status 2 and a one-line message on bad input."""
    ns = build_parser().parse_args(args)
    try:
        if ns.command == "export":
            path = export_generator(model_from_checkpoint(ns.ckpt), ns.out)
        else:
            path = generate(
                ns.ckpt,
                ns.out,
                num=ns.num,
                seed=ns.seed,
                batch_size=ns.batch_size,
                device=ns.device,
                truncation=ns.truncation,
                interpolate=ns.interpolate,
                nrow=ns.nrow,
            )
    except (CheckpointError, ValueError) as error:
        print(f"facegan {ns.command}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"facegan {ns.command}: wrote {path}")
    return path
