"""Files in and out: the one atomic-write helper, cache folders, run folders, checkpoints, exports.

Importing this package imports nothing, so :func:`facegan.load_generator` (``io/export.py``) works
without Lightning, torchmetrics or W&B.
"""
