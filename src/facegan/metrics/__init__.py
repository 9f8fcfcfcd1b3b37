"""Image-quality metrics without Lightning: :mod:`~facegan.metrics.fid`, the one FID/KID engine (and the
real images it compares against) that :class:`facegan.FIDMonitor`, ``facegan score`` and the benchmarks call."""

from facegan.metrics.fid import FID, WEIGHTS_FILE, build_fid_metric, fixed_latents, generated, resolve_weights

__all__ = ["FID", "WEIGHTS_FILE", "build_fid_metric", "fixed_latents", "generated", "resolve_weights"]
