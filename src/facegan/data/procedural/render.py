"""Rendering face designs with plain torch ops: signed distance fields composited back to front."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from facegan.data.procedural.params import FaceParams

# Head-local boxes (x0, x1, y0, y1) holding everything drawn in each window, for any sampled face:
# body, head and hair, brows/eyes/glasses, cheeks/nose/mouth.
_BOXES = np.array(
    [[-1.7, 1.7, 0.27, 1.7], [-0.72, 0.72, -0.92, 1.15], [-0.52, 0.52, -0.35, 0.18], [-0.46, 0.46, -0.1, 0.5]]
)
_WHITE, _DARK, _SHINE, _MOUTH, _TEETH, _BLUSH = (
    torch.tensor(c).view(3, 1, 1, 1)
    for c in (  # (3, 1, 1, 1)
        [0.96, 0.96, 0.94],
        [0.1, 0.07, 0.06],
        [1.0, 1.0, 1.0],
        [0.3, 0.06, 0.08],
        [0.95, 0.93, 0.88],
        [0.95, 0.35, 0.4],
    )
)
_ONE, _HALF, _EPS, _SOFT, _SOFTER = (torch.tensor(v) for v in (1.0, 0.5, 1e-10, -40.0, -12.0))


@lru_cache(maxsize=16)
def _grid(size: int) -> Tensor:
    return (torch.arange(size, dtype=torch.float32) * 2 + 1) / size - 1  # (size,) pixel centres in [-1, 1]


def _ellipse(x: Tensor, y: Tensor, rx: Tensor, ry: Tensor, exact: bool = False) -> Tensor:
    """Signed distance to an ellipse centred at the origin.

    The cheap form ``(k - 1) * min(rx, ry)`` is exact along the short axis and too soft towards the long
    one; ``exact`` uses the first-order distance ``(k - 1) / |grad k|`` instead (for elongated shapes).
    """
    irx, iry = rx.reciprocal(), ry.reciprocal()
    u, v = x * irx, y * iry  # multiplications and square roots only: torch.hypot and division are slow
    uu = u * u
    k2 = torch.addcmul(uu, v, v)
    if not exact:
        return k2.sqrt_().sub_(_ONE).mul_(torch.minimum(rx, ry))
    grad2 = torch.addcmul(uu.mul_(irx * irx), v * v, iry * iry).clamp_min_(1e-12)  # (k |grad k|)^2
    return (k2 - k2.add(_EPS).sqrt_()).mul_(grad2.rsqrt_())


def _length(x: Tensor, y: Tensor) -> Tensor:
    return torch.addcmul(x * x, y, y).sqrt_()


class _Window:
    """Pixels ``img[:, :, rows, cols]`` of a batch: their head-local coordinates, and painting into them."""

    def __init__(self, img: Tensor, pose: tuple[Tensor, ...], rows: slice, cols: slice) -> None:
        dx, dy, cs, sn, self.slope = pose
        self.img = img[:, :, rows, cols]  # (3, N, h, w) view
        dx, dy = dx[..., cols], dy[..., rows, :]  # (1, N, 1, w), (1, N, h, 1)
        self.x, self.y = dx * cs + dy * sn, dy * cs - dx * sn  # (1, N, h, w): rotated, then unscaled
        self.ax = self.x.abs()

    def paint(self, sdf: Tensor, colour: Tensor, alpha: Tensor | None = None, slope: Tensor | None = None):
        """Composites ``colour`` where ``sdf < 0``, blended over one pixel (or over ``-1 / slope`` units)."""
        cover = torch.addcmul(_HALF, sdf, self.slope if slope is None else slope).clamp_(0.0, 1.0)
        self.img.lerp_(colour, cover if alpha is None else cover.mul_(alpha))


def render_faces(params: FaceParams, image_size: int) -> Tensor:
    """The ``N`` faces of ``params`` (:func:`sample_face_params`) as float32 ``(N, 3, S, S)`` in ``[-1, 1]``."""
    with torch.inference_mode():  # skips autograd bookkeeping; the copy below is a normal tensor
        img = _render(params, image_size)  # (3, N, H, W)
    return img.permute(1, 0, 2, 3).clone(memory_format=torch.contiguous_format)


def _render(params: FaceParams, size: int) -> Tensor:
    n, grid = len(params), _grid(size)
    columns = params.values.T.contiguous().view(-1, n, 1, 1).split(list(params.widths.values()))
    q = dict(zip(params.widths, columns, strict=True))  # name -> (1 or 3, N, 1, 1) view
    img = torch.lerp(q["bg_top"], q["bg_bottom"], grid.view(1, 1, size, 1) * 0.5 + 0.5)  # (3, N, H, 1)
    img = img.expand(-1, -1, -1, size).contiguous()  # (3, N, H, W)
    # Pixel windows holding each of _BOXES in every face, from the pose (rotation about the head centre).
    tx, ty, rot, scale = (q[k].numpy().reshape(n, 1).astype(np.float64) for k in ("tx", "ty", "rot", "scale"))
    c, s, (x0, x1, y0, y1) = np.cos(rot), np.sin(rot), _BOXES.T  # (N, 1), (N, 1), 4 x (B,)
    hx, hy, cx, cy = (x1 - x0) / 2, (y1 - y0) / 2, (x0 + x1) / 2, (y0 + y1) / 2
    mid = np.stack([tx + scale * (cx * c - cy * s), ty + scale * (cx * s + cy * c)])  # (2, N, B)
    half = np.stack([scale * (hx * abs(c) + hy * abs(s)), scale * (hx * abs(s) + hy * abs(c))])
    lo, hi = ((mid - half).min(1) + 1) * size / 2 - 0.5, ((mid + half).max(1) + 1) * size / 2 - 0.5  # (2, B)
    cut = [
        slice(max(int(a) - 1, 0), max(min(int(b) + 3, size), 0))
        for a, b in zip(lo.ravel(), hi.ravel(), strict=True)
    ]  # cols of each box, then rows
    cs, sn = torch.cos(q["rot"]) / q["scale"], torch.sin(q["rot"]) / q["scale"]
    dx, dy = grid.view(1, 1, 1, -1) - q["tx"], grid.view(1, 1, -1, 1) - q["ty"]  # (1, N, 1, W), (1, N, H, 1)
    slope = q["scale"] * torch.tensor(-size / 2)  # coverage change per local unit: one pixel wide
    pose = dx, dy, cs, sn, slope
    body, head, eyes, mouth = (_Window(img, pose, cut[4 + b], cut[b]) for b in range(4))
    # Body: neck, shoulders (clothes) and a neckline.
    x, y, ax = body.x, body.y, body.ax
    body.paint(torch.maximum(ax - q["neck_w"], q["neck_y"] - y), q["neck_c"])
    body.paint(_ellipse(x, y - q["shoulder_y"], q["shoulder_rx"], q["shoulder_ry"]), q["clothes"])
    body.paint(_ellipse(x, y - q["neckline_y"], q["neckline_rx"], q["neckline_ry"]), q["neck_c"])
    # Head: long hair behind it (not over the neck), ears, the face (half-width narrowing towards the chin,
    # radial shading), a beard, then hair: the head grown by its volume, cut below an optionally fringed line.
    x, y, ax = head.x, head.y, head.ax
    if q["back_a"].any():  # optional parts are skipped when no face in the batch has them
        back = torch.maximum(_ellipse(x, y - q["back_y"], q["back_rx"], q["back_ry"]), y - q["hair_length"])
        head.paint(torch.maximum(back, q["neck_w"] - ax), q["back_c"], q["back_a"])
    head.paint(_ellipse(ax - q["ear_x"], y - q["ear_y"], q["ear_rx"], q["ear_ry"]), q["ear_c"])
    xj = x / (_ONE - (y / q["head_ry"]).clamp_(0.0, 1.0).square_().mul_(q["jaw"]))
    shade = q["light"] - _length(x - q["light_x"], y - q["light_y"]).square_().mul_(q["shade"])
    head.paint(_ellipse(xj, y, q["head_rx"], q["head_ry"]), q["skin"] * shade)
    x2 = x * x
    if q["beard_a"].any():
        beard = _ellipse(xj, y, q["beard_rx"], q["beard_ry"])
        beard = torch.maximum(beard, torch.addcmul(q["beard_y"] - y, x2, q["beard_k"]))
        head.paint(beard, q["beard_c"], q["beard_a"])
    hairline = torch.addcmul(q["hairline"] + q["hair_tilt"] * x, x2, q["hair_curve"])
    hairline = torch.addcmul(hairline, torch.sin(x * 45.0).abs_(), q["fringe"])
    cap = _ellipse(x, y - q["cap_y"], q["cap_rx"], q["cap_ry"])
    head.paint(torch.maximum(cap, y - hairline), q["hair"] * shade, q["hair_a"])
    # Eyebrows (arched, sloped bands); eyes: sclera, then iris, pupil and highlight clipped to it, then an
    # upper lid line (a lower arc when closed); glasses: a ring round each eye, a bridge and the arms.
    y, ax, sgn = eyes.y - q["eye_y"], eyes.ax, eyes.x.sign()
    u = ax - q["brow_x"]
    brow = torch.addcmul(y - q["brow_dy"] + q["brow_slope"] * u, u * u, q["brow_bend"]).abs_() - q["brow_w"]
    eyes.paint(torch.maximum(brow, u.abs_() - q["brow_len"]), q["brow_c"])
    ex = ax - q["eye_x"]
    sclera = _ellipse(ex, y, q["eye_rx"], q["eye_ry"], exact=True)
    ix = ex - q["gaze"] * sgn
    iris = _length(ix, y)
    eyes.paint(sclera, _WHITE, q["eye_a"])
    eyes.paint(torch.maximum(iris - q["iris_r"], sclera), q["iris"], q["eye_a"])
    eyes.paint(torch.maximum(iris - q["pupil_r"], sclera), _DARK, q["eye_a"])
    eyes.paint(_length(ix - q["shine_x"] * sgn, y + q["shine_x"]) - q["shine_r"], _SHINE, q["shine_a"])
    eyes.paint(torch.maximum(sclera.abs_() - q["lid_w"], (y - q["lid_y"]) * q["lid_side"]), _DARK)
    if q["glasses_a"].any():
        fw = q["frame_w"]
        ring = (_length(ex, y) - q["glass_r"]).abs_() - fw
        bridge = torch.maximum((y + fw).abs_() - fw, ex + q["glass_r"])
        arms = torch.maximum(y.abs() - fw, torch.maximum(q["glass_r"] - ex, ax - q["arm_x"]))
        eyes.paint(torch.minimum(torch.minimum(ring, bridge), arms), q["frame"], q["glasses_a"])
    # Cheeks; nose: a soft shadow under the tip, a shading line down one side, two nostrils; mouth: lips
    # along a curve (corners up when smiling), a dark opening with teeth, the line between the lips.
    x, y, ax = mouth.x, mouth.y, mouth.ax
    blush = _ellipse(ax - q["blush_x"], y - q["blush_y"], q["blush_rx"], q["blush_ry"])
    mouth.paint(blush, _BLUSH, q["blush_a"], _SOFTER)
    mouth.paint(_ellipse(x, y - q["shadow_y"], q["shadow_rx"], q["shadow_ry"]), q["shadow_c"], _HALF, _SOFT)
    side = torch.maximum((x - q["side_x"]).abs_() - q["side_w"], (y - q["side_y"]).abs_() - q["side_len"])
    mouth.paint(side, q["side_c"], _HALF)
    nostrils = _ellipse(ax - q["nostril_x"], y - q["nose_y"], q["nostril_rx"], q["nostril_ry"])
    mouth.paint(nostrils, q["nostril_c"])
    yc = torch.addcmul(y - q["mouth_y"], x * x, q["smile"])
    mouth.paint(_ellipse(x, yc, q["mouth_w"], q["lip_h"], exact=True), q["lips"])
    if q["open_a"].any():
        inner = _ellipse(x, yc, q["inner_rx"], q["inner_ry"], exact=True)
        mouth.paint(inner, _MOUTH, q["open_a"])
        mouth.paint(torch.maximum(inner, yc - q["teeth_y"]), _TEETH, q["open_a"])
    mouth.paint(torch.maximum(yc.abs_() - q["lid_w"], ax - q["line_len"]), q["lip_line"])
    return img.clamp_(0.0, 1.0).mul_(2.0).sub_(1.0)
