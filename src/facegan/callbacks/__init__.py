"""Callbacks that observe a FaceGAN run: FID, sample grids, throughput and learning rates, divergence,
a checkpoint on interrupt."""

from facegan.callbacks.divergence import DivergenceMonitor, TrainingDiverged
from facegan.callbacks.fid import FIDMonitor
from facegan.callbacks.interrupt import CheckpointOnInterrupt
from facegan.callbacks.progress import ProgressMonitor
from facegan.callbacks.samples import SampleGridMonitor

__all__ = [
    "CheckpointOnInterrupt",
    "DivergenceMonitor",
    "FIDMonitor",
    "ProgressMonitor",
    "SampleGridMonitor",
    "TrainingDiverged",
]
