"""Face quality for a fixed wall-clock budget: train a recipe, then FID against cached real statistics.

    python benchmarks/quality.py --label baseline --minutes 30 --model.augment ""
    python benchmarks/quality.py --label small-data --minutes 30 --config configs/small_data.yaml

Trains with ``python -m facegan fit`` settings (any CLI argument is passed on) on
``../shared/data/celeba-sample`` (5,000 aligned CelebA faces) at 64 px for ``--minutes`` of training
time (Lightning's ``max_time``, checked after every batch; a recipe's ``max_epochs`` is lifted, a
``--budget.max_kimg`` still applies; data setup and the real statistics are not counted), then computes FID and KID with the standard InceptionV3 features between ``--num-fake``
generated images (2,000: FID is biased by the count, so compare equal counts only) and
``--num-real`` real images (5,000; statistics cached on disk by :class:`facegan.FIDMonitor`, so only
the first run pays for them). With an EMA generator, FID is also computed for the raw generator:
the EMA's share of the result (``--no-raw-generator`` skips it).

Prints one JSON line (label, minutes, kimg, fid, kid, fid_raw_generator, commit, ...) and appends it to
``<out>/results.jsonl``; the run folder (checkpoints, sample grids) is ``<out>/<label>/``.
``--threads N`` sets torch's intra-op threads (two runs side by side on 2 cores: 1 each).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Timer

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--label", required=True, help="name of this run in the results")
    parser.add_argument("--minutes", type=float, default=30.0, help="training wall-clock budget")
    parser.add_argument("--num-fake", type=int, default=2000)
    parser.add_argument("--num-real", type=int, default=5000)
    parser.add_argument("--data", default=str(SHARED / "data" / "celeba-sample"))
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--out", default="benchmark_runs/quality")
    parser.add_argument(
        "--no-raw-generator",
        action="store_true",
        help="with an EMA generator, skip the second FID of the raw generator (halves the scoring time)",
    )
    parser.add_argument(
        "--weights",
        default=os.environ.get("FACEGAN_FID_WEIGHTS")
        or str(SHARED / "fid" / "weights-inception-2015-12-05-6726825d.pth"),
        help="the FID Inception weights file (default: $FACEGAN_FID_WEIGHTS or ../shared/fid/)",
    )
    return parser.parse_known_args(argv)


def commit() -> str:
    """The checkout's commit, with ``+dirty`` when tracked files differ from it."""
    run = lambda *cmd: subprocess.run(cmd, cwd=REPO, capture_output=True, text=True).stdout.strip()  # noqa: E731
    return run("git", "rev-parse", "--short", "HEAD") + (
        "+dirty" if run("git", "status", "--short", "-uno") else ""
    )


def main(argv: list[str]) -> dict:
    from facegan import FIDMonitor
    from facegan.cli import main as cli_main

    args, cli_args = parse(argv)
    measured = commit()  # before training: what the run measures, whatever changes meanwhile
    if args.threads:
        torch.set_num_threads(args.threads)
    run_dir = Path(args.out) / args.label
    seconds = round(args.minutes * 60)
    cli = cli_main(
        [
            "--data.root", args.data,
            "--data.image_size", "64",
            "--trainer.default_root_dir", str(run_dir),
            *cli_args,
            "--trainer.max_epochs", "-1",  # after the recipe's (small_data.yaml stops at 100): time only
            "--trainer.max_time", f"00:{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}",
        ],
        run=False,
    )  # fmt: skip
    trainer, model = cli.trainer, cli.model
    fid = FIDMonitor(
        num_fake=args.num_fake, num_real=args.num_real, every_n_epochs=0, at_fit_end=False,
        weights_path=args.weights,
    )  # fmt: skip
    trainer.callbacks.append(fid)
    trainer.fit(model, cli.datamodule)
    # the training stage as max_time counts it: data setup and the real statistics are not in it
    (timer,) = [callback for callback in trainer.callbacks if isinstance(callback, Timer)]
    train_seconds = timer.time_elapsed("train")
    result = {
        "label": args.label,
        "minutes": args.minutes,
        "train_seconds": round(train_seconds, 1),
        "kimg": round(int(model.images_seen) / 1000.0, 2),
        "steps": trainer.global_step,
        "epochs": trainer.current_epoch,
        "threads": torch.get_num_threads(),
        "num_fake": args.num_fake,
        "num_real": args.num_real,
        "args": cli_args,
        "commit": measured,
    }
    score = fid.evaluate(trainer, model)
    result["fid"] = round(score["fid"], 2)
    result["kid"] = score["kid"] and round(score["kid"], 5)
    result["kid_std"] = score["kid_std"] and round(score["kid_std"], 5)
    result["fid_seconds"] = round(fid.history[-1]["seconds"], 1)
    if model.generator_ema is not None and not args.no_raw_generator:
        # the same latents through the raw generator (standing statistics are kept per generator)
        ema, model.generator_ema = model.generator_ema, None
        result["fid_raw_generator"] = round(fid.evaluate(trainer, model)["fid"], 2)
        model.generator_ema = ema
    line = json.dumps(result)
    print(line, flush=True)
    with open(Path(args.out) / "results.jsonl", "a") as f:
        f.write(line + "\n")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
