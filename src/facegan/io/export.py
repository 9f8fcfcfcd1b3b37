"""Exports: the sampling generator alone as a Hugging Face Hub model folder, written and read back.

``model.safetensors`` (the state dict, standing BatchNorm statistics included), ``config.json`` (format
version 2: a registry ``arch``; 3: a user's own class as ``class_path`` + ``init_args``, read only with
``trust_code``; 1: weights in ``generator.safetensors``), ``README.md`` (the card) and ``samples.png``.
Reading needs no Lightning, torchmetrics or W&B, never unpickles, and checks config.json and the weights'
header before building anything (a tampered config cannot make it allocate memory or spend minutes).
Each file is written atomically, config.json last: an interrupted export never leaves a config alone.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
import yaml
from huggingface_hub import ModelCard, ModelCardData, constants
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save
from torch import Tensor, nn

from facegan.images import grid_image
from facegan.io.atomic import WRITE_ERRNOS, WriteError, atomic_write
from facegan.io.checkpoints import CheckpointError, plain
from facegan.io.hub import REPO_ID, download, is_repo_id, upload
from facegan.nets import NetworkConfig, build_generator
from facegan.nets.custom import (
    build_from_record,
    checked_record,
    meta_shapes,
    refuse_untrusted,
    shape_differences,
)

__all__ = ["export_generator", "load_generator"]

FORMAT = "facegan-generator"
FORMAT_VERSION = 2  # a registry generator's; a user's own generator's is 3 (older facegans refuse it)
OWN_NETWORK_VERSION = 3
WEIGHTS_FILES = {1: "generator.safetensors", **dict.fromkeys((2, 3), constants.SAFETENSORS_SINGLE_FILE)}
WEIGHTS_FILE = WEIGHTS_FILES[FORMAT_VERSION]
CONFIG_FILE = constants.CONFIG_NAME
CARD_FILE = constants.REPOCARD_NAME
SAMPLES_FILE = "samples.png"
EXPORT_FILES = (SAMPLES_FILE, WEIGHTS_FILE, CARD_FILE, CONFIG_FILE)  # written in this order: config last
FIELDS = {  # config.json's settings, by format version (1 has 2's), each an int but the first
    FORMAT_VERSION: ("arch", "image_size", "latent_dim", "g_channels", "blocks_per_stage"),
    OWN_NETWORK_VERSION: ("generator", "image_size", "latent_dim"),
}
LIMITS = {"latent_dim": (1, 1 << 16), "g_channels": (1, 1 << 13)}  # far beyond any real generator
GRID_IMAGES = 16  # samples in the card's grid (4 x 4), from the model's fixed latents
TASK = "unconditional-image-generation"
MAKE_ONE = "(make one with `python -m facegan export --ckpt CKPT --out DIR`)"


# ----------------------------------------------------------------------------- reading
def is_export_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder that a facegan export wrote (any format version)."""
    folder = Path(path)
    if any((folder / name).is_file() for name in WEIGHTS_FILES.values()):
        return True
    try:
        return json.loads((folder / CONFIG_FILE).read_text()).get("format") == FORMAT
    except (OSError, UnicodeDecodeError, ValueError, AttributeError, RecursionError):
        return False


