"""Image-quality metrics without Lightning: one FID/KID engine and the real images it compares against.

:mod:`~facegan.metrics.fid` is the engine (:class:`~facegan.metrics.fid.FID`: the Inception metric with
offline weights, the real-statistics cache and statistics files, FID and KID of generated images);
:mod:`~facegan.metrics.real_images` turns any source (a data module, a loader, image files) into uint8
batches with a cache key. :class:`facegan.FIDMonitor`, ``facegan score`` and the benchmarks call the engine.
"""

from facegan.metrics.fid import FID, WEIGHTS_FILE, build_fid_metric, fixed_latents, generated, resolve_weights

__all__ = ["FID", "WEIGHTS_FILE", "build_fid_metric", "fixed_latents", "generated", "resolve_weights"]
