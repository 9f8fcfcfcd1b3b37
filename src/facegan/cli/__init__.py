"""Command line (:mod:`~facegan.cli.entry`): ``fit``/``validate``/``test`` (:mod:`~facegan.cli.trainer`, runs
and resumes in :mod:`~facegan.cli.resume`), ``generate``/``export``/``score``/``prepare`` (:mod:`~facegan.cli.tools`)."""

from facegan.cli.trainer import FaceGANCLI, main

__all__ = ["FaceGANCLI", "main"]
