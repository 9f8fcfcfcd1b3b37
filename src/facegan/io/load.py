"""``facegan.load_generator``: an exported generator as a plain ``nn.Module``, from a folder or the Hub.

Needs neither Lightning nor torchmetrics nor W&B. The export's ``config.json`` and the weights file's
header are checked before anything is built (a tampered config cannot make it allocate memory, nor
spend minutes building), the weights' kinds and values before they are loaded (no NaN, no int8 or bool
cast into float weights), and nothing from the files is executed (safetensors + JSON).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import Tensor, nn

from facegan.io.checkpoints import CheckpointError
from facegan.io.export_format import CONFIG_FILE, WEIGHTS_FILE, read_config
from facegan.io.hub import download, is_repo_id
from facegan.nets import NetworkConfig, build_generator


def _shapes(config: NetworkConfig) -> dict[str, tuple[int, ...]]:
    """Every state-dict tensor shape of ``config``'s generator, from a build on the meta device (no memory)."""
    with torch.device("meta"):
        generator = build_generator(config)
    return {name: tuple(tensor.shape) for name, tensor in generator.state_dict().items()}


def _tensor_count(config: NetworkConfig) -> int:
    """How many tensors ``config``'s generator has, from two builds of one and two blocks per stage.

    A build costs time in proportion to its blocks, even on the meta device (about 7 ms per
    ``blocks_per_stage`` of a 32 px r3gan here): a config.json asking for 65536 would take minutes
    before the header comparison could refuse it. The count is affine in ``blocks_per_stage``
    (constant for families without blocks), so two tiny builds give it for any value.
    """
    one, two = (len(_shapes(replace(config, blocks_per_stage=n))) for n in (1, 2))
    return one + (config.blocks_per_stage - 1) * (two - one)


def _header(weights_path: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape in the safetensors file's header (no tensor is read)."""
    try:
        with safe_open(str(weights_path), "pt") as file:
            return {name: tuple(file.get_slice(name).get_shape()) for name in file.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{str(weights_path)!r} is not a readable safetensors file ({error})") from None


def _check_values(tensors: dict[str, Tensor], generator: nn.Module, weights_path: Path) -> None:
    """Refuse a tensor of another kind than the generator's (int8 or bool for float weights), or one
    holding NaN or infinity (they load silently and give black images). Float16, bfloat16, float32
    and float64 weights are cast on loading."""
    for name, expected in generator.state_dict().items():
        tensor = tensors[name]
        if expected.is_floating_point() != tensor.is_floating_point() or (
            not expected.is_floating_point() and tensor.dtype != expected.dtype
        ):
            kind = "a floating-point tensor" if expected.is_floating_point() else str(expected.dtype)
            raise CheckpointError(
                f"{str(weights_path)!r}: tensor {name!r} is {tensor.dtype}, but must be {kind}; the file "
                "is damaged or not a facegan export (re-export it from its checkpoint)"
            )
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(
                f"{str(weights_path)!r}: tensor {name!r} holds NaN or infinite values, which give blank "
                "images (the training diverged, or the file is damaged)"
            )


def _load_folder(folder: Path) -> nn.Module:
    """The generator of the export in ``folder``, on the CPU, in eval mode."""
    config, weights_path = read_config(folder)
    stored = _header(weights_path)
    expected_count = _tensor_count(config)
    if len(stored) != expected_count:  # before building the net the config describes: see _tensor_count
        raise CheckpointError(
            f"{str(weights_path)!r} does not match the config in {CONFIG_FILE}: it holds {len(stored)} "
            f"tensors, but arch={config.arch!r} with blocks_per_stage={config.blocks_per_stage} has "
            f"{expected_count}"
        )
    expected = _shapes(config)
    if stored != expected:
        wrong = sorted(set(stored) ^ set(expected)) or [k for k in expected if stored[k] != expected[k]]
        raise CheckpointError(
            f"{str(weights_path)!r} does not match the config in {CONFIG_FILE} ({len(wrong)} tensors differ, "
            f"e.g. {wrong[0]!r}: {stored.get(wrong[0])} stored, {expected.get(wrong[0])} expected)"
        )
    # safetensors' own reader: huggingface_hub.load_torch_model refuses format 1's metadata (not "pt")
    tensors = load_file(str(weights_path))
    generator = build_generator(config)
    _check_values(tensors, generator, weights_path)
    try:
        generator.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        raise CheckpointError(
            f"{str(weights_path)!r} does not match the config in {CONFIG_FILE}: {error}"
        ) from None
    return generator.eval()


def load_generator(
    path_or_repo_id: str | os.PathLike,
    device: str | torch.device = "cpu",
    *,
    revision: str | None = None,
    token: str | None = None,
) -> nn.Module:
    """Rebuild an exported generator (no Lightning, no discriminator, no optimizer), in eval mode.

    Args:
        path_or_repo_id: an export folder (``python -m facegan export``), or a Hugging Face Hub model
            repo id ``"owner/name"`` holding one. A string that names an existing path, and any
            ``Path``, is local; otherwise ``owner/name`` is a repo id (write ``./owner/name`` for a
            local folder that must not be taken for one). Format-1 exports (``generator.safetensors``)
            load as well.
        device: where the generator goes.
        revision: Hub repos only: a branch, tag or commit (default: ``main``).
        token: Hub repos only: for private or gated repos; ``None`` uses ``HF_TOKEN`` or the saved
            ``hf auth login``.

    Returns:
        The generator: ``G(z)`` maps ``z`` ``(N, G.latent_dim)`` to images ``(N, 3, S, S)`` in
        ``[-1, 1]``, the images ``FaceGAN.sample(z=z)`` gave before the export.

    Raises:
        CheckpointError: the folder is not a (complete, untampered) facegan export.
        facegan.io.hub.HubError: a repo id that cannot be downloaded (no network, no token, no such
            repo); the message names the repo and what is needed.

    Example:
        ``G = load_generator("user/faces-64"); images = G(torch.randn(16, G.latent_dim))``
    """
    if is_repo_id(path_or_repo_id):
        repo_id = str(path_or_repo_id)
        folder = download(repo_id, [CONFIG_FILE, WEIGHTS_FILE], revision=revision, token=token)
        try:
            generator = _load_folder(folder)
        except CheckpointError as error:
            raise CheckpointError(f"Hub repo {repo_id!r} is not a facegan export: {error}") from None
        return generator.to(device)
    folder = Path(path_or_repo_id)
    if folder.is_file():
        raise CheckpointError(
            f"{str(folder)!r} is a file, not an export folder: give the folder `python -m facegan export` "
            "wrote (a training checkpoint is read by facegan.io.checkpoints.model_from_checkpoint)"
        )
    if not folder.exists():
        raise CheckpointError(
            f"export folder {str(folder)!r} does not exist (a Hub repo is given as 'owner/name')"
        )
    return _load_folder(folder).to(device)
