"""``generate``: faces to files (a grid image, a folder of PNGs, or a GIF of latent interpolations) from
a checkpoint, an export folder or the Hub repo id of one, read without executing code from the file."""

from __future__ import annotations

import argparse
import math
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from facegan.images import grid_image, to_uint8
from facegan.io.checkpoints import model_from_checkpoint
from facegan.io.export import load_generator
from facegan.io.hub import is_repo_id

IMAGE_NAME = re.compile(r"\d{6}\.png")  # the images a folder output is made of
GRID_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
KEYFRAMES = 4  # latents per image that an interpolation loops through


def truncated_normal(n: int, dim: int, psi: float | None, generator: torch.Generator) -> Tensor:
    """``(n, dim)`` standard normal latents; with ``psi``, each entry from the normal truncated to ``[-psi, psi]``."""
    if psi is None:
        return torch.randn(n, dim, generator=generator)
    if not (math.isfinite(psi) and psi > 0):
        raise ValueError(f"--truncation must be a finite number > 0, but got {psi}")
    return torch.nn.init.trunc_normal_(torch.empty(n, dim), 0.0, 1.0, -psi, psi, generator=generator)


def slerp(a: Tensor, b: Tensor, t: float) -> Tensor:
    """Spherical interpolation between latents ``a`` and ``b`` (rows), ``t`` in [0, 1]."""
    cos = torch.nn.functional.cosine_similarity(a, b, dim=1).clamp(-1.0, 1.0)[:, None]
    omega = torch.acos(cos)
    sin = torch.sin(omega)
    linear = sin.abs() < 1e-6
    wa = torch.where(linear, torch.full_like(sin, 1.0 - t), torch.sin((1.0 - t) * omega) / sin)
    wb = torch.where(linear, torch.full_like(sin, t), torch.sin(t * omega) / sin)
    return wa * a + wb * b


def _sampler(
    ckpt: str, device: torch.device, trust_code: bool = False
) -> tuple[Callable[[Tensor], Tensor], int]:
    """``(z -> images in [-1, 1], latent_dim)`` from a checkpoint file, an export folder or a Hub repo id
    (one of a user's own networks only with ``trust_code``: see :mod:`facegan.nets.custom`)."""
    if Path(ckpt).is_dir() or is_repo_id(ckpt):
        generator = load_generator(ckpt, device, trust_code=trust_code)
        return (lambda z: generator(z.to(device)).clamp(-1, 1)), int(cast(Any, generator).latent_dim)
    model = model_from_checkpoint(ckpt, trust_code=trust_code).to(device)
    return (lambda z: model.sample(z=z.to(device))), int(model.hparams.latent_dim)


SEED_RANGE = (-0x8000_0000_0000_0000, 0xFFFF_FFFF_FFFF_FFFF)  # what torch.Generator.manual_seed takes


