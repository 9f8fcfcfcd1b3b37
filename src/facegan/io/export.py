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
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save
from torch import nn

from facegan.io.atomic import atomic_write
from facegan.io.checkpoints import CheckpointError
from facegan.nets import ARCHITECTURES, NetworkConfig, build_generator

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


LIMITS = {"latent_dim": (1, 1 << 16), "g_channels": (1, 1 << 13)}  # far beyond any real generator


def _checked_config(meta: dict[str, Any], config_path: Path) -> NetworkConfig:
    """The :class:`NetworkConfig` of an export's ``config.json``, every field's type and range checked."""
    where = repr(str(config_path))
    for name in ("arch", "image_size", "latent_dim", "g_channels"):
        if name not in meta:
            raise CheckpointError(f"{where} lacks the setting {name!r}")
    if not isinstance(meta["arch"], str) or meta["arch"] not in ARCHITECTURES:
        raise CheckpointError(f"{where}: `arch` must be one of {ARCHITECTURES}, but got {meta['arch']!r}")
    for name in ("image_size", "latent_dim", "g_channels"):
        value = meta[name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise CheckpointError(f"{where}: `{name}` must be an integer, but got {value!r}")
        low, high = LIMITS.get(name, (1, 1 << 16))
        if not low <= value <= high:
            raise CheckpointError(f"{where}: `{name}` must be in [{low}, {high}], but got {value}")
    try:
        return NetworkConfig(
            arch=meta["arch"], image_size=meta["image_size"], latent_dim=meta["latent_dim"],
            g_channels=meta["g_channels"],
        )  # fmt: skip
    except ValueError as error:
        raise CheckpointError(f"{where}: {error}") from None


def _shapes(config: NetworkConfig) -> dict[str, tuple[int, ...]]:
    """Every state-dict tensor shape of ``config``'s generator, from a build on the meta device (no memory)."""
    with torch.device("meta"):
        generator = build_generator(config)
    return {name: tuple(tensor.shape) for name, tensor in generator.state_dict().items()}


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
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise CheckpointError(f"{str(config_path)!r} is not valid JSON ({type(error).__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != "facegan-generator":
        raise CheckpointError(f"{str(config_path)!r} is not a facegan generator config")
    if meta.get("format_version") != EXPORT_FORMAT:
        raise CheckpointError(
            f"{str(config_path)!r} has format_version {meta.get('format_version')!r}; this facegan reads "
            f"{EXPORT_FORMAT}"
        )
    config = _checked_config(meta, config_path)
    expected = _shapes(config)
    try:
        with safe_open(str(weights_path), "pt") as file:  # the header only: no tensor is read yet
            stored = {name: tuple(file.get_slice(name).get_shape()) for name in file.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{str(weights_path)!r} is not a readable safetensors file ({error})") from None
    if stored != expected:
        wrong = sorted(set(stored) ^ set(expected)) or [k for k in expected if stored[k] != expected[k]]
        raise CheckpointError(
            f"{str(weights_path)!r} does not match the config in {CONFIG_FILE} ({len(wrong)} tensors differ, "
            f"e.g. {wrong[0]!r}: {stored.get(wrong[0])} stored, {expected.get(wrong[0])} expected)"
        )
    tensors = load_file(str(weights_path))
    generator = build_generator(config)
    try:
        generator.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        raise CheckpointError(
            f"{str(weights_path)!r} does not match the config in {CONFIG_FILE}: {error}"
        ) from None
    return generator.to(device).eval()
