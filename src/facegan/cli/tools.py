"""``python -m facegan generate``, ``export``, ``score`` and ``prepare``: what to do with a model, and with data.

    python -m facegan generate --ckpt last.ckpt --num 64 --out grid.png    # or faces/, or walk.gif --interpolate 24
    python -m facegan export --ckpt last.ckpt --out generator/ --push-to-hub user/faces-64
    python -m facegan score last.ckpt /data/celeba --json fid.json
    python -m facegan prepare --root /data/celeba --out celeba-64/ --image-size 64

Checkpoints and exports are read without executing code from the file; one of your own network classes
imports the module it names, and only with ``--trust-code`` (:mod:`facegan.nets.custom`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from facegan.cli import prepare
from facegan.cli.entry import OneLineArgumentParser
from facegan.cli.generate import generate
from facegan.cli.score import TRUST_CODE_HELP, report, score
from facegan.cli.score import add_parser as add_score_parser
from facegan.data.decode import BadImageError
from facegan.io.atomic import WriteError
from facegan.io.checkpoints import evaluations_in, load_checkpoint, model_from_checkpoint
from facegan.io.export import export_generator
from facegan.io.hub import HubError
from facegan.metrics.fid import WeightsError

TOOLS = {
    "generate": "write generated faces: a grid, a folder of PNGs or a GIF",
    "export": "the generator alone as a Hugging Face Hub model folder (weights, config, model card)",
    "score": "FID and KID of a checkpoint, export or image folder against real images or statistics",
    "prepare": prepare.HELP,
}

# what a subcommand reports in one line (CheckpointError is a ValueError)
ERRORS = (ValueError, FileNotFoundError, BadImageError, WeightsError, HubError, WriteError, ImportError)


def build_parser(prog: str = "python -m facegan") -> OneLineArgumentParser:
    parser = OneLineArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help=TOOLS["generate"])
    gen.add_argument(
        "--ckpt", required=True, help="facegan checkpoint (.ckpt), export folder or Hub repo id user/name"
    )
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
    gen.add_argument("--trust-code", action="store_true", help=TRUST_CODE_HELP)
    exp = commands.add_parser("export", help=TOOLS["export"])
    exp.add_argument("--ckpt", required=True, help="facegan checkpoint (.ckpt)")
    exp.add_argument(
        "--out", required=True, help="folder for model.safetensors, config.json, README.md, samples.png"
    )
    exp.add_argument("--push-to-hub", metavar="REPO", help="also upload the folder to the Hub repo user/name")
    exp.add_argument("--private", action="store_true", help="with --push-to-hub: create the repo private")
    exp.add_argument(
        "--token", help="with --push-to-hub: a Hub token with write access (default: HF_TOKEN, hf auth login)"
    )
    exp.add_argument("--trust-code", action="store_true", help=TRUST_CODE_HELP)
    add_score_parser(commands, TOOLS["score"])
    prepare.add_parser(commands)
    parser.subcommands = commands.choices
    return parser


def export(ns: argparse.Namespace) -> Path:
    """``export``: the checkpoint's sampling generator, its FIDMonitor history in the model card."""
    if (ns.private or ns.token) and not ns.push_to_hub:
        raise ValueError("--private and --token go with --push-to-hub REPO")
    checkpoint = load_checkpoint(ns.ckpt)
    return export_generator(
        model_from_checkpoint(ns.ckpt, checkpoint, ns.trust_code),
        ns.out,
        evaluations=evaluations_in(checkpoint),
        push_to_hub=ns.push_to_hub,
        private=True if ns.private else None,
        token=ns.token,
    )


def main(args: list[str] | None = None, prog: str = "python -m facegan") -> Path | None:
    """Run ``generate``, ``export``, ``score`` or ``prepare``; exits with status 2 and a one-line message on bad input."""
    parser = build_parser(prog)
    ns, unknown = parser.parse_known_args(args)
    if unknown:  # the subcommand's parser names its own options
        parser.subcommands[ns.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        if ns.command == "score":
            print(report(score(ns), ns))
            return Path(ns.json) if ns.json else None
        path = {"generate": generate, "export": export, "prepare": prepare.run}[ns.command](ns)
    except ERRORS as error:
        print(f"facegan {ns.command}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"facegan {ns.command}: wrote {path}")
    if ns.command == "export" and ns.push_to_hub:
        print(f"facegan export: pushed {path} to the Hub repo {ns.push_to_hub}")
    return path