def read_config(folder: Path) -> tuple[NetworkConfig | dict[str, Any], Path]:
    """What the export in ``folder`` builds, every field's type and range checked (a
    :class:`NetworkConfig`, or the record of a user's own generator), and its weights file."""
    config_path = folder / CONFIG_FILE
    where = repr(str(config_path))
    if not config_path.is_file():
        raise CheckpointError(f"{str(folder)!r} is not a facegan export: {CONFIG_FILE} is missing {MAKE_ONE}")
    try:
        meta = json.loads(config_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise CheckpointError(f"{where} is not valid JSON ({type(error).__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{where} is not a facegan generator config")
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version not in WEIGHTS_FILES:
        raise CheckpointError(
            f"{where} has format_version {version!r}; this facegan reads "
            f"{', '.join(map(str, WEIGHTS_FILES))} (a newer facegan may read it)"
        )
    own = version == OWN_NETWORK_VERSION
    fields = FIELDS[OWN_NETWORK_VERSION if own else FORMAT_VERSION]
    meta = {"blocks_per_stage": 2, **meta}  # exports before r3gan have no such setting
    for name in fields:
        if name not in meta:
            raise CheckpointError(f"{where} lacks the setting {name!r}")
    for name in fields[1:]:  # `arch` is checked by NetworkConfig
        value = meta[name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise CheckpointError(f"{where}: `{name}` must be an integer, but got {value!r}")
        low, high = LIMITS.get(name, (1, 1 << 16))
        if not low <= value <= high:
            raise CheckpointError(f"{where}: `{name}` must be in [{low}, {high}], but got {value}")
    if own:
        checked_record(meta["generator"], f"{where}: `generator`")  # ValueError: see load_generator
        config: NetworkConfig | dict[str, Any] = meta["generator"]
    else:
        try:
            config = NetworkConfig(**{name: meta[name] for name in fields})
        except ValueError as error:
            raise CheckpointError(f"{where}: {error}") from None
    weights_path = folder / WEIGHTS_FILES[version]
    if not weights_path.is_file():
        raise CheckpointError(
            f"{str(folder)!r} is not a complete facegan export: {weights_path.name} is missing {MAKE_ONE}"
        )
    return config, weights_path


def _tensor_count(config: NetworkConfig) -> int:
    """How many tensors ``config``'s generator has, from two builds of one and two blocks per stage: a
    build costs time per block even on the meta device (a config.json asking for 65536 would take
    minutes), and the count is affine in ``blocks_per_stage``."""
    one, two = (
        len(meta_shapes(partial(build_generator, replace(config, blocks_per_stage=n)))) for n in (1, 2)
    )
    return one + (config.blocks_per_stage - 1) * (two - one)


def _check_values(tensors: dict[str, Tensor], generator: nn.Module, weights_path: Path) -> None:
    """Refuse a tensor of another kind than the generator's (int8 or bool for float weights), or one
    holding NaN or infinity (they load silently and give black images); float widths are cast."""
    for name, expected in generator.state_dict().items():
        tensor = tensors[name]
        if tensor.dtype != expected.dtype and not (
            expected.is_floating_point() and tensor.is_floating_point()
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


def _load_folder(folder: Path, trust_code: bool) -> nn.Module:
    """The generator of the export in ``folder``, on the CPU, in eval mode."""
    config, weights_path = read_config(folder)
    try:  # the header's shapes: no tensor is read
        with safe_open(str(weights_path), "pt") as file:
            stored = {name: tuple(file.get_slice(name).get_shape()) for name in file.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{str(weights_path)!r} is not a readable safetensors file ({error})") from None
    if isinstance(config, NetworkConfig):
        build: Callable[[], nn.Module] = partial(build_generator, config)
        expected_count = _tensor_count(config)  # before building what the config describes
        if len(stored) != expected_count:
            raise CheckpointError(
                f"{str(weights_path)!r} does not match the config in {CONFIG_FILE}: it holds {len(stored)} "
                f"tensors, but arch={config.arch!r} with blocks_per_stage={config.blocks_per_stage} has "
                f"{expected_count}"
            )
    else:  # a user's own generator: building it imports and runs the module its class_path names
        where = f"the export {str(folder)!r}"
        refuse_untrusted({"generator": config}, where, trust_code)
        build = partial(build_from_record, config, f"{where}: `generator`")
    expected = meta_shapes(build)
    if stored != expected:
        wrong = shape_differences(expected, stored)
        raise CheckpointError(
            f"{str(weights_path)!r} does not match the config in {CONFIG_FILE} ({len(wrong)} tensors differ, "
            f"e.g. {wrong[0]!r}: {stored.get(wrong[0])} stored, {expected.get(wrong[0])} expected)"
        )
    # safetensors' own reader: huggingface_hub.load_torch_model refuses format 1's metadata (not "pt")
    tensors = load_file(str(weights_path))
    generator = build()
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
    trust_code: bool = False,
) -> nn.Module:
    """Rebuild an exported generator (no Lightning, no discriminator, no optimizer), in eval mode, on
    ``device``: ``G(z)`` maps ``z`` ``(N, G.latent_dim)`` to the images ``(N, 3, S, S)`` in ``[-1, 1]``
    that ``FaceGAN.sample(z=z)`` gave before the export.

    Args:
        path_or_repo_id: an export folder (``python -m facegan export``; format 1 loads too), or a
            Hugging Face Hub model repo id ``"owner/name"`` holding one. Any ``Path``, and a string
            naming an existing path, is local (write ``./owner/name`` for a local folder).
        revision: Hub repos only: a branch, tag or commit (default: ``main``).
        token: Hub repos only, for private or gated repos; ``None`` uses ``HF_TOKEN`` or ``hf auth login``.
        trust_code: load an export of a user's own generator (format version 3), which imports the
            module its ``class_path`` names and runs the class's ``__init__``: only exports you trust.

    Raises:
        CheckpointError: not a (complete, untampered) facegan export, or a user's own generator
            without ``trust_code``.
        facegan.io.hub.HubError: a repo id that cannot be downloaded; the message says what is needed.

    Example: ``G = load_generator("user/faces-64"); images = G(torch.randn(16, G.latent_dim))``
    """
    if is_repo_id(path_or_repo_id):
        repo_id = str(path_or_repo_id)
        folder = download(repo_id, [CONFIG_FILE, WEIGHTS_FILE], revision=revision, token=token)
        where = f"Hub repo {repo_id!r} is not a facegan export: "
    else:
        folder, where = Path(path_or_repo_id), ""
        if folder.is_file():
            raise CheckpointError(
                f"{str(folder)!r} is a file, not an export folder: give the folder `python -m facegan export` "
                "wrote (a training checkpoint is read by facegan.io.checkpoints.model_from_checkpoint)"
            )
        if not folder.exists():
            raise CheckpointError(
                f"export folder {str(folder)!r} does not exist (a Hub repo is given as 'owner/name')"
            )
    try:
        return _load_folder(folder, trust_code).to(device)
    except ValueError as error:  # a CheckpointError, or the ValueError of a check of nets.custom's
        raise CheckpointError(f"{where}{error}") from None


# ----------------------------------------------------------------------------- writing
def _number(value: Any, spec: str) -> str | None:
    """``value`` formatted by ``spec``; ``None`` unless it is a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return format(value, spec)


def evaluation_rows(entry: Mapping[str, Any]) -> list[str]:
    """Markdown table rows (FID, then KID if present) of one ``FIDMonitor.history`` entry."""
    counts = " | ".join(
        _number(entry.get(key), spec) or "not recorded"
        for key, spec in (("num_fake", ",.0f"), ("num_real", ",.0f"), ("kimg", ".1f"))
    )
    fid = _number(entry.get("fid"), ".2f")
    kid, spread = _number(entry.get("kid"), ".4f"), _number(entry.get("kid_std"), ".4f")
    rows = [f"| FID | {fid} | {counts} |"] if fid else []
    if kid:
        rows.append(f"| KID | {kid}{f' ± {spread}' if spread else ''} | {counts} |")
    return rows


def model_card(model: Any, name: str, evaluations: Sequence[Mapping[str, Any]]) -> ModelCard:
    """The ``README.md`` of ``model``'s export as ``name`` (a Hub repo id or folder name): the generator,
    its hyperparameters, the last of ``evaluations`` (``FIDMonitor.history``) and how to load it."""
    hparams = dict(model.hparams)
    own = hparams.get("generator")  # a user's own generator's record, else the registry's `arch`
    arch, tag = (own["class_path"], "custom") if own else (model.net_config.arch, model.net_config.arch)
    image_size, latent_dim = hparams["image_size"], hparams["latent_dim"]
    trust = (", trust_code=True", " --trust-code") if own else ("", "")  # it imports the class's module
    seen = int(model.images_seen)
    parameters = sum(p.numel() for p in model.sampling_generator.parameters())
    ema = hparams.get("ema_kimg")
    weights = "the EMA generator" + f" (half-life {ema} kimg)" if ema is not None else "the trained generator"
    rows = evaluation_rows(evaluations[-1]) if evaluations else []
    size = f"{image_size} x {image_size}"
    evaluation = "No FID was recorded: the checkpoint holds no `FIDMonitor` evaluation."
    if rows:
        evaluation = "\n".join(
            [
                "Measured during training by `facegan.FIDMonitor` (torchmetrics, 2048 Inception features,",
                "TensorFlow-compatible resize), the latest evaluation:\n",
                "| Metric | Value | Generated images | Real images | At kimg |\n|---|---|---|---|---|",
                *rows,
            ]
        )
    shown = min(len(model.sample_z), GRID_IMAGES)
    recipe = yaml.safe_dump({"model": {k: plain(v) for k, v in hparams.items()}}, sort_keys=False)
    body = f"""
# {name}

A facegan GAN generator of faces: `{arch}` at {size} px,
latent size {latent_dim}, trained for {seen / 1000:.1f} kimg.

![Samples]({SAMPLES_FILE})

{shown} samples from the run's fixed latents (`sample_z`, `sample_seed` {hparams.get("sample_seed")}), the
latents of its training grids.

## Model

| | |
|---|---|
| Architecture | `{arch}` |
| Resolution | {size} px, RGB, values in [-1, 1] |
| Latent size | {latent_dim} (standard normal `z`) |
| Generator parameters | {parameters:,} |
| Weights | {weights} |
| Trained | {seen / 1000:.1f} kimg ({seen:,} images shown to the discriminator) |

## Evaluation

{evaluation}

## Recipe

The model settings it was trained with (`facegan.FaceGAN` arguments, `--model.*` on the command line):

```yaml
{recipe.rstrip()}
```

## Usage

```python
import torch
import facegan

G = facegan.load_generator("{name}"{trust[0]})  # a Hub repo id or a local export folder
with torch.no_grad():
    images = G(torch.randn(16, G.latent_dim))  # (16, 3, {image_size}, {image_size}) in [-1, 1]
```

or from the shell: `python -m facegan generate --ckpt {name}{trust[1]} --num 64 --out grid.png`.
"""
    data = ModelCardData(
        library_name="facegan", pipeline_tag=TASK, tags=["facegan", "gan", TASK, "faces", tag]
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


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


def export_generator(
    model: Any,
    out: str | os.PathLike,
    *,
    evaluations: Sequence[Mapping[str, Any]] = (),
    push_to_hub: str | None = None,
    private: bool | None = None,
    token: str | None = None,
) -> Path:
    """Write ``model``'s (a :class:`facegan.FaceGAN`'s) sampling generator, EMA when it has one, as a
    Hub model folder ``out``, and return ``out``.

    Args:
        out: the folder (created if needed). A folder of an earlier export is updated; one holding a
            ``README.md`` or ``config.json`` of something else is refused.
        evaluations: ``FIDMonitor.history`` entries (``python -m facegan export`` passes the
            checkpoint's); the model card reports the last one's FID and KID with their image counts.
        push_to_hub: a Hub repo id (``"user/name"``) to upload the folder to (created if needed).
        private: create the repo private (``None``: the Hub's default); an existing repo is unchanged.
        token: Hub token with write access; ``None`` uses ``HF_TOKEN`` or the saved ``hf auth login``.
    """
    out = Path(out)
    if push_to_hub is not None and REPO_ID.fullmatch(push_to_hub) is None:
        raise ValueError(f"--push-to-hub must be a Hub repo id 'owner/name', but got {push_to_hub!r}")
    _prepare_folder(out)
    z = model.sample_z[:GRID_IMAGES]
    grid = io.BytesIO()
    grid_image(model.sample(z=z), nrow=math.ceil(math.sqrt(len(z)))).save(grid, format="PNG")
    generator = model.standing_generator()  # as sample() runs it: standing BatchNorm statistics
    tensors = {name: t.detach().cpu().contiguous() for name, t in generator.state_dict().items()}
    own = model.hparams.get("generator") is not None  # a user's own generator: version 3
    version, source = (
        (OWN_NETWORK_VERSION, model.hparams) if own else (FORMAT_VERSION, vars(model.net_config))
    )
    built = {name: source[name] for name in FIELDS[version]}
    config = {"format": FORMAT, "format_version": version, **built, "output_range": [-1.0, 1.0]}
    contents = {
        SAMPLES_FILE: grid.getvalue(),
        WEIGHTS_FILE: save(tensors, metadata={"format": "pt"}),  # "pt": what Hub/transformers loaders expect
        CARD_FILE: str(model_card(model, push_to_hub or out.resolve().name, evaluations)).encode("utf-8"),
        CONFIG_FILE: (json.dumps(config, indent=2) + "\n").encode(),
    }
    for name in EXPORT_FILES:  # config.json last
        with atomic_write(out / name) as file:
            file.write(contents[name])
    if push_to_hub is not None:
        upload(out, push_to_hub, list(EXPORT_FILES), private=private, token=token)
    return out
