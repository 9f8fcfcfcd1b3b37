"""Callbacks that observe a FaceGAN run: sample grids (and, later, FID)."""

from facegan.callbacks.samples import SampleGridMonitor

__all__ = ["SampleGridMonitor"]
