"""facegan: GANs that draw faces, as a PyTorch Lightning plug-in.

The names below are imported on first use, so ``facegan.load_generator`` (an exported generator)
works in an environment without Lightning, torchmetrics or W&B.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from facegan.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "FaceGAN": "facegan.training.module",
    "FaceDataModule": "facegan.data",
    "FIDMonitor": "facegan.callbacks",
    "ProgressMonitor": "facegan.callbacks",
    "SampleGridMonitor": "facegan.callbacks",
    "export_generator": "facegan.io.export",
    "load_generator": "facegan.io.export",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from facegan.callbacks import FIDMonitor as FIDMonitor
    from facegan.callbacks import ProgressMonitor as ProgressMonitor
    from facegan.callbacks import SampleGridMonitor as SampleGridMonitor
    from facegan.data import FaceDataModule as FaceDataModule
    from facegan.io.export import export_generator as export_generator
    from facegan.io.export import load_generator as load_generator
    from facegan.training.module import FaceGAN as FaceGAN


__getattr__ = lazy_exports(__name__, _EXPORTS)
