"""Face quality by images shown: FID and KID of a recipe at equal numbers of images, one curve per run.

    python benchmarks/quality.py --label baseline --kimg 125,250,500 --model.augment ""
    python benchmarks/quality.py --label small-data --kimg 250 --seeds 0,1,2 --config configs/small_data.yaml
    python benchmarks/quality.py --label ema --kimg 125,250 --ema-kimg 5,10,20,40

Trains with ``python -m facegan fit`` settings (any CLI argument is passed on) on
``../shared/data/celeba-sample`` (5,000 aligned CelebA faces) at 64 px until D has been shown the largest
of ``--kimg`` thousand images (``--budget.max_kimg``; a recipe's ``max_epochs`` is lifted), and after the
batch that reaches each listed count computes FID and KID with the standard InceptionV3 features between
``--num-fake`` images of the EMA generator (G with ``--model.ema_kimg null``; 2,000: FID is biased by
the count, so compare equal counts only) and ``--num-real`` real images (5,000; statistics cached on
disk by :class:`facegan.FIDMonitor`, so only the first run pays for them). Recipes compare at equal
images, not equal minutes: a faster step is a separate measurement (``train_seconds`` and
``images_per_sec`` beside each point, scoring excluded).

``--seeds 0,1,2`` trains the recipe once per seed (``--seed_everything``), one after the other, labelled
``<label>-s<seed>``, each in its run folder ``<out>/<label>-s<seed>/``. ``--resume`` continues each from
the newest ``last.ckpt`` in that folder, when there is one (a run stopped by the end of a session, or one
taken from 250 to 500 kimg): the points it has scored are not scored again, and ``train_seconds`` goes
on from the checkpoint's. The resume is exact from an epoch's end (the checkpoint written there); from
one written mid-epoch (the budget's stop, Ctrl-C) the counts go on but that epoch's order is not kept. ``--ema-kimg 5,10,20`` also keeps
EMA copies of G with these half-lives (thousands of images; the model's ``ema_rampup``), scored at each
point too: which half-life suits a recipe, from one run.

Prints one JSON line per point and generator (label, seed, kimg, ema_kimg: the half-life scored or
null for G, fid, kid, train_seconds and images_per_sec since since_kimg: 0, or where a resume began from
a checkpoint that predates ``--resume``, commit, ...) and appends it to
``<out>/results.jsonl`` as it is measured. ``--threads N`` sets torch's intra-op threads (two runs side
by side on 2 cores: 1 each).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch

from facegan import FIDMonitor
from facegan.cli import main as cli_main
from facegan.cli.resume import find_last_checkpoint
from facegan.training.module import ema_beta, update_ema

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def numbers(kind: type) -> Callable[[str], list]:
    """An argparse type: a comma list of positive ``kind`` values, sorted, each once."""

    def parse(text: str) -> list:
        try:
            values = sorted({kind(part) for part in text.split(",")})
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma list of numbers, got {text!r}") from None
        if kind is float and values[0] <= 0:
            raise argparse.ArgumentTypeError(f"expected numbers > 0, got {text!r}")
        return values

    return parse


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--label", required=True, help="name of this run in the results")
    parser.add_argument(
        "--kimg", type=numbers(float), default=[250.0], help="points of the curve, e.g. 125,250"
    )
    parser.add_argument("--seeds", type=numbers(int), default=[0], help="one run per seed, e.g. 0,1,2")
    parser.add_argument("--ema-kimg", type=numbers(float), default=[], help="extra EMA half-lives, e.g. 5,20")
    parser.add_argument("--num-fake", type=int, default=2000)
    parser.add_argument("--num-real", type=int, default=5000)
    parser.add_argument(
        "--real",
        default=None,
        help="the real statistics: a FID cache .pt of these faces (with features, for KID) instead of "
        "computing them; their cache key holds the files' modification times, which a copy or a new "
        "mount of the faces changes",
    )
    parser.add_argument("--data", default=str(SHARED / "data" / "celeba-sample"))
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument(
        "--resume", action="store_true", help="continue each seed's run from its last.ckpt, if it has one"
    )
    parser.add_argument("--out", default="benchmark_runs/quality")
    parser.add_argument(
        "--weights",
        default=os.environ.get("FACEGAN_FID_WEIGHTS")
        or str(SHARED / "fid" / "weights-inception-2015-12-05-6726825d.pth"),
        help="the FID Inception weights file (default: $FACEGAN_FID_WEIGHTS or ../shared/fid/)",
    )
    args, cli_args = parser.parse_known_args(argv)
    if any(arg.startswith("--seed_everything") for arg in cli_args):
        parser.error("give the seeds with --seeds (each run sets --seed_everything)")
    return args, cli_args


def commit() -> str:
    """The checkout's commit, with ``+dirty`` when tracked files differ from it."""
    run = lambda *cmd: subprocess.run(cmd, cwd=REPO, capture_output=True, text=True).stdout.strip()  # noqa: E731
    return run("git", "rev-parse", "--short", "HEAD") + (
        "+dirty" if run("git", "status", "--short", "-uno") else ""
    )


