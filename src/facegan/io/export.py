"""Exporting the generator alone as a Hugging Face Hub model folder, and publishing it.

``export_generator(model, "generator/")`` writes the folder :mod:`facegan.io.export_format` describes
(``model.safetensors``, ``config.json``, a ``README.md`` model card and ``samples.png``); with
``push_to_hub="user/name"`` it also uploads it. :func:`facegan.load_generator`
(:mod:`facegan.io.load`) rebuilds the generator from such a folder or Hub repo. Nothing here or there
executes code from a file: exports are safetensors, JSON, Markdown and PNG.

Each file is written atomically (:func:`facegan.io.atomic.atomic_write`) with the usual permissions
(``0o666 & ~umask``), ``config.json`` last: an interrupted export never leaves a config without weights.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from safetensors.torch import save

from facegan.io.atomic import WRITE_ERRNOS, WriteError, atomic_write
from facegan.io.checkpoints import CheckpointError
from facegan.io.export_format import (
    CARD_FILE,
    CONFIG_FILE,
    EXPORT_FILES,
    SAMPLES_FILE,
    WEIGHTS_FILE,
    config_dict,
    is_export_folder,
)
from facegan.io.load import load_generator

__all__ = ["export_generator", "load_generator"]

GRID_IMAGES = 16  # samples in the card's grid (4 x 4), from the model's fixed latents


def _prepare_folder(out: Path) -> None:
    """Create ``out``; refuse a file there, or a folder whose README/config another tool wrote."""
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"export folder {str(out)!r} exists and is not a folder")
    if out.is_dir() and not is_export_folder(out):
        foreign = [name for name in EXPORT_FILES if (out / name).exists()]
        if foreign:
            raise CheckpointError(
                f"export folder {str(out)!r} already holds {', '.join(foreign)} that no facegan export "
                "wrote; choose a new or empty folder for --out (nothing was written)"
            )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        if error.errno in WRITE_ERRNOS:
            raise WriteError(out, error) from error
        raise


def _grid_png(model: Any) -> bytes:
    """A PNG grid of the sampling generator's images of the first :data:`GRID_IMAGES` fixed latents."""
    from facegan.images import grid_image

    z = model.sample_z[:GRID_IMAGES]
    buffer = io.BytesIO()
    grid_image(model.sample(z=z), nrow=math.ceil(math.sqrt(len(z)))).save(buffer, format="PNG")
    return buffer.getvalue()


def export_generator(
    model: Any,
    out: str | os.PathLike,
    *,
    evaluations: Sequence[Mapping[str, Any]] = (),
    push_to_hub: str | None = None,
    private: bool | None = None,
    token: str | None = None,
) -> Path:
    """Write ``model``'s sampling generator (EMA when the model has one) as a Hub model folder ``out``.

    Args:
        model: a :class:`facegan.FaceGAN`.
        out: the folder (created if needed). A folder of an earlier export is updated; one holding a
            ``README.md`` or ``config.json`` of something else is refused.
        evaluations: ``FIDMonitor.history`` entries; the model card reports the last one (FID, and
            KID when present, with their image counts). ``python -m facegan export`` passes the
            history saved in the checkpoint.
        push_to_hub: a Hub repo id (``"user/name"``) to upload the folder to (created if needed).
        private: create the repo private (``None``: the Hub's default); an existing repo is unchanged.
        token: Hub token with write access; ``None`` uses ``HF_TOKEN`` or the saved ``hf auth login``.

    Returns:
        The folder written.

    Example:
        >>> import tempfile, torch, facegan
        >>> gan = facegan.FaceGAN(image_size=32, latent_dim=8, g_channels=8, d_channels=8)
        >>> folder = export_generator(gan, tempfile.mkdtemp())
        >>> G = facegan.load_generator(folder)
        >>> G(torch.randn(2, G.latent_dim)).shape
        torch.Size([2, 3, 32, 32])
    """
    from facegan.io.model_card import model_card

    out = Path(out)
    if push_to_hub is not None:
        from facegan.io.hub import REPO_ID

        if REPO_ID.fullmatch(push_to_hub) is None:
            raise ValueError(f"--push-to-hub must be a Hub repo id 'owner/name', but got {push_to_hub!r}")
    _prepare_folder(out)
    grid = _grid_png(model)
    generator = model.standing_generator()  # as sample() runs it: standing BatchNorm statistics
    tensors = {name: t.detach().cpu().contiguous() for name, t in generator.state_dict().items()}
    card = model_card(model, push_to_hub or out.resolve().name, evaluations, SAMPLES_FILE)
    contents = {
        SAMPLES_FILE: grid,
        WEIGHTS_FILE: save(tensors, metadata={"format": "pt"}),  # "pt": what Hub/transformers loaders expect
        CARD_FILE: str(card).encode("utf-8"),
        CONFIG_FILE: (json.dumps(config_dict(model.net_config), indent=2) + "\n").encode(),
    }
    for name in EXPORT_FILES:  # config.json last
        with atomic_write(out / name) as file:
            file.write(contents[name])
    if push_to_hub is not None:
        from facegan.io.hub import upload

        upload(out, push_to_hub, list(EXPORT_FILES), private=private, token=token)
    return out
