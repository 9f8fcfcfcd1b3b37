"""facegan: GANs that draw faces, as a PyTorch Lightning plug-in."""

from facegan.callbacks import FIDMonitor, SampleGridMonitor
from facegan.data import FaceDataModule
from facegan.module import FaceGAN

__version__ = "0.1.0"

__all__ = ["FIDMonitor", "FaceDataModule", "FaceGAN", "SampleGridMonitor", "__version__"]
