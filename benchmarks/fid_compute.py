"""FID's and KID's statistics step on a busy machine: seconds idle against seconds with the cores taken.

    python benchmarks/fid_compute.py                 # idle, then with one busy process per core
    python benchmarks/fid_compute.py --busy 4 --threads 2

The step after the Inception features: FID's distance from the 2048-dim sums and covariances
(torchmetrics' ``compute()``: a 2048x2048 float64 eigen-decomposition) and KID's subset scores of
1000 images (``--kid-subsets`` of them; facegan computes 100). Timed as facegan runs it (:func:`facegan.metrics.fid.compute_fid`, KID inside
:func:`~facegan.metrics.fid.one_thread`) and as torchmetrics runs it with ``--threads`` threads,
first with the machine as it is, then with ``--busy`` processes spinning (``python -c`` loops).
Prints the median seconds of each, the busy / idle ratio (target for facegan's: <= 2) and how
far the one-thread values are from the threaded ones.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import torch
from torchmetrics.image.fid import FrechetInceptionDistance

from facegan.metrics.fid import compute_fid, kid, one_thread


class Features(torch.nn.Module):
    """A stand-in extractor: FID's states are filled directly, the network never runs."""

    num_features = 2048

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def filled_metric(n: int, seed: int) -> tuple[FrechetInceptionDistance, torch.Tensor, torch.Tensor]:
    """A metric whose real and fake states hold ``n`` correlated random 2048-dim features per side."""
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(2048, 2048, generator=generator, dtype=torch.float64) / 45
    metric = FrechetInceptionDistance(feature=Features(), reset_real_features=False, normalize=False)
    sides = []
    for side, shift in (("real", 0.0), ("fake", 0.1)):
        features = (torch.randn(n, 2048, generator=generator, dtype=torch.float64) @ mixing + shift).relu()
        setattr(metric, f"{side}_features_sum", features.sum(0))
        setattr(metric, f"{side}_features_cov_sum", features.T @ features)
        setattr(metric, f"{side}_features_num_samples", torch.tensor(n))
        sides.append(features.float())
    metric.orig_dtype = torch.float32  # what update() records from its first batch
    metric._update_count = 1  # states set by hand: no "compute before update" warning
    return metric, sides[0], sides[1]


def timed(step, repeats: int) -> tuple[float, float]:
    values, seconds = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        values.append(step())
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), values[0]


def measure(args: argparse.Namespace, metric, real, fake) -> dict[str, tuple[float, float]]:
    """``{step: (median seconds, value)}`` of FID's and KID's step, facegan's way and with threads."""
    torch.set_num_threads(args.threads)

    def kid_mean() -> float:
        return kid(real, fake, subsets=args.kid_subsets)[0]

    def kid_one_thread() -> float:
        with one_thread():
            return kid_mean()

    def fresh(compute):  # torchmetrics keeps compute()'s result until the next update: drop it
        def step() -> float:
            metric._computed = None
            return compute()

        return step

    steps = {"fid facegan": fresh(lambda: compute_fid(metric)), "fid torchmetrics": fresh(lambda: float(metric.compute())),
             "kid facegan": kid_one_thread, "kid threads": kid_mean}  # fmt: skip
    return {name: timed(step, args.repeats) for name, step in steps.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 2, help="torch threads outside the step"
    )
    parser.add_argument("--busy", type=int, default=os.cpu_count() or 2, help="spinning processes when busy")
    parser.add_argument("--images", type=int, default=2000, help="features per side")
    parser.add_argument("--kid-subsets", type=int, default=10, help="KID subsets of 1000 (facegan: 100)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    metric, real, fake = filled_metric(args.images, seed=0)
    results = {"idle": measure(args, metric, real, fake)}
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        results["busy"] = measure(args, metric, real, fake)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    print(f"{args.images} images a side, {args.threads} threads, {args.busy} busy processes")
    for name in results["idle"]:
        idle, busy = results["idle"][name][0], results["busy"][name][0]
        print(f"{name:17s} idle {idle:7.2f} s, busy {busy:7.2f} s, busy / idle {busy / idle:.2f}")
    for step, other in (("fid", "fid torchmetrics"), ("kid", "kid threads")):
        ours, theirs = results["idle"][f"{step} facegan"][1], results["idle"][other][1]
        print(
            f"{step.upper()} {ours:.10g} (one thread) vs {theirs:.10g}: relative difference {abs(ours / theirs - 1):.1e}"
        )


if __name__ == "__main__":
    main()
