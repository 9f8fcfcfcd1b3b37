"""Transitional: the real-image sources now live in :mod:`facegan.metrics.fid` (import them from there)."""

from facegan.metrics.fid import STATS_SUFFIXES, RealImages, from_datamodule, from_files  # noqa: F401
