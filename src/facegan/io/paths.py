"""Where facegan keeps files between runs: the cache folder, one rule for every kind of cache."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(kind: str, override: str | os.PathLike | None = None) -> Path:
    """The folder of one kind of cache (``"data"``, ``"fid"``): ``override`` (a user's ``cache_dir``
    setting), else ``$FACEGAN_CACHE/<kind>``, else ``~/.cache/facegan/<kind>``."""
    if override:
        return Path(override).expanduser()
    base = os.environ.get("FACEGAN_CACHE")
    return (Path(base) if base else Path("~/.cache/facegan")).expanduser() / kind
