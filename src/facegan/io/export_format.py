"""What an export folder holds, and how its ``config.json`` is read (checked before anything is built).

An export is a Hugging Face Hub model folder, with the Hub's file names (``huggingface_hub.constants``)::

    model.safetensors   the sampling generator's state dict (the EMA one when trained with one),
                        BatchNorm standing statistics included, so eval() reproduces FaceGAN.sample
    config.json         format, format_version, arch, image_size, latent_dim, g_channels, output_range
    README.md           the model card (:mod:`facegan.io.model_card`)
    samples.png         the sample grid the card shows

Format version 1 (the first export, before the Hub layout) held ``generator.safetensors`` and
``config.json`` only; it is still read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from huggingface_hub import constants

from facegan.io.checkpoints import CheckpointError
from facegan.nets import ARCHITECTURES, NetworkConfig

FORMAT = "facegan-generator"
FORMAT_VERSION = 2
WEIGHTS_FILES = {1: "generator.safetensors", 2: constants.SAFETENSORS_SINGLE_FILE}  # by format_version
WEIGHTS_FILE = WEIGHTS_FILES[FORMAT_VERSION]
CONFIG_FILE = constants.CONFIG_NAME
CARD_FILE = constants.REPOCARD_NAME
SAMPLES_FILE = "samples.png"
# Written in this order: config.json last, so an interrupted export never names weights it lacks.
EXPORT_FILES = (SAMPLES_FILE, WEIGHTS_FILE, CARD_FILE, CONFIG_FILE)
LIMITS = {"latent_dim": (1, 1 << 16), "g_channels": (1, 1 << 13)}  # far beyond any real generator


def config_dict(config: NetworkConfig) -> dict[str, Any]:
    """The ``config.json`` of a generator built from ``config``."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": config.arch,
        "image_size": config.image_size,
        "latent_dim": config.latent_dim,
        "g_channels": config.g_channels,
        "blocks_per_stage": config.blocks_per_stage,
        "output_range": [-1.0, 1.0],
    }


def is_export_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder that a facegan export wrote (any format version)."""
    folder = Path(path)
    if any((folder / name).is_file() for name in WEIGHTS_FILES.values()):
        return True
    try:
        return json.loads((folder / CONFIG_FILE).read_text()).get("format") == FORMAT
    except (OSError, UnicodeDecodeError, ValueError, AttributeError, RecursionError):
        return False


def _checked_config(meta: dict[str, Any], config_path: Path) -> NetworkConfig:
    """The :class:`NetworkConfig` of an export's ``config.json``, every field's type and range checked."""
    where = repr(str(config_path))
    for name in ("arch", "image_size", "latent_dim", "g_channels"):
        if name not in meta:
            raise CheckpointError(f"{where} lacks the setting {name!r}")
    if not isinstance(meta["arch"], str) or meta["arch"] not in ARCHITECTURES:
        raise CheckpointError(f"{where}: `arch` must be one of {ARCHITECTURES}, but got {meta['arch']!r}")
    meta = {"blocks_per_stage": 2, **meta}  # exports before r3gan have no such setting
    for name in ("image_size", "latent_dim", "g_channels", "blocks_per_stage"):
        value = meta[name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise CheckpointError(f"{where}: `{name}` must be an integer, but got {value!r}")
        low, high = LIMITS.get(name, (1, 1 << 16))
        if not low <= value <= high:
            raise CheckpointError(f"{where}: `{name}` must be in [{low}, {high}], but got {value}")
    try:
        return NetworkConfig(
            arch=meta["arch"], image_size=meta["image_size"], latent_dim=meta["latent_dim"],
            g_channels=meta["g_channels"], blocks_per_stage=meta["blocks_per_stage"],
        )  # fmt: skip
    except ValueError as error:
        raise CheckpointError(f"{where}: {error}") from None


def read_config(folder: Path) -> tuple[NetworkConfig, Path]:
    """The checked network config of the export in ``folder`` and the path of its weights file."""
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(
            f"{str(folder)!r} is not a facegan export: {CONFIG_FILE} is missing (make one with "
            "`python -m facegan export --ckpt CKPT --out DIR`)"
        )
    try:
        meta = json.loads(config_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise CheckpointError(f"{str(config_path)!r} is not valid JSON ({type(error).__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{str(config_path)!r} is not a facegan generator config")
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version not in WEIGHTS_FILES:
        raise CheckpointError(
            f"{str(config_path)!r} has format_version {version!r}; this facegan reads "
            f"{', '.join(map(str, WEIGHTS_FILES))} (a newer facegan may read it)"
        )
    config = _checked_config(meta, config_path)
    weights_path = folder / WEIGHTS_FILES[version]
    if not weights_path.is_file():
        raise CheckpointError(
            f"{str(folder)!r} is not a complete facegan export: {weights_path.name} is missing (make one "
            "with `python -m facegan export --ckpt CKPT --out DIR`)"
        )
    return config, weights_path
