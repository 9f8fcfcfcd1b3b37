"""Callbacks that observe a FaceGAN run: sample grids and FID."""

from facegan.callbacks.divergence import DivergenceMonitor, TrainingDiverged
from facegan.callbacks.fid import FIDMonitor
from facegan.callbacks.safety import AtomicCheckpointIO, CheckpointOnInterrupt
from facegan.callbacks.samples import SampleGridMonitor

__all__ = [
    "AtomicCheckpointIO",
    "CheckpointOnInterrupt",
    "DivergenceMonitor",
    "FIDMonitor",
    "SampleGridMonitor",
    "TrainingDiverged",
]
