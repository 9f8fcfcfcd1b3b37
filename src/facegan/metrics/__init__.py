"""Image-quality metrics without Lightning: the FID feature extractor, FID from cached real statistics.

:mod:`~facegan.metrics.inception` builds the standard InceptionV3 metric (offline weights),
:mod:`~facegan.metrics.fid` fills its real and generated halves, :mod:`~facegan.metrics.real_stats`
caches the real half on disk. :class:`facegan.FIDMonitor` is the Lightning callback on top.
"""

from facegan.metrics.fid import REAL_STATES, generated_fid, real_states, set_real_states
from facegan.metrics.inception import WEIGHTS_FILE, build_fid_metric, resolve_weights

__all__ = [
    "REAL_STATES",
    "WEIGHTS_FILE",
    "build_fid_metric",
    "generated_fid",
    "real_states",
    "resolve_weights",
    "set_real_states",
]
