"""Command line: ``fit``/``validate``/``test`` (:mod:`~facegan.cli.trainer`, LightningCLI),
``generate``/``export`` (:mod:`~facegan.cli.tools`), resuming (:mod:`~facegan.cli.resume`)."""

from facegan.cli.trainer import FaceGANCLI, main

__all__ = ["FaceGANCLI", "main"]
