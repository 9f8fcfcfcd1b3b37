"""Moved to :mod:`facegan.data.cache`; this path is kept for importers outside ``data/``."""

from facegan.data.cache import DeviceBatches as DeviceBatches
