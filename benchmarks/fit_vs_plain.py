"""End to end: ``python -m facegan fit`` against the same recipe as a plain PyTorch script.

    python benchmarks/fit_vs_plain.py                                   # built-in faces, 10 kimg
    python benchmarks/fit_vs_plain.py --root PATH/celeba --kimg 20      # a CelebA folder
    python benchmarks/fit_vs_plain.py --fit-args="--data.cache true"    # other data settings

Both sides train configs/small_data.yaml + configs/cpu_bf16.yaml for ``--kimg`` thousand images,
writing a sample grid and a checkpoint every ``--every-kimg`` (the fit's per-epoch grids and
checkpoints are switched off so both write the same files); the plain side is
benchmarks/plain_recipe.py (its images decoded once into memory). The fit runs with its default
data settings unless ``--fit-args`` says otherwise. Each repeat runs both as fresh processes with
``--threads`` threads each (``OMP_NUM_THREADS``), in alternating order (``--together``: at the same
time, ``--threads 1`` each on 2 cores, so the VM's drift hits both alike); ``--warmup`` pairs first
(page cache, a ``--data.cache`` file) are not counted. Prints per side the training rate (images
from the end of the first batch to the end of the run, grids and checkpoints included, divided by
that time) and the whole run's wall time (start-up, decoding, everything), then the ratios
fit / plain: median, min and max over the repeats (rates: higher is better for the fit; times:
``plain / fit``, so above 1 means the fit is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L

REPO = Path(__file__).resolve().parents[1]


class LoopClock(L.Callback):
    """Writes ``{"images", "loop_seconds", "images_per_sec"}`` to ``path`` at the end of training,
    timed from the end of the first training batch, as plain_recipe.py times its loop."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.start: float | None = None
        self.first = 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.start is None:
            self.start, self.first = time.perf_counter(), pl_module.images_seen

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        seconds = time.perf_counter() - (self.start or 0.0)
        images = pl_module.images_seen - self.first
        result = {"images": images, "loop_seconds": seconds, "images_per_sec": images / seconds}
        Path(self.path).write_text(json.dumps(result))


def fit_command(args: argparse.Namespace, out: Path) -> list[str]:
    clock = {"class_path": "fit_vs_plain.LoopClock", "init_args": {"path": str(out / "clock.json")}}
    command = [
        sys.executable, "-m", "facegan", "fit",
        "--config", str(REPO / "configs/small_data.yaml"), "--config", str(REPO / "configs/cpu_bf16.yaml"),
        "--budget.max_kimg", str(args.kimg),
        "--samples.every_n_kimg", str(args.every_kimg), "--samples.every_n_epochs", "0",
        "--checkpoint.every_n_kimg", str(args.every_kimg), "--checkpoint.every_n_epochs", "0",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(out), f"--trainer.callbacks+={json.dumps(clock)}",
    ]  # fmt: skip
    if args.root:
        command += ["--data.root", str(args.root)]
    return command + shlex.split(args.fit_args.replace("{tmp}", str(out.parent)))


def plain_command(args: argparse.Namespace, out: Path) -> list[str]:
    command = [
        sys.executable,
        str(REPO / "benchmarks/plain_recipe.py"),
        "--out",
        str(out),
        "--kimg",
        str(args.kimg),
    ]
    command += ["--every-kimg", str(args.every_kimg)]
    return command + (["--root", str(args.root)] if args.root else [])


def run(side: str, args: argparse.Namespace, out: Path) -> dict[str, float]:
    """One run of ``side`` in a fresh process: its loop's rate and the whole run's wall time."""
    out.mkdir(parents=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "src"), str(REPO / "benchmarks"), env.get("PYTHONPATH", "")]
    )
    env["WANDB_MODE"] = "offline"
    command = fit_command(args, out) if side == "fit" else plain_command(args, out)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=out)
    wall = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"fit_vs_plain: {side} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    if side == "fit":
        clock = json.loads((out / "clock.json").read_text())
    else:
        clock = json.loads(done.stdout.strip().splitlines()[-1])
    return {"rate": clock["images_per_sec"], "wall": wall}


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--root", type=Path, default=None, help="image folder (e.g. CelebA); default: built-in faces"
    )
    parser.add_argument("--kimg", type=float, default=10.0)
    parser.add_argument("--every-kimg", type=float, default=5.0, help="a grid and a checkpoint every N kimg")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--warmup", type=int, default=1, help="uncounted pairs first (page cache, a cache file)"
    )
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each side")
    parser.add_argument("--fit-args", default="", help='extra fit flags ("{tmp}": a scratch folder)')
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--together",
        action="store_true",
        help="run each pair at the same time (with --threads 1 on 2 cores): a VM's drift hits both alike",
    )
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {"fit": [], "plain": []}
    with tempfile.TemporaryDirectory(prefix="fit_vs_plain-") as tmp:
        for repeat in range(args.warmup + args.repeats):  # the warm-up pairs are not counted
            order = ("fit", "plain") if repeat % 2 else ("plain", "fit")  # alternate who goes first
            jobs = [partial(run, side, args, Path(tmp) / f"{side}-{repeat}") for side in order]
            if args.together:  # both at once: whatever the machine does meanwhile, it does to both
                with ThreadPoolExecutor(2) as pool:
                    pair = list(pool.map(lambda job: job(), jobs))
            else:
                pair = [job() for job in jobs]
            for side, result in zip(order, pair, strict=True):
                if repeat >= args.warmup:
                    results[side].append(result)
                print(f"repeat {repeat}{' (warm-up)' if repeat < args.warmup else ''} {side}: "
                      f"{result['rate']:.1f} images/s, whole run {result['wall']:.1f} s", flush=True)  # fmt: skip
    fit, plain = results["fit"], results["plain"]
    rate_ratio = [f["rate"] / p["rate"] for f, p in zip(fit, plain, strict=True)]
    wall_ratio = [p["wall"] / f["wall"] for f, p in zip(fit, plain, strict=True)]
    where = args.root or "built-in faces"
    how = "run together" if args.together else "alternating"
    print(
        f"{where}, {args.kimg:g} kimg, {args.threads} thread(s) per side, {args.repeats} paired repeats ({how})"
    )
    print(f"fit {args.fit_args or '(default settings)'}: {spread([r['rate'] for r in fit])} images/s, "
          f"whole run {spread([r['wall'] for r in fit])} s")  # fmt: skip
    print(
        f"plain: {spread([r['rate'] for r in plain])} images/s, whole run {spread([r['wall'] for r in plain])} s"
    )
    print(f"ratio fit/plain, training images/s: {spread(rate_ratio)}")
    print(f"ratio fit/plain, whole run (plain time / fit time): {spread(wall_ratio)}")
    if args.json:
        summary = {"rate_ratio": rate_ratio, "wall_ratio": wall_ratio}
        args.json.write_text(json.dumps({"args": vars(args) | {"root": str(args.root), "json": None},
                                         "fit": fit, "plain": plain, **summary}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
