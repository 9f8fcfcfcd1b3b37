"""What a ``fit``/``validate``/``test`` command line *gives*: its flags and its ``--config`` files.

A resume adopts the checkpoint's value of every model/data setting the command leaves out and refuses
one it gives with another value, even a value equal to the default (``--model.arch dcgan``): so the
CLI needs to know which settings were given, which a parsed config (defaults filled in) does not say.

The ``--config`` files are read here first, with their YAML aliases bounded: a few lines of nested
aliases (a "billion laughs" file) expand to billions of values, which the parser would walk for
minutes with no output.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

SECTIONS = ("model", "data")
SUBCOMMANDS = ("fit", "validate", "test")
MAX_YAML_VALUES = 100_000  # values of a config once its aliases are expanded; a recipe has ~100


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """Values under ``node`` with every alias expanded, counted without expanding (shared nodes once)."""
    if id(node) in sizes:
        return sizes[id(node)]
    sizes[id(node)] = 1  # a node that contains itself (a recursive alias) counts once
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(child, sizes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
    else:
        size = 1
    sizes[id(node)] = size
    return size


def load_config(value: str, option: str) -> Any:
    """The YAML of a ``--config`` (a file, or YAML text as jsonargparse also takes), refused with one
    line when its aliases expand beyond :data:`MAX_YAML_VALUES` values."""
    path = Path(value)
    try:
        text = path.read_text(encoding="utf-8") if path.is_file() else value
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None  # not ours to judge: the parser reports what is wrong with it
    size = 0 if node is None else _expanded_size(node, {})
    if size > MAX_YAML_VALUES:
        raise ValueError(
            f"{option} {value!r}: its YAML aliases expand to {size:,} values (at most {MAX_YAML_VALUES:,}); "
            "a config that large is not a recipe: write the settings out without nested aliases"
        )
    return yaml.safe_load(text)


def _keys(config: Any, prefix: str) -> Iterable[str]:
    if isinstance(config, Mapping):
        for name in config:
            yield f"{prefix}.{name}"


def _sections(config: Mapping[str, Any]) -> set[str]:
    """The model/data keys of a config, of the subcommand's section in a top-level one."""
    for name in SUBCOMMANDS:
        if isinstance(config.get(name), Mapping):
            config = config[name]
    return {key for section in SECTIONS for key in _keys(config.get(section), section)}


def given_settings(args: Sequence[str] | Mapping[str, Any]) -> set[str]:
    """``{"model.arch", "data.root", ...}``: the model/data settings ``args`` gives, as flags or in
    ``--config`` / ``--model`` / ``--data`` files; the YAML of each file is bounded (:func:`load_config`).

    ``args`` as LightningCLI takes them: a command line, or a mapping of settings.
    """
    if isinstance(args, Mapping):
        return _sections(args)
    given: set[str] = set()
    tokens = list(args)
    for i, token in enumerate(tokens):
        option, equals, inline = token.partition("=")
        value = inline if equals else (tokens[i + 1] if i + 1 < len(tokens) else None)
        if option.startswith(tuple(f"--{section}." for section in SECTIONS)):
            given.add(option[2:])
        elif option in ("--config", *(f"--{section}" for section in SECTIONS)) and value is not None:
            loaded = load_config(value, option)
            if option != "--config":
                given.update(_keys(loaded, option[2:]))
            elif isinstance(loaded, Mapping):
                given.update(_sections(loaded))
    return given
