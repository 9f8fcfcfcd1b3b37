"""Preprocessing through torchvision's transforms gives exactly the pixels of PIL's own crop and resize."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from facegan.data.decode import preprocess


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def pil_reference(image: Image.Image, size: int, crop: int | None) -> torch.Tensor:
    """Center crop with round-half-even offsets, then PIL's bilinear resize: the reference pipeline."""
    width, height = image.size
    side = min(width, height) if crop is None else crop
    left, top = int(round((width - side) / 2.0)), int(round((height - side) / 2.0))
    image = image.crop((left, top, left + side, top + side))
    if side != size:
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)


@pytest.mark.parametrize(
    ("width", "height", "size", "crop"),
    [
        (89, 109, 64, None),
        (178, 218, 64, 178),
        (89, 109, 32, 75),
        (40, 50, 40, None),
        (50, 41, 16, 33),
        (64, 64, 64, None),
    ],
)
def test_preprocess_matches_pil_crop_and_resize_exactly(width, height, size, crop):
    image = noise_image(width, height)
    result = preprocess(image, size, crop, "test.png")
    assert result.dtype == torch.uint8 and result.shape == (3, size, size)
    assert torch.equal(result, pil_reference(image, size, crop))
