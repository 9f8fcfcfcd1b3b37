"""Reading checkpoints without executing anything from the file (``torch.load(weights_only=True)``);
importing this file needs no Lightning or torchmetrics (:func:`model_from_checkpoint` imports them)."""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch


class CheckpointError(ValueError):
    """A checkpoint or export that cannot be used (missing, foreign, tampered, incomplete)."""


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a Lightning checkpoint written by facegan without executing anything from it."""
    path = Path(path)
    if path.is_dir():
        from facegan.io.export import is_export_folder  # it imports this module

        if is_export_folder(path):
            raise CheckpointError(
                f"{str(path)!r} is an export folder (the sampling generator only, without D, optimizers "
                "or training state), not a checkpoint: sample from it (`python -m facegan generate --ckpt "
                f"{path}`, facegan.load_generator), or give the run's .ckpt file to resume, evaluate or export"
            )
        raise CheckpointError(f"checkpoint {str(path)!r} is a folder; give the .ckpt file inside it")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist or is not a file")
    try:
        # mmap: tensors are read when used, so checking a checkpoint's settings costs no full read
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
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
    if not isinstance(checkpoint, dict) or not {"state_dict", "hyper_parameters"} <= checkpoint.keys():
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not a FaceGAN checkpoint (no 'state_dict'/'hyper_parameters')"
        )
    return checkpoint


def model_from_checkpoint(
    path: str | os.PathLike, checkpoint: dict[str, Any] | None = None, trust_code: bool = False
) -> Any:
    """A :class:`facegan.FaceGAN` with the weights and buffers of ``path`` (safe loading), in eval mode;
    ``checkpoint``: ``load_checkpoint(path)`` if read already; ``trust_code``: allow a user's own
    networks, whose modules are imported and run (:mod:`facegan.nets.custom`)."""
    from facegan.nets.custom import refuse_untrusted
    from facegan.training.module import FaceGAN  # here: importing this file needs no torchmetrics/W&B

    checkpoint = load_checkpoint(path) if checkpoint is None else checkpoint
    hparams = public_hparams(checkpoint["hyper_parameters"])
    try:
        records = {role: hparams.get(role) for role in ("generator", "discriminator")}
        refuse_untrusted(records, f"checkpoint {str(path)!r}", trust_code)
    except ValueError as error:
        raise CheckpointError(str(error)) from None
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


def public_hparams(hparams: Mapping[str, Any] | None) -> dict[str, Any]:
    """A module's hyperparameters without the ``_class_path``/``_instantiator`` LightningCLI adds."""
    return {k: v for k, v in (hparams or {}).items() if not k.startswith("_")}


def plain(value: Any) -> Any:
    """A setting as configs write it (tuples as lists), for comparing or dumping values from anywhere."""
    return [plain(v) for v in value] if isinstance(value, list | tuple) else value


def evaluations_in(checkpoint: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``FIDMonitor`` history saved in a checkpoint's callback states (``[]`` if none); with several
    monitors, the one whose latest evaluation is at the highest step."""
    histories = [
        [dict(entry) for entry in state["history"] if isinstance(entry, Mapping)]
        for key, state in (checkpoint.get("callbacks") or {}).items()
        if isinstance(key, str) and key.startswith("FIDMonitor") and isinstance(state, Mapping)
        and isinstance(state.get("history"), list)
    ]  # fmt: skip
    histories = [history for history in histories if history]
    return max(histories, key=lambda history: history[-1].get("step") or 0, default=[])
