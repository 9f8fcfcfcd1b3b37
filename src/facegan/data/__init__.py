"""Face data: the Lightning data module, image sources, decoding, the cache and the built-in faces.
Names are imported on first use, so the plain-PyTorch parts (for :mod:`facegan.metrics`) skip Lightning."""

from __future__ import annotations

from typing import TYPE_CHECKING

from facegan.lazy import lazy_exports

_EXPORTS = {
    "BadImageError": "facegan.data.decode",
    "FaceDataModule": "facegan.data.datamodule",
    "ProceduralFaces": "facegan.data.procedural",
}

__all__ = ["BadImageError", "FaceDataModule", "ProceduralFaces"]

if TYPE_CHECKING:
    from facegan.data.datamodule import FaceDataModule
    from facegan.data.decode import BadImageError
    from facegan.data.procedural import ProceduralFaces


__getattr__ = lazy_exports(__name__, _EXPORTS)
