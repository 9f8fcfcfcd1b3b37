"""``python -m facegan generate``, ``export`` and ``prepare``: what to do with a model, and with data.

    python -m facegan generate --ckpt last.ckpt --num 64 --out grid.png            # one grid
    python -m facegan generate --ckpt last.ckpt --num 10000 --out faces/           # one PNG per image
    python -m facegan generate --ckpt last.ckpt --num 16 --interpolate 24 --out walk.gif
    python -m facegan export --ckpt last.ckpt --out generator/                     # safetensors + JSON
    python -m facegan prepare --root /data/celeba --out celeba-64/ --image-size 64  # LitData shards

``--ckpt`` takes a Lightning checkpoint written by facegan or an export folder. Both are read
without executing code from the file (see :mod:`facegan.io.checkpoints` and :mod:`facegan.io.export`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from facegan.cli import prepare
from facegan.cli.generate import generate
from facegan.data.decode import BadImageError
from facegan.io.checkpoints import CheckpointError, model_from_checkpoint
from facegan.io.export import export_generator

TOOLS = {
    "generate": "write generated faces: a grid, a folder of PNGs or a GIF",
    "export": "the generator alone: safetensors + JSON, loadable without Lightning",
    "prepare": prepare.HELP,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m facegan", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help=TOOLS["generate"])
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
    gen.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the images of an --out folder that already has files",
    )
    exp = commands.add_parser("export", help=TOOLS["export"])
    exp.add_argument("--ckpt", required=True, help="facegan checkpoint (.ckpt)")
    exp.add_argument("--out", required=True, help="folder to write generator.safetensors and config.json to")
    prepare.add_parser(commands)
    return parser


def main(args: list[str] | None = None) -> Path:
    """Run ``generate`` or ``export``; exits with status 2 and a one-line message on bad input."""
    ns = build_parser().parse_args(args)
    try:
        if ns.command == "prepare":
            path = prepare.run(ns)
        elif ns.command == "export":
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
                overwrite=ns.overwrite,
            )
    except (CheckpointError, ValueError, FileNotFoundError, ImportError, BadImageError) as error:
        print(f"facegan {ns.command}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"facegan {ns.command}: wrote {path}")
    return path
