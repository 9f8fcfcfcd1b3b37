"""The standard FID feature extractor: torchmetrics' InceptionV3 with the TensorFlow weights, offline.

torchmetrics downloads ``weights-inception-2015-12-05-6726825d.pth`` (the file behind published FIDs)
to ``$TORCH_HOME/hub/checkpoints/`` on first use. Where there is no network, the same file can be
given directly (an argument or ``$FACEGAN_FID_WEIGHTS``), or placed in that folder.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from torchmetrics.image.fid import FrechetInceptionDistance

WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"


class WeightsError(RuntimeError):
    """The Inception weights cannot be loaded (no network, a missing or corrupt file)."""


@functools.lru_cache(maxsize=4)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file, remembered per ``(path, size, mtime)`` (0.3 s for the Inception weights)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hub_weights_file() -> Path:
    """Where torchmetrics keeps (and looks for) the downloaded weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def resolve_weights(weights_path: str | os.PathLike | None = None) -> str | None:
    """The weights file to load: ``weights_path``, else ``$FACEGAN_FID_WEIGHTS``, else the hub file if
    present; ``None`` lets torchmetrics download it."""
    path = weights_path or os.environ.get("FACEGAN_FID_WEIGHTS") or None
    if path:
        return str(Path(path).expanduser())
    hub_file = hub_weights_file()
    return str(hub_file) if hub_file.is_file() else None


def build_fid_metric(
    weights_path: str | os.PathLike | None = None, owner: str = "FIDMonitor"
) -> tuple[FrechetInceptionDistance, dict[str, Any]]:
    """``(metric, extractor description)``: FID on uint8 images with the TensorFlow-compatible resize.

    ``FrechetInceptionDistance(feature=2048, antialias=False)``: the resize behind published FIDs,
    the network in float32, the statistics in float64; ``reset()`` clears the generated half only.
    The description (feature size, resize, the weights file's sha256) keys cached statistics.
    ``owner`` names the caller in the error raised when the weights cannot be loaded.
    """
    hub_file = hub_weights_file()
    path = resolve_weights(weights_path)
    try:
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"{path!r} is not a file")
        metric = FrechetInceptionDistance(
            feature=2048,
            reset_real_features=False,  # reset() clears the generated half only
            normalize=False,  # uint8 input
            antialias=False,  # the TensorFlow resize behind published FIDs
            feature_extractor_weights_path=path,  # None: torchmetrics downloads to hub_file
        )
    except ModuleNotFoundError:
        raise
    except Exception as error:  # no network (URLError), missing or corrupt file, ...
        raise WeightsError(
            f"{owner}: cannot load the FID Inception weights {WEIGHTS_FILE} ({error}). Offline, give "
            f"the file with {owner}(weights_path=...), the FACEGAN_FID_WEIGHTS environment variable, "
            f"or put it in $TORCH_HOME/hub/checkpoints/ (here {hub_file.parent})."
        ) from error
    path = path or (str(hub_file) if hub_file.is_file() else None)  # None -> it was downloaded
    weights: Any = "torchmetrics-default"
    if path:
        stat = Path(path).stat()
        weights = {"sha256": _sha256(path, stat.st_size, stat.st_mtime_ns), "size": stat.st_size}
    return metric, {"feature": 2048, "antialias": False, "weights": weights}
