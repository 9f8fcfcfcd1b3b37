"""Moved to :mod:`facegan.data.decode`; this path is kept for importers outside ``data/``."""

from facegan.data.decode import fingerprint as fingerprint
