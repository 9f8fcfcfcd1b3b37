"""A checkpoint's recipe: resuming or evaluating with other settings than the ones that trained it.

Lightning checkpoints carry the model's and the data module's hyperparameters. Before ``fit``,
``validate`` or ``test`` use a checkpoint, :func:`recipe_changes` lists every setting that differs
between the checkpoint and the command line, so a resume does not silently continue another
recipe (a different augmentation, learning rate, loss, data root or image size) and a checkpoint of
another architecture fails with one line instead of a ``load_state_dict`` traceback.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

# How a run executes, not what it learns: these may change on resume.
EXECUTION = {
    "model": {"channels_last", "fused_adam", "compile"},
    "data": {
        "num_workers",
        "pin_memory",
        "persistent_workers",
        "cache",
        "cache_dir",
        "device_resident",
        "resident_budget_gb",
        "skip_bad_images",
        "max_skipped_fraction",
    },  # fmt: skip
}


def plain(value: Any) -> Any:
    """A setting as configs write it (tuples as lists), for comparing values from anywhere."""
    return [plain(v) for v in value] if isinstance(value, list | tuple) else value


def _defaults(cls: type) -> dict[str, Any]:
    return {
        name: p.default
        for name, p in inspect.signature(cls.__init__).parameters.items()  # type: ignore[misc]
        if p.default is not inspect.Parameter.empty
    }


def recipe_changes(
    checkpoint: Mapping[str, Any], section: str, saved_key: str, now: Mapping[str, Any], cls: type
) -> list[tuple[str, Any, Any]]:
    """``(name, value in the checkpoint, value now)`` for every recipe setting of ``section`` that differs.

    A setting the checkpoint predates counts as its default (``cls.__init__``'s).
    """
    saved = {k: v for k, v in (checkpoint.get(saved_key) or {}).items() if not k.startswith("_")}
    if not saved:  # a checkpoint without them (not written by LightningCLI): nothing to compare
        return []
    defaults = _defaults(cls)
    changes = []
    for name in sorted(set(now) - EXECUTION[section]):
        if name.startswith("_"):
            continue
        before, after = plain(saved.get(name, defaults.get(name))), plain(now[name])
        if before != after:
            changes.append((name, saved.get(name, defaults.get(name)), now[name]))
    return changes


def describe(section: str, name: str, before: Any, after: Any, where: str = "the checkpoint") -> str:
    """``"--<section>.<name>: A in the checkpoint, B now"``."""
    return f"--{section}.{name}: {plain(before)!r} in {where}, {plain(after)!r} now"


def precision_name(value: Any) -> str:
    """Lightning's unified name of a ``precision`` setting (``16`` -> ``"16-mixed"``, ``None`` -> ``"32-true"``)."""
    value = "32" if value is None else str(value)
    return {"32": "32-true", "64": "64-true", "16": "16-mixed", "bf16": "bf16-mixed"}.get(value, value)