class EMACopies(L.Callback):
    """EMA copies of ``pl_module.generator`` with other half-lives than the model's own (thousands of
    images), updated after each generator step as FaceGAN updates its ``generator_ema`` (``ema_beta``
    with the model's ``ema_rampup``, over the images since the last update): a few half-lives compared in
    one run, at the cost of one weight average each per step."""

    def __init__(self, half_lives_kimg: list[float]) -> None:
        self.half_lives = half_lives_kimg
        self.copies: dict[float, torch.nn.Module] = {}
        self.updated_at = 0  # images_seen at the last update
        self.d_updates = 0  # pl_module.d_updates then
        self.restored: dict[str, Any] = {}  # from a checkpoint

    def state_dict(self) -> dict[str, Any]:
        return {
            "copies": {h: ema.state_dict() for h, ema in self.copies.items()},
            "updated_at": self.updated_at,
            "d_updates": self.d_updates,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.restored = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        generator = pl_module.generator
        self.copies = {h: copy.deepcopy(generator).requires_grad_(False) for h in self.half_lives}
        self.updated_at, self.d_updates = pl_module.images_seen, pl_module.d_updates
        if trainer.ckpt_path is None or not self.half_lives:
            return
        saved = self.restored.get("copies", {})
        missing = [h for h in self.half_lives if h not in saved]
        if missing:
            raise ValueError(
                f"--ema-kimg {','.join(f'{h:g}' for h in missing)}: {trainer.ckpt_path} has no EMA copy with "
                "this half-life (the run did not keep one); resume without it, or start a new run"
            )
        for h, ema in self.copies.items():
            ema.load_state_dict(saved[h])
        self.updated_at, self.d_updates = self.restored["updated_at"], self.restored["d_updates"]

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        hp, seen = pl_module.hparams, pl_module.images_seen
        if pl_module.d_updates == self.d_updates or pl_module.d_updates % hp.n_disc_steps:
            return  # no generator step in this batch
        for half_life, ema in self.copies.items():
            update_ema(
                ema, pl_module.generator, ema_beta(seen - self.updated_at, half_life, seen, hp.ema_rampup)
            )
        self.updated_at, self.d_updates = seen, pl_module.d_updates


@contextlib.contextmanager
def sampling_from(model: Any, generator: torch.nn.Module) -> Iterator[None]:
    """``model.sample`` from ``generator`` inside ``with``: it stands in as ``generator_ema``. FaceGAN's
    standing BatchNorm statistics are keyed on the generator object, so each gets its own."""
    kept, model.generator_ema = model.generator_ema, generator
    try:
        yield
    finally:
        model.generator_ema = kept


class QualityCurve(L.Callback):
    """FID and KID after the batch that reaches each of ``points`` (images shown to D), of the model's
    sampling generator and of each EMA copy: each result goes to ``emit`` with the training time and
    rate so far, the scoring's time left out of both."""

    def __init__(
        self, fid: FIDMonitor, points: list[int], copies: EMACopies, emit: Callable[[dict], None]
    ) -> None:
        self.fid, self.pending, self.copies, self.emit = fid, list(points), copies, emit
        self.start, self.start_seen, self.scoring = 0.0, 0, 0.0
        self.scored: list[int] = []  # points done, kept in checkpoints with the training time so far
        self.trained_before = 0.0  # seconds, the checkpoint's

    def now(self, pl_module: Any) -> float:
        if pl_module.device.type == "cuda":  # the batch's queued kernels belong to training
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def train_seconds(self, at: float) -> float:
        return self.trained_before + at - self.start - self.scoring

    def state_dict(self) -> dict[str, Any]:
        return {
            "scored": self.scored,
            "train_seconds": self.train_seconds(time.perf_counter()),
            "start_seen": self.start_seen,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.scored = list(state_dict["scored"])
        self.trained_before, self.start_seen = state_dict["train_seconds"], state_dict["start_seen"]

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        seen = pl_module.images_seen
        if trainer.ckpt_path is None or not self.trained_before:  # not resumed, or no state saved
            self.start_seen, self.trained_before = seen, 0.0
        self.start, self.scoring = self.now(pl_module), 0.0
        self.pending = [p for p in self.pending if p not in self.scored]
        passed = [p for p in self.pending if p <= seen]
        if passed:
            print(
                f"{trainer.ckpt_path} is at {seen / 1000:g} kimg, past the unscored points "
                f"{[p / 1000 for p in passed]}: those are left out",
                file=sys.stderr,
            )
        self.pending = [p for p in self.pending if p > seen]

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        seen = pl_module.images_seen
        if not self.pending or seen < self.pending[0]:
            return
        reached = [p for p in self.pending if seen >= p]  # one batch may pass several points
        self.pending = self.pending[len(reached) :]
        began = self.now(pl_module)
        train_seconds = self.train_seconds(began)
        timing = {
            "kimg": seen / 1000.0,
            "train_seconds": round(train_seconds, 1),
            "images_per_sec": round((seen - self.start_seen) / train_seconds, 2),
            "steps": trainer.global_step,
            "since_kimg": self.start_seen / 1000.0,  # train_seconds and images_per_sec are from there
        }
        own = pl_module.hparams.ema_kimg if pl_module.generator_ema is not None else None
        generators = [(own, pl_module.sampling_generator), *self.copies.copies.items()]
        for ema_kimg, generator in generators:
            with sampling_from(pl_module, generator):
                score = self.fid.evaluate(trainer, pl_module)
            self.emit(
                {**timing, "ema_kimg": ema_kimg, **{key: score[key] for key in ("fid", "kid", "kid_std")}}
            )
        self.scoring += self.now(pl_module) - began
        self.scored += reached


def main(argv: list[str]) -> list[dict]:
    args, cli_args = parse(argv)
    measured = commit()  # before training: what the run measures, whatever changes meanwhile
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    results: list[dict] = []
    engine = None  # the Inception network, loaded once for all seeds
    for seed in args.seeds:
        label = f"{args.label}-s{seed}"
        cli = cli_main(
            [
                "--data.root", args.data,
                "--data.image_size", "64",
                "--trainer.default_root_dir", str(out / label),
                *cli_args,
                "--seed_everything", str(seed),
                "--trainer.max_epochs", "-1",  # lifts the recipe's (small_data.yaml: 100): images decide
                "--budget.max_kimg", str(args.kimg[-1]),
            ],
            run=False,
        )  # fmt: skip
        trainer, model = cli.trainer, cli.model
        fid = FIDMonitor(
            num_fake=args.num_fake, num_real=args.num_real, every_n_epochs=0, at_fit_end=False,
            weights_path=args.weights, real=args.real,
        )  # fmt: skip
        fid.fid = engine

        def emit(score: dict, label: str = label, seed: int = seed) -> None:
            result = {
                "label": label, "seed": seed, **score,
                "fid": round(score["fid"], 2),
                "kid": score["kid"] and round(score["kid"], 5),
                "kid_std": score["kid_std"] and round(score["kid_std"], 5),
                "threads": torch.get_num_threads(), "num_fake": args.num_fake, "num_real": args.num_real,
                "args": cli_args, "commit": measured,
            }  # fmt: skip
            line = json.dumps(result)
            print(line, flush=True)
            with open(out / "results.jsonl", "a") as f:
                f.write(line + "\n")
            results.append(result)

        copies = EMACopies(args.ema_kimg)
        curve = QualityCurve(fid, [round(k * 1000) for k in args.kimg], copies, emit)
        trainer.callbacks.extend([fid, copies, curve])  # in this order: the copies update before scoring
        last = find_last_checkpoint(out / label / "lightning_logs") if args.resume else None
        if last is not None:
            print(f"{label}: resuming from {last}", file=sys.stderr)
        trainer.fit(model, cli.datamodule, ckpt_path=last)
        engine = fid.fid
        if curve.pending:  # the recipe stopped first (max_steps, max_time, divergence)
            print(
                f"{label}: training stopped at {model.images_seen / 1000:g} kimg, before the points "
                f"{[p / 1000 for p in curve.pending]}",
                file=sys.stderr,
            )
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
