"""Training: the LightningModule (:mod:`~facegan.training.module`) and the plain PyTorch pieces it
glues together (the GAN objective, augmentation, EMA, sampling, DDP plumbing and random states,
settings).

Import :class:`FaceGAN` from :mod:`facegan` or :mod:`facegan.training.module`; this package itself
imports nothing, so its Lightning-free parts stay usable without Lightning.
"""
