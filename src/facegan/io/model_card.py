"""Moved: the model card is in :mod:`facegan.io.export`, ``evaluations_in`` in :mod:`facegan.io.checkpoints`."""

from facegan.io.checkpoints import evaluations_in as evaluations_in  # cli/tools.py imports it from here
