"""The settings a CLI run gives its loggers: the resolved config, every setting once, one key each.

Lightning would also log the module's and data module's ``hparams`` (flat: ``arch``, ``batch_size``,
...) beside the CLI's sections (``model.arch``, ``data.batch_size``), so the CLI turns that off
(``Trainer(enable_autolog_hparams=False)``) and logs this instead. Lists of classes (``trainer.callbacks``,
a list of loggers) become mappings keyed by class name, so W&B shows each callback setting as a key of its
own (``trainer.callbacks.FIDMonitor.init_args.num_fake``), not one JSON string for the whole list.
"""

from __future__ import annotations

from typing import Any

import yaml
from jsonargparse import ArgumentParser, Namespace
from lightning_utilities.core.imports import RequirementCache

SKIP_UNSET = RequirementCache("jsonargparse>=4.49")  # dump(skip_unset=...); before: skip_none


def logged_config(parser: ArgumentParser, config: Namespace) -> dict[str, Any]:
    """The resolved ``config`` as nested plain values, ``None`` settings included (as in ``config.yaml``)."""
    keep_none = "skip_unset" if SKIP_UNSET else "skip_none"
    settings = yaml.safe_load(parser.dump(config, **{keep_none: False}))
    settings.pop("config", None)  # the paths of the --config files, not settings
    return keyed_by_class(settings)


def keyed_by_class(value: Any) -> Any:
    """``[{"class_path": "a.B", ...}, ...]`` -> ``{"B": {"class_path": "a.B", ...}, ...}``, recursively.

    A second instance of a class gets ``B_2`` (then ``B_3``, ...), in list order.

    Example:
        >>> keyed_by_class({"callbacks": [{"class_path": "facegan.FIDMonitor", "init_args": {"seed": 0}}]})
        {'callbacks': {'FIDMonitor': {'class_path': 'facegan.FIDMonitor', 'init_args': {'seed': 0}}}}
    """
    if isinstance(value, dict):
        return {key: keyed_by_class(item) for key, item in value.items()}
    if not (isinstance(value, list) and value):
        return value
    if not all(isinstance(item, dict) and isinstance(item.get("class_path"), str) for item in value):
        return [keyed_by_class(item) for item in value]
    keyed: dict[str, Any] = {}
    for item in value:
        name = item["class_path"].rsplit(".", 1)[-1]
        key, n = name, 1
        while key in keyed:
            n += 1
            key = f"{name}_{n}"
        keyed[key] = keyed_by_class(item)
    return keyed
