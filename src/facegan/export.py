"""Loading checkpoints safely, exporting the generator alone, and rebuilding it without Lightning.

Nothing here executes code from a file: checkpoints are read with ``torch.load(weights_only=True)``
(tensors and plain containers only) and exports are ``safetensors`` plus JSON.

An export is a folder with ``generator.safetensors`` (the sampling generator's weights, BatchNorm
standing statistics included, so ``eval()`` reproduces :meth:`FaceGAN.sample`) and ``config.json``
(architecture, sizes, format version). :func:`load_generator` rebuilds it as a plain ``nn.Module``.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from facegan.nets import NetworkConfig, build_generator

EXPORT_FORMAT = 1
WEIGHTS_FILE = "generator.safetensors"
CONFIG_FILE = "config.json"


class CheckpointError(ValueError):
    """A checkpoint or export that cannot be used (missing, foreign, tampered, incomplete)."""


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a Lightning checkpoint written by facegan without executing anything from it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist or is not a file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"checkpoint {str(path)!r} holds objects other than tensors and plain containers, so it was "
            "not loaded (loading it could execute code). facegan checkpoints never need that: use a "
            f"checkpoint written by facegan, or export one with `python -m facegan export`. ({error})"
        ) from None
    except Exception as error:  # truncated, not a torch file at all, ...
        raise CheckpointError(
            f"checkpoint {str(path)!r} is unreadable ({type(error).__name__}: {error}); it may be "
            "truncated or not a checkpoint"
        ) from None
    if (
        not isinstance(checkpoint, dict)
        or "state_dict" not in checkpoint
        or "hyper_parameters" not in checkpoint
    ):
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not a FaceGAN checkpoint (no 'state_dict'/'hyper_parameters')"
        )
    return checkpoint


def model_from_checkpoint(path: str | os.PathLike) -> Any:
    """A :class:`facegan.FaceGAN` with the weights and buffers of ``path`` (safe loading), in eval mode."""
    from facegan.training.module import FaceGAN  # here: export.py must stay importable without Lightning deps

    checkpoint = load_checkpoint(path)
    hparams = {k: v for k, v in checkpoint["hyper_parameters"].items() if not k.startswith("_")}
    for key in ("g_betas", "d_betas"):
        if key in hparams:
            hparams[key] = tuple(hparams[key])
    try:
        model = FaceGAN(**hparams)
        model.load_state_dict(checkpoint["state_dict"], strict=True)
    except (TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"checkpoint {str(path)!r} does not match FaceGAN: {error}") from None
    model.on_load_checkpoint(checkpoint)
    return model.eval()


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
    tmp_weights, tmp_config = out / f".{WEIGHTS_FILE}.tmp", out / f".{CONFIG_FILE}.tmp"
    save_file(tensors, str(tmp_weights), metadata={"format": "facegan-generator"})
    tmp_config.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp_weights, out / WEIGHTS_FILE)
    os.replace(tmp_config, out / CONFIG_FILE)
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
