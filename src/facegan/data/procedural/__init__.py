"""Procedural cartoon faces: a built-in dataset so facegan trains with no download.

Face ``i`` draws a fixed list of uniforms from ``np.random.default_rng([seed, i])`` (the same in any
worker and order), turned into the geometry and colours of every part (:func:`sample_face_params`).
:func:`render_faces` draws a batch with torch ops: each part a signed distance field in head-local
coordinates (the same face at any resolution), anti-aliased by a one-pixel ramp and composited back to
front; symmetric parts drawn once on ``|x|``, optional ones with a per-face alpha. Speed: parts are
evaluated only in a pixel window that holds them, per-face values are ``(1, N, 1, 1)`` views of
``(3, N, H, W)`` images, and no op takes a Python float (torch copies those on every call).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from facegan.data.procedural.params import FaceParams, sample_face_params
from facegan.data.procedural.render import render_faces

__all__ = ["FaceParams", "ProceduralFaces", "render_faces", "sample_face_params"]


class ProceduralFaces(Dataset):
    """``num_images`` cartoon front-facing portraits, roughly aligned like CelebA crops, rendered on the
    fly at ``image_size`` px (>= 16); face ``i`` depends only on ``(seed, i)``, ``flip`` flips each
    horizontally with probability 1/2 (training)."""

    def __init__(
        self, num_images: int = 20000, image_size: int = 64, seed: int = 0, flip: bool = False
    ) -> None:
        checks = ("num_images", num_images, 1), ("image_size", image_size, 16), ("seed", seed, 0)
        for name, value, low in checks:
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
                raise ValueError(f"ProceduralFaces: `{name}` must be an integer >= {low}, got {value!r}")
        self.num_images, self.image_size, self.seed = int(num_images), int(image_size), int(seed)
        self.flip = flip

    def __len__(self) -> int:
        return self.num_images

    def _index(self, index: int) -> int:
        i = operator.index(index)
        if not -self.num_images <= i < self.num_images:
            raise IndexError(f"ProceduralFaces: index {i} out of range for {self.num_images} images")
        return i % self.num_images

    def __getitem__(self, index: int) -> Tensor:
        """Returns face ``index`` (negative counts from the end) as float32 ``(3, H, W)`` in ``[-1, 1]``."""
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[Tensor]:
        """Returns faces ``indices``, rendered in batches: DataLoader calls this for a whole batch at once."""
        faces, chunk = [self._index(i) for i in indices], max(1, 2**20 // self.image_size**2)
        images = [
            img
            for k in range(0, len(faces), chunk)
            for img in render_faces(sample_face_params(self.seed, faces[k : k + chunk]), self.image_size)
        ]
        flips = (torch.rand(len(images)) < 0.5).tolist() if self.flip else [False] * len(images)
        return [image.flip(-1) if flip else image for image, flip in zip(images, flips, strict=True)]
