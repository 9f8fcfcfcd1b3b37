"""Face data: the Lightning data module, image sources and the built-in procedural faces."""

from facegan.data.datamodule import FaceDataModule
from facegan.data.decode import BadImageError
from facegan.data.procedural import ProceduralFaces

__all__ = ["BadImageError", "FaceDataModule", "ProceduralFaces"]
