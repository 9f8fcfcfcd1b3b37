"""Face data: the Lightning data module, image sources and the built-in procedural faces."""

from facegan.data.datamodule import FaceDataModule
from facegan.data.procedural import ProceduralFaces
from facegan.data.sources import BadImageError

__all__ = ["BadImageError", "FaceDataModule", "ProceduralFaces"]
