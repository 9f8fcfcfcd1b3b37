"""Moved: the model card is written in :mod:`facegan.io.export`, ``evaluations_in`` is in :mod:`facegan.io.checkpoints`."""

from facegan.io.checkpoints import evaluations_in as evaluations_in  # cli/tools.py imports it from here
