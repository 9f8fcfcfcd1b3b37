"""Files in and out: atomic writes, cache and run folders, checkpoints, exports. Importing it imports
nothing, so :func:`facegan.load_generator` (``io/export.py``) needs no Lightning, torchmetrics or W&B."""
