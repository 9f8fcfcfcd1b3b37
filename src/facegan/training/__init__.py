"""Training: the LightningModule :class:`FaceGAN` (:mod:`~facegan.training.module`) and the plain PyTorch
pieces it glues together (objective, DDP plumbing, hardware). This package imports nothing,
so its Lightning-free parts stay usable without Lightning.
"""
