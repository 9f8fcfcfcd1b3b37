"""The ``README.md`` model card of an export: what the generator is, how it was trained, how good it is.

The metadata block comes from ``huggingface_hub.ModelCardData`` (library, task, tags: what the Hub
indexes); the body is Markdown: architecture, resolution, latent size, kimg trained, the latest
FID (and KID, when the evaluation has one) with their image counts, the recipe (the model's
hyperparameters as YAML) and how to load it. FID/KID come from ``FIDMonitor.history`` entries, which a
checkpoint keeps in its callback states (:func:`evaluations_in`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from huggingface_hub import ModelCard, ModelCardData

TASK = "unconditional-image-generation"


def evaluations_in(checkpoint: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``FIDMonitor`` history saved in a Lightning checkpoint's callback states (``[]`` if none).

    With several monitors, the history whose latest evaluation is at the highest step is returned.
    """
    histories = [
        [dict(entry) for entry in state["history"] if isinstance(entry, Mapping)]
        for key, state in (checkpoint.get("callbacks") or {}).items()
        if isinstance(key, str) and key.startswith("FIDMonitor") and isinstance(state, Mapping)
        and isinstance(state.get("history"), list)
    ]  # fmt: skip
    histories = [history for history in histories if history]
    return max(histories, key=lambda history: history[-1].get("step") or 0, default=[])


def _count(value: Any) -> str:
    return (
        f"{int(value):,}"
        if isinstance(value, int | float) and not isinstance(value, bool)
        else "not recorded"
    )


def _number(value: Any, digits: int) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return f"{value:.{digits}f}"


def evaluation_rows(entry: Mapping[str, Any]) -> list[str]:
    """Markdown table rows (FID, then KID if present) of one ``FIDMonitor.history`` entry."""
    kimg = _number(entry.get("kimg"), 1) or "not recorded"
    counts = f"{_count(entry.get('num_fake'))} | {_count(entry.get('num_real'))} | {kimg}"
    rows = []
    fid = _number(entry.get("fid"), 2)
    if fid is not None:
        rows.append(f"| FID | {fid} | {counts} |")
    kid = _number(entry.get("kid"), 4)
    if kid is not None:
        spread = _number(entry.get("kid_std"), 4)
        rows.append(f"| KID | {kid}{f' ± {spread}' if spread else ''} | {counts} |")
    return rows


def _plain(value: Any) -> Any:
    """``value`` with tuples as lists (YAML without Python tags)."""
    return [_plain(item) for item in value] if isinstance(value, tuple | list) else value


def model_card(model: Any, name: str, evaluations: Sequence[Mapping[str, Any]], samples: str) -> ModelCard:
    """The model card of ``model``'s sampling generator, exported as ``name``.

    Args:
        model: the :class:`facegan.FaceGAN` exported.
        name: what the card calls the model and loads in its example (a Hub repo id or a folder name).
        evaluations: ``FIDMonitor.history`` entries; the last one is reported.
        samples: file name of the sample grid beside the card.
    """
    hparams = dict(model.hparams)
    own = hparams.get("generator")  # a user's own generator's record, else the registry's `arch`
    arch, tag = (own["class_path"], "custom") if own else (model.net_config.arch, model.net_config.arch)
    image_size, latent_dim = hparams["image_size"], hparams["latent_dim"]
    trust = (", trust_code=True", " --trust-code") if own else ("", "")  # it imports the class's module
    seen = int(model.images_seen)
    generator = model.sampling_generator
    parameters = sum(p.numel() for p in generator.parameters())
    ema = hparams.get("ema_kimg")
    weights = "the EMA generator" + f" (half-life {ema} kimg)" if ema is not None else "the trained generator"
    rows = evaluation_rows(evaluations[-1]) if evaluations else []
    size = f"{image_size} x {image_size}"
    if rows:
        evaluation = "\n".join(
            [
                "Measured during training by `facegan.FIDMonitor` (torchmetrics, 2048 Inception features,",
                "TensorFlow-compatible resize), the latest evaluation:",
                "",
                "| Metric | Value | Generated images | Real images | At kimg |",
                "|---|---|---|---|---|",
                *rows,
            ]
        )
    else:
        evaluation = "No FID was recorded: the checkpoint holds no `FIDMonitor` evaluation."
    recipe = yaml.safe_dump({"model": {k: _plain(v) for k, v in hparams.items()}}, sort_keys=False)
    shown = min(len(model.sample_z), 16)
    body = f"""
# {name}

A facegan GAN generator of faces: `{arch}` at {size} px,
latent size {latent_dim}, trained for {seen / 1000:.1f} kimg.

![Samples]({samples})

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
