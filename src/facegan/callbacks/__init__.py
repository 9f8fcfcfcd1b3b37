"""Callbacks that observe a FaceGAN run: FID, sample grids, throughput and learning rates, divergence,
a checkpoint on interrupt, and a budget and checkpoints counted in images."""

from facegan.callbacks.divergence import DivergenceMonitor, TrainingDiverged
from facegan.callbacks.fid import FIDMonitor
from facegan.callbacks.interrupt import CheckpointOnInterrupt
from facegan.callbacks.kimg import KimgBudget, KimgCheckpoint
from facegan.callbacks.progress import ProgressMonitor
from facegan.callbacks.samples import SampleGridMonitor

__all__ = [
    "CheckpointOnInterrupt",
    "DivergenceMonitor",
    "FIDMonitor",
    "KimgBudget",
    "KimgCheckpoint",
    "ProgressMonitor",
    "SampleGridMonitor",
    "TrainingDiverged",
]
