"""Tests for the built-in procedural face dataset."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader

from facegan.data.procedural import ProceduralFaces, render_faces, sample_face_params


def _luma(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1] -> (N, H, W) luminance in [0, 1]."""
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return ((images + 1) / 2 * weights).sum(1)


@pytest.mark.parametrize("size", [16, 32, 48, 64, 128])
def test_shape_dtype_range(size: int) -> None:
    ds = ProceduralFaces(num_images=10, image_size=size, seed=0)
    assert len(ds) == 10
    for i in (0, 9):
        img = ds[i]
        assert img.shape == (3, size, size)
        assert img.dtype == torch.float32
        assert img.min() >= -1.0 and img.max() <= 1.0
        assert not img.requires_grad and img.is_contiguous()


def test_deterministic_per_seed_and_index() -> None:
    ds = ProceduralFaces(num_images=100, image_size=32, seed=3)
    assert torch.equal(ds[5], ds[5])
    assert torch.equal(ds[5], ProceduralFaces(num_images=10, image_size=32, seed=3)[5])  # not on length
    assert torch.equal(ds[-1], ds[99])
    assert not torch.equal(ds[5], ds[6])
    assert not torch.equal(ds[5], ProceduralFaces(num_images=100, image_size=32, seed=4)[5])


def test_batched_paths_match_single_items() -> None:
    ds = ProceduralFaces(num_images=50, image_size=40, seed=1)
    order = [7, 3, 41, 3, 0]
    singles = torch.stack([ds[i] for i in order])
    torch.testing.assert_close(torch.stack(ds.__getitems__(order)), singles, atol=1e-5, rtol=0)
    torch.testing.assert_close(render_faces(sample_face_params(1, order), 40), singles, atol=1e-5, rtol=0)


def test_dataloader_workers_give_the_same_images() -> None:
    ds = ProceduralFaces(num_images=8, image_size=16, seed=2)
    loaded = torch.cat(list(DataLoader(ds, batch_size=3, num_workers=2)))
    torch.testing.assert_close(loaded, torch.stack([ds[i] for i in range(8)]), atol=1e-5, rtol=0)


def test_index_errors() -> None:
    ds = ProceduralFaces(num_images=4, image_size=16)
    with pytest.raises(IndexError):
        ds[4]
    with pytest.raises(IndexError):
        ds[-5]


def test_variety() -> None:
    images = torch.stack(ProceduralFaces(num_images=64, image_size=32, seed=0).__getitems__(range(64)))
    mean_colour = images.mean(dim=(2, 3))  # (N, 3)
    assert mean_colour.std(dim=0).min() > 0.12
    corners = images[:, :, 0, 0]  # (N, 3) top-left background pixel
    assert len({tuple(c.tolist()) for c in corners}) > 32
    assert (images[:, :, 0, 0] - images[:, :, -1, 0]).abs().sum(1).gt(0.05).sum() > 16  # some gradients


def test_face_is_centred_on_a_distinct_background() -> None:
    images = torch.stack(ProceduralFaces(num_images=64, image_size=64, seed=0).__getitems__(range(64)))
    centre = images[:, :, 24:40, 24:40].mean(dim=(2, 3))  # (N, 3)
    corner = images[:, :, :8, :8].mean(dim=(2, 3))
    assert (centre - corner).abs().sum(1).gt(0.1).float().mean() >= 0.9


def test_eyes_are_darker_than_the_skin_between_them() -> None:
    n, size = 64, 128
    params = sample_face_params(0, range(n))
    luma = _luma(render_faces(params, size))

    def pixel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Luminance at head-local point (x, y) of each face."""
        rot, scale = params["rot"], params["scale"]
        px = params["tx"] + scale * (x * torch.cos(rot) - y * torch.sin(rot))
        py = params["ty"] + scale * (x * torch.sin(rot) + y * torch.cos(rot))
        col, row = (((v + 1) * size / 2).long().clamp(0, size - 1) for v in (px, py))
        return luma[torch.arange(n), row, col]

    eye_x, eye_y = params["eye_x"], params["eye_y"]
    skin = pixel(torch.zeros(n), eye_y + 0.06)  # between the eyes, above the nose
    darker = (pixel(eye_x + params["gaze"], eye_y) < skin) & (pixel(-eye_x + params["gaze"], eye_y) < skin)
    is_open = params["eye_a"] > 0
    assert is_open.sum() > n // 2
    assert darker[is_open].float().mean() >= 0.9


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_images": 0}, r"`num_images` must be an integer >= 1, got 0"),
        ({"image_size": 8}, r"`image_size` must be an integer >= 16, got 8"),
        ({"image_size": 64.0}, r"`image_size` must be an integer >= 16, got 64.0"),
        ({"image_size": True}, r"`image_size` must be an integer >= 16, got True"),
        ({"seed": -1}, r"`seed` must be an integer >= 0, got -1"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=r"ProceduralFaces: " + message):
        ProceduralFaces(**kwargs)


def test_params_are_inspectable() -> None:
    params = sample_face_params(0, [1, 2, 3])
    assert len(params) == 3
    assert params["skin"].shape == (3, 3) and params["rot"].shape == (3,)
    assert params["skin"].min() >= 0 and params["skin"].max() <= 1
    assert params["rot"].abs().max() < math.radians(10)
    with pytest.raises(KeyError):
        params["nope"]


def test_render_all_in_worker_processes_gives_the_same_faces_and_leaves_the_global_rng_alone():
    """The resident set's rendering (several processes) equals rendering face by face in this one."""
    from facegan.data.cache import render_all
    from facegan.images import to_uint8

    faces = ProceduralFaces(300, 16, seed=3)
    expected = to_uint8(torch.stack([faces[i] for i in range(300)]))
    state = torch.random.get_rng_state()
    rendered = render_all(faces, num_workers=2)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert rendered.dtype == torch.uint8 and torch.equal(rendered, expected)
