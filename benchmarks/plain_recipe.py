"""The ``small_data`` + ``cpu_bf16`` recipe as one plain PyTorch script: the yardstick of fit_vs_plain.py.

    python benchmarks/plain_recipe.py --out /tmp/plain --kimg 20                      # built-in faces
    python benchmarks/plain_recipe.py --out /tmp/plain --kimg 20 --root PATH/celeba   # a CelebA folder

What a careful user writes by hand for configs/small_data.yaml (+ configs/cpu_bf16.yaml with
``--bf16``): the same DCGAN networks (facegan's plain ``nn.Module``s, so the two runs do the same
arithmetic), non-saturating losses on logits, DiffAugment color + translation on everything D sees,
random flips, Adam(2e-4, betas 0.5/0.999), an EMA generator with a 10 kimg half-life ramped up over
the first images, bf16 autocast with channels-last batches, a sample grid and a checkpoint every
``--every-kimg`` thousand images and at the end. The images are decoded once into memory (center
crop to the shorter side, bilinear resize) before training; the built-in faces are rendered once.

Prints one JSON line: ``{"images": ..., "loop_seconds": ..., "images_per_sec": ...}``, where the loop
is timed from the end of the first batch to the end of the run (grids and checkpoints included).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.utils import save_image

from facegan.nets import NetworkConfig, build_networks


def load_folder(root: Path, size: int) -> torch.Tensor:
    """Every JPEG/PNG of a CelebA folder (``img_align_celeba/``) or of ``root``, as ``(N, 3, S, S)`` uint8."""
    folder = root / "img_align_celeba" if (root / "img_align_celeba").is_dir() else root
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    images = torch.empty(len(paths), 3, size, size, dtype=torch.uint8)
    for i, path in enumerate(paths):
        with Image.open(path) as image:
            image = image.convert("RGB")
            w, h = image.size
            side = min(w, h)
            left, top = round((w - side) / 2), round((h - side) / 2)
            image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
            images[i] = torch.from_numpy(np.asarray(image)).permute(2, 0, 1)
    return images


def load_procedural(count: int, size: int) -> torch.Tensor:
    from facegan.data import ProceduralFaces

    faces = ProceduralFaces(count, size, seed=0)
    floats = torch.stack(faces.__getitems__(list(range(count))))  # (N, 3, S, S) in [-1, 1]
    return ((floats + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def augment(x: torch.Tensor) -> torch.Tensor:
    """DiffAugment color (brightness, saturation, contrast) then translation by up to 1/8, zero fill."""
    n, _, h, w = x.shape
    u = lambda lo, hi: torch.empty(n, 1, 1, 1, dtype=x.dtype).uniform_(lo, hi)  # noqa: E731
    x = x + u(-0.5, 0.5)
    gray = x.mean(1, keepdim=True)
    x = (x - gray) * u(0.0, 2.0) + gray
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * u(0.5, 1.5) + mean
    dy = torch.randint(-(h // 8), h // 8 + 1, (n, 1, 1))
    dx = torch.randint(-(w // 8), w // 8 + 1, (n, 1, 1))
    rows = (torch.arange(h)[None, :, None] + dy + 1).clamp(0, h + 1)
    cols = (torch.arange(w)[None, None, :] + dx + 1).clamp(0, w + 1)
    padded = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1)
    return padded[torch.arange(n)[:, None, None], rows, cols].permute(0, 3, 1, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=None, help="image folder; default: built-in faces")
    parser.add_argument("--out", type=Path, required=True, help="folder for grids and checkpoints")
    parser.add_argument("--kimg", type=float, default=20.0)
    parser.add_argument("--every-kimg", type=float, default=5.0)
    parser.add_argument("--num-procedural", type=int, default=8192)
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    size, batch, latent = 64, 64, 128
    data = load_procedural(args.num_procedural, size) if args.root is None else load_folder(args.root, size)

    G, D = build_networks(NetworkConfig("dcgan", size, latent, g_channels=32, d_channels=32))
    G_ema = copy.deepcopy(G).requires_grad_(False)
    G, D, G_ema = (m.to(memory_format=torch.channels_last) for m in (G, D, G_ema))
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    grid_z = torch.randn(64, latent, generator=torch.Generator().manual_seed(0))
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16)  # noqa: E731
    args.out.mkdir(parents=True, exist_ok=True)

    def save(tag: str) -> None:
        G_ema.eval()
        with torch.no_grad():
            save_image(G_ema(grid_z).float().clamp(-1, 1) * 0.5 + 0.5, args.out / f"grid-{tag}.png", nrow=8)
        state = {"G": G.state_dict(), "D": D.state_dict(), "G_ema": G_ema.state_dict(),
                 "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "seen": seen}  # fmt: skip
        torch.save(state, args.out / "last.ckpt.tmp")
        os.replace(args.out / "last.ckpt.tmp", args.out / "last.ckpt")

    seen, step, start, saved, next_save = 0, 0, None, -1, args.every_kimg * 1000
    while seen < args.kimg * 1000:
        order = torch.randperm(len(data))
        for i in range(len(data) // batch):
            real = data[order[i * batch : (i + 1) * batch]].float().div_(127.5).sub_(1.0)
            flip = torch.rand(batch, 1, 1, 1) < 0.5
            real = torch.where(flip, real.flip(-1), real).contiguous(memory_format=torch.channels_last)
            z = torch.randn(batch, latent)
            with autocast():
                fake = G(z)
                d_loss = (
                    F.softplus(-D(augment(real)).float()).mean()
                    + F.softplus(D(augment(fake.detach())).float()).mean()
                )  # -log(sigmoid(l_real)) - log(1 - sigmoid(l_fake))
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            D.requires_grad_(False)
            with autocast():
                g_loss = F.softplus(-D(augment(fake)).float()).mean()
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            D.requires_grad_(True)
            seen += batch
            half_life = min(10_000.0, 0.05 * seen)  # EMA half-life in images, ramped up
            beta = 0.5 ** (batch / max(half_life, 1e-8))
            with torch.no_grad():
                for p_ema, p in zip(G_ema.parameters(), G.parameters(), strict=True):
                    p_ema.lerp_(p, 1.0 - beta)
                for b_ema, b in zip(G_ema.buffers(), G.buffers(), strict=True):
                    b_ema.copy_(b)
            step += 1
            if step % 10 == 0:
                print(
                    f"step {step} kimg {seen / 1000:.2f} d_loss {d_loss.item():.3f} g_loss {g_loss.item():.3f}"
                )
            if seen >= next_save:
                save(f"{seen // 1000:06d}")
                saved, next_save = seen, next_save + args.every_kimg * 1000
            if start is None:
                start, first = time.perf_counter(), seen
            if seen >= args.kimg * 1000:
                break
    if saved != seen:
        save("final")
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {"images": seen - first, "loop_seconds": seconds, "images_per_sec": (seen - first) / seconds}
        )
    )


if __name__ == "__main__":
    main()