def seeded(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``--seed`` (``ValueError`` naming it when out of range)."""
    low, high = SEED_RANGE
    if not low <= seed <= high:
        raise ValueError(f"--seed must be in [{low}, {high}], but got {seed}")
    return torch.Generator().manual_seed(seed)


def _device(name: str) -> torch.device:
    """The device ``--device`` names (``auto``: the first CUDA device, else the CPU); ``ValueError``
    naming ``--device`` and what is available when it is no device, or none this machine has."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = ["mps"] if torch.backends.mps.is_available() else []
    available = ", ".join(["cpu", *cuda, *mps, "auto"])
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a device name; available here: {available}") from None
    if device.type == "meta":
        raise ValueError(
            f"--device 'meta' holds shapes only and cannot make images; available here: {available}"
        )
    if device.type == "cpu" or f"{device.type}:{device.index or 0}" in [*cuda, *(f"{m}:0" for m in mps)]:
        return device
    raise ValueError(f"--device {name!r} is not available here; available: {available}")


def _prepare_output(target: Path, out: str, single_file: bool, overwrite: bool) -> None:
    """Check that ``--out`` can be written, and that a folder holds no earlier model's images."""
    folder = target.parent if single_file else target
    if single_file and target.is_dir():
        raise ValueError(
            f"--out {out!r} is an existing folder, not an image file; give a file name, e.g. "
            f"{str(target / ('grid' + target.suffix))!r}"
        )
    if not single_file:
        if target.exists() and not target.is_dir():
            raise ValueError(f"--out {out!r} is a file; give a folder, or a .png/.jpg name for a grid")
        earlier = sorted(target.iterdir()) if target.is_dir() else []
        if earlier and not overwrite:
            raise ValueError(
                f"--out {out!r} already holds {len(earlier)} files (e.g. {earlier[0].name}); images of two "
                "models would mix. Give an empty or new folder, or --overwrite to replace its images"
            )
        for path in earlier:
            if IMAGE_NAME.fullmatch(path.name):
                path.unlink()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ValueError(
            f"--out {out!r}: cannot write to {str(folder)!r} ({error.strerror or error})"
        ) from None


@torch.no_grad()
def generate(ns: argparse.Namespace) -> Path:
    """``generate``: ``ns.num`` generated faces to ``ns.out`` (a grid image, a folder of PNGs, or a GIF)."""
    num, steps = ns.num, ns.interpolate
    if num < 1:
        raise ValueError(f"--num must be >= 1, but got {num}")
    if ns.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, but got {ns.batch_size}")
    target = Path(ns.out)
    suffix = target.suffix.lower()
    if steps is not None:
        if steps < 2:
            raise ValueError(f"--interpolate takes the frames per transition (>= 2), but got {steps}")
        if suffix != ".gif":
            raise ValueError(f"--interpolate writes an animation: --out must end in .gif, got {ns.out!r}")
    elif suffix == ".gif":
        raise ValueError("--out *.gif needs --interpolate STEPS (frames per transition)")
    if ns.nrow is not None and ns.nrow < 1:
        raise ValueError(f"--nrow must be >= 1, but got {ns.nrow}")
    if ns.truncation is not None:  # a bad --truncation, --seed or --device fails before any work
        truncated_normal(1, 1, ns.truncation, torch.Generator())
    rng = seeded(ns.seed)
    device = _device(ns.device)
    as_grid = suffix in GRID_SUFFIXES or steps is not None
    _prepare_output(target, ns.out, as_grid, ns.overwrite)  # before any image is made
    sample, latent_dim = _sampler(ns.ckpt, device, ns.trust_code)
    nrow = ns.nrow or max(1, math.isqrt(num))

    if steps is not None:  # each grid cell walks a loop through KEYFRAMES latents
        keys = truncated_normal(KEYFRAMES * num, latent_dim, ns.truncation, rng).view(KEYFRAMES, num, -1)
        frames = []
        for k, t in tqdm([(k, i / steps) for k in range(KEYFRAMES) for i in range(steps)], desc="frames"):
            z = slerp(keys[k], keys[(k + 1) % KEYFRAMES], t)
            images = torch.cat([sample(chunk).cpu() for chunk in z.split(ns.batch_size)])
            frames.append(grid_image(images, nrow))
        frames[0].save(target, save_all=True, append_images=frames[1:], duration=80, loop=0)
        return target

    z = truncated_normal(num, latent_dim, ns.truncation, rng)
    parts, written = [], 0
    with tqdm(total=num, desc="images", unit="img", disable=num <= ns.batch_size) as bar:
        for chunk in z.split(ns.batch_size):
            images = sample(chunk).cpu()
            if as_grid:
                parts.append(images)
            else:
                for image in images:
                    png = to_uint8(image).permute(1, 2, 0).numpy()
                    Image.fromarray(png).save(target / f"{written:06d}.png")
                    written += 1
            bar.update(len(chunk))
    if as_grid:
        grid_image(torch.cat(parts), nrow).save(target)
    return target
