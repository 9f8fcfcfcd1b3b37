"""Generated images/s through FIDMonitor against torchmetrics' FID run directly on the same batches.

    python benchmarks/fid_throughput.py                # 128 images, dcgan 64 px, CPU
    python benchmarks/fid_throughput.py --num 2000 --device cuda

Both paths do the same work: generate each batch with ``FaceGAN.sample`` from the same latents,
convert to uint8, and update ``FrechetInceptionDistance(feature=2048)`` (fake half); the direct path
then computes the distance against the same real statistics. The callback path is
``FIDMonitor.evaluate`` (the call behind ``val/fid``), which runs the FID engine
(:class:`facegan.metrics.FID`, the one ``facegan score`` runs too). Alternating repeats, medians,
ratio (target >= 0.95). Offline: the Inception weights come from ``--weights`` (default ../shared/fid/).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from torchmetrics.image.fid import FrechetInceptionDistance

from facegan import FaceGAN, FIDMonitor
from facegan.images import to_uint8
from facegan.metrics import FID, fixed_latents

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num", type=int, default=128, help="generated images per measurement")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--weights", default=str(SHARED / "fid" / "weights-inception-2015-12-05-6726825d.pth")
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    model = FaceGAN(image_size=64, g_channels=32, d_channels=32).to(device)
    monitor = FIDMonitor(num_fake=args.num, batch_size=args.batch_size, weights_path=args.weights)
    monitor.fid = FID.load(args.weights).to(device)  # no real features: the tap runs, KID does not
    real = torch.randint(0, 256, (2 * args.batch_size, 3, 64, 64), dtype=torch.uint8, device=device)
    monitor.fid.metric.update(real, real=True)  # real statistics for both paths (values do not matter)
    monitor.latents = fixed_latents(args.num, model.hparams.latent_dim, seed=0)
    trainer = SimpleNamespace(current_epoch=0, global_step=0)
    direct = FrechetInceptionDistance(
        feature=2048, reset_real_features=False, normalize=False, antialias=False,
        feature_extractor_weights_path=args.weights,
    ).to(device)  # fmt: skip
    direct.update(real, real=True)

    def through_callback() -> float:
        start = time.perf_counter()
        monitor.evaluate(trainer, model)
        return args.num / (time.perf_counter() - start)

    def run_direct() -> float:
        start = time.perf_counter()
        direct.reset()
        with torch.no_grad():
            for z in monitor.latents.split(args.batch_size):
                direct.update(to_uint8(model.sample(z=z, batch_size=args.batch_size)), real=False)
            float(direct.compute())
        return args.num / (time.perf_counter() - start)

    model.sample(z=monitor.latents[:1])  # warm-up: BatchNorm standing statistics, allocations
    rates: dict[str, list[float]] = {"direct": [], "callback": []}
    for _ in range(args.repeats):
        rates["direct"].append(run_direct())
        rates["callback"].append(through_callback())
    d, c = statistics.median(rates["direct"]), statistics.median(rates["callback"])
    print(
        f"{args.num} generated images, batch {args.batch_size}, {device}, {torch.get_num_threads()} threads"
    )
    print(f"torchmetrics directly: {d:.2f} images/s (runs: {', '.join(f'{r:.2f}' for r in rates['direct'])})")
    print(
        f"FIDMonitor.evaluate:   {c:.2f} images/s (runs: {', '.join(f'{r:.2f}' for r in rates['callback'])})"
    )
    print(f"ratio: {c / d:.3f}")


if __name__ == "__main__":
    main()
