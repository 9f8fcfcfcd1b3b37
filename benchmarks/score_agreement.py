"""`python -m facegan score` vs torch-fidelity's `calculate_metrics` on two folders of 64 px PNGs.

    python benchmarks/score_agreement.py --celeba ../shared/data/celeba-sample --num 200 \
        --weights ../shared/fid/weights-inception-2015-12-05-6726825d.pth

Writes the PNGs (CelebA images 1..N as FAKE, N+1..2N as REAL, cropped and resized as training does)
to a temporary folder, scores them with both, and prints both FIDs and their relative difference.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from facegan.cli.tools import main as facegan_main
from facegan.metrics.fid import from_files


def write_pngs(celeba: Path, first: int, count: int, folder: Path) -> None:
    folder.mkdir(parents=True)
    images = from_files(celeba, 64, None, 10**9, count)  # every image, in file order
    index = 0
    for batch in images.batches():
        for image in batch:
            if first <= index < first + count:
                Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{index:06d}.png")
            index += 1
        if index >= first + count:
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--celeba", required=True, help="a CelebA folder (img_align_celeba/ inside)")
    parser.add_argument("--num", type=int, default=200, help="images per folder")
    parser.add_argument("--weights", required=True)
    args = parser.parse_args()
    import torch_fidelity

    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        fake, real = Path(tmp) / "fake", Path(tmp) / "real"
        write_pngs(Path(args.celeba), 0, args.num, fake)
        write_pngs(Path(args.celeba), args.num, args.num, real)
        start = time.perf_counter()
        out = Path(tmp) / "fid.json"
        facegan_main(["score", str(fake), str(real), "--weights", args.weights, "--device", "cpu",
                      "--num", str(args.num), "--cache-dir", str(Path(tmp) / "cache"), "--json", str(out),
                      "--no-progress"])  # fmt: skip
        ours, ours_s = json.loads(out.read_text())["fid"], time.perf_counter() - start
        start = time.perf_counter()
        theirs = torch_fidelity.calculate_metrics(
            input1=str(fake), input2=str(real), fid=True, cuda=False, cache=False, verbose=False,
            feature_extractor_weights_path=args.weights,
        )["frechet_inception_distance"]  # fmt: skip
        theirs_s = time.perf_counter() - start
    print(f"images per folder: {args.num}")
    print(f"facegan score:  FID {ours:.6f} ({ours_s:.0f} s)")
    print(f"torch-fidelity: FID {theirs:.6f} ({theirs_s:.0f} s)")
    print(f"relative difference: {abs(ours - theirs) / abs(theirs):.2e}")


if __name__ == "__main__":
    main()
