"""Guards of a fit: batches that do not match the model, and epochs without images, stop the run.

Both fail loudly before anything is saved, instead of training silently on the wrong pixels or
writing an untrained checkpoint after zero steps.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor

from facegan.data.decode import NoImagesError


def check_batch(images: Tensor, image_size: int) -> None:
    """Raise ``ValueError`` unless ``images`` is a float ``(B, 3, S, S)`` batch in ``[-1, 1]``.

    Meant for the first batch of a run (it reads the batch's range: one host sync). A batch entirely
    in ``[0, 1]`` is refused: it is what torchvision's ``ToTensor`` gives, not facegan's convention.
    """
    expected = f"(B, 3, {image_size}, {image_size})"
    if images.ndim != 4 or tuple(images.shape[1:]) != (3, image_size, image_size):
        raise ValueError(
            f"FaceGAN: a training batch has shape {tuple(images.shape)}, but the model was built for "
            f"image_size={image_size}: batches must be {expected}. Make the data and the model agree "
            "(the CLI links --data.image_size to the model; in Python pass the same image_size to both)"
        )
    if not images.is_floating_point():
        raise ValueError(
            f"FaceGAN: a training batch has dtype {images.dtype}; facegan trains on float images in "
            "[-1, 1] (facegan.images.from_uint8 converts uint8)"
        )
    low, high = float(images.min()), float(images.max())
    if low < -1.001 or high > 1.001 or low >= 0.0:
        raise ValueError(
            f"FaceGAN: a training batch has values in [{low:.3f}, {high:.3f}]; facegan trains on images "
            "in [-1, 1] (after torchvision's ToTensor, add Normalize((0.5,) * 3, (0.5,) * 3))"
        )


class DataGuard:
    """Checks the first batch of a fit (:func:`check_batch`) and that every epoch trains on images."""

    def __init__(self, image_size: int) -> None:
        self.image_size = image_size
        self.checked = False
        self.epoch_images = 0  # images trained on in this epoch, by this process

    def start_fit(self) -> None:
        self.checked = False

    def start_epoch(self) -> None:
        self.epoch_images = 0

    def admit(self, images: Tensor, batch_idx: int, trainer: L.Trainer | None) -> bool:
        """Whether ``images`` has images to train on: ``False`` for an empty batch (all skipped).

        Raises ``ValueError`` for a first batch that does not match the model (one host sync per
        fit), and :class:`~facegan.data.decode.NoImagesError` at the last batch of an epoch in which
        no process had an image. That decision is taken together: under DDP the epoch's image counts
        are summed over the processes (one collective per epoch, at the same batch on every rank),
        so every rank raises, or none does; a rank that alone had none takes part with zero weight.
        """
        if images.shape[0] and not self.checked:
            check_batch(images, self.image_size)
            self.checked = True
        self.epoch_images += images.shape[0]
        if trainer is not None and batch_idx + 1 == trainer.num_training_batches:
            total = self.epoch_images
            if trainer.world_size > 1:
                count = torch.tensor(float(total), device=trainer.strategy.root_device)
                total = int(trainer.strategy.reduce(count, reduce_op="sum"))
            if not total:
                raise NoImagesError(
                    f"FaceGAN: epoch {trainer.current_epoch} trained on no images: every batch was empty "
                    "because every image was skipped as unreadable (were the files deleted or changed, or "
                    "is crop_size larger than every image?); stopped before saving anything for this epoch"
                )
        return images.shape[0] > 0
