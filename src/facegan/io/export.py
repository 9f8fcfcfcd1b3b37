"""Exporting the generator alone, and rebuilding it without Lightning.

Nothing here executes code from a file: exports are ``safetensors`` plus JSON.

An export is a folder with ``generator.safetensors`` (the sampling generator's weights, BatchNorm
standing statistics included, so ``eval()`` reproduces :meth:`FaceGAN.sample`) and ``config.json``
(architecture, sizes, format version). :func:`load_generator` rebuilds it as a plain ``nn.Module``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from facegan.io.atomic import atomic_write
from facegan.io.checkpoints import CheckpointError
from facegan.nets import NetworkConfig, build_generator

EXPORT_FORMAT = 1
WEIGHTS_FILE = "generator.safetensors"
CONFIG_FILE = "config.json"


def export_generator(model: Any, out: str | os.PathLike) -> Path:
    """Write ``model``'s sampling generator (EMA when the model has one) to the folder ``out``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"export folder {str(out)!r} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    model.sample(z=model.sample_z[:1])  # refresh the BatchNorm standing statistics for these weights
    generator = model.sampling_generator
    tensors = {name: t.detach().cpu().contiguous() for name, t in generator.state_dict().items()}
    config = model.net_config
    meta = {
        "format": "facegan-generator",
        "format_version": EXPORT_FORMAT,
        "arch": config.arch,
        "image_size": config.image_size,
        "latent_dim": config.latent_dim,
        "g_channels": config.g_channels,
        "output_range": [-1.0, 1.0],
    }
    with atomic_write(out / WEIGHTS_FILE) as file:
        file.write(save(tensors, metadata={"format": "facegan-generator"}))
    with atomic_write(out / CONFIG_FILE, "w") as file:
        file.write(json.dumps(meta, indent=2) + "\n")
    return out


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild an exported generator (no Lightning, no discriminator, no optimizer), in eval mode.

    ``G = load_generator("export/"); images = G(torch.randn(16, G.latent_dim))`` gives ``(16, 3, S, S)``
    images in ``[-1, 1]``.
    """
    folder = Path(path)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for needed in (config_path, weights_path):
        if not needed.is_file():
            raise CheckpointError(
                f"{str(folder)!r} is not a facegan export: {needed.name} is missing (make one with "
                "`python -m facegan export --ckpt CKPT --out DIR`)"
            )
    try:
        meta = json.loads(config_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{str(config_path)!r} is not valid JSON ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != "facegan-generator":
        raise CheckpointError(f"{str(config_path)!r} is not a facegan generator config")
    if meta.get("format_version") != EXPORT_FORMAT:
        raise CheckpointError(
            f"{str(config_path)!r} has format_version {meta.get('format_version')!r}; this facegan reads "
            f"{EXPORT_FORMAT}"
        )
    try:
        config = NetworkConfig(
            arch=meta["arch"],
            image_size=meta["image_size"],
            latent_dim=meta["latent_dim"],
            g_channels=meta["g_channels"],
        )
    except KeyError as error:
        raise CheckpointError(f"{str(config_path)!r} lacks the setting {error}") from None
    except ValueError as error:
        raise CheckpointError(f"{str(config_path)!r}: {error}") from None
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{str(weights_path)!r} is not a readable safetensors file ({error})") from None
    generator = build_generator(config)
    try:
        generator.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        raise CheckpointError(
            f"{str(weights_path)!r} does not match the config in {CONFIG_FILE}: {error}"
        ) from None
    return generator.to(device).eval()
