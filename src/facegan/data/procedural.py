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
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset


def _rgb(colours: str) -> np.ndarray:
    """Hex ``rrggbb`` colours (space-separated) -> float64 ``(K, 3)`` in ``[0, 1]``."""
    return np.frombuffer(bytes.fromhex(colours), np.uint8).reshape(-1, 3).astype(np.float64) / 255.0


SKIN = _rgb("ffe4ce f3c9ac e2b08c c89068 a8704c 845638 623f2a 462e20")  # light -> dark, interpolated
# Hair: black, browns, blondes, red, greys.
HAIR = _rgb("161212 342218 603e26 92643c d8b676 eed6a4 a84822 807c7a c8c6c2")
HAIR_CDF = np.cumsum([3.0, 3.0, 2.0, 1.5, 1.5, 0.7, 1.0, 0.8, 0.6])
HAIR_CDF /= HAIR_CDF[-1]  # ends at exactly 1.0, so searchsorted on a draw in [0, 1) stays in range
IRIS = _rgb("4a2c18 281a12 4270a8 4e7a54 806234 68747c")
LIP = _rgb("aa3c46")
FRAME = _rgb("121214 5c3c28 96969c 821e22")
# Hair styles (bald/buzz, short cap, bangs, long): front alpha, hairline y, hairline curvature, volume,
# long back hair, fringe zig-zag depth.
STYLES = np.array(
    [
        [0.0, -0.42, 1.6, 0.0, 0.0, 0.0],
        [1.0, -0.36, 1.6, 0.06, 0.0, 0.0],
        [1.0, -0.25, 0.9, 0.08, 0.0, 0.02],
        [1.0, -0.38, 3.2, 0.09, 1.0, 0.0],
    ]
)
STYLE_CDF = np.array([0.12, 0.45, 0.65, 1.0])
# Uniform draws of one face, in column order: name -> (low, high[, width]). Append new ones at the end.
DRAWS = {
    "rot": (-0.14, 0.14),
    "tx": (-0.07, 0.07),
    "ty": (-0.02, 0.1),
    "scale": (0.86, 1.06),
    "bg": (0.05, 0.95, 3),
    "bg_lift": (0.0, 0.3),
    "bg2": (0.05, 0.95, 3),
    "bg_grad": (-0.8, 0.9),
    "skin": (0.0, 7.0),
    "skin_gain": (0.94, 1.05),
    "hair": (0.0, 1.0),
    "hair_gain": (0.85, 1.12),
    "style": (0.0, 1.0),
    "buzz": (0.0, 0.5),
    "hairline": (-0.04, 0.04),
    "hair_tilt": (-0.18, 0.18),
    "volume": (0.6, 1.4),
    "hair_length": (0.55, 1.1),
    "clothes": (0.05, 0.9, 3),
    "head_rx": (0.39, 0.48),
    "head_ry": (0.54, 0.63),
    "jaw": (0.0, 0.35),
    "eye_y": (-0.1, -0.02),
    "eye_x": (0.16, 0.21),
    "eye_rx": (0.07, 0.095),
    "eye_aspect": (0.45, 0.7),
    "closed": (0.0, 1.0),
    "iris": (0.0, 6.0),
    "iris_gain": (0.85, 1.15),
    "gaze": (-0.015, 0.015),
    "brow_raise": (0.1, 0.15),
    "brow_w": (0.012, 0.03),
    "brow_slope": (-0.3, 0.3),
    "brow_bend": (-3.0, 1.0),
    "brow_len": (0.065, 0.095),
    "nose_y": (0.12, 0.19),
    "nose_w": (0.03, 0.05),
    "mouth_y": (0.3, 0.37),
    "mouth_w": (0.09, 0.15),
    "expression": (0.0, 1.0),
    "smile": (0.015, 0.06),
    "flat": (-0.012, 0.01),
    "open": (0.02, 0.055),
    "lip_w": (0.014, 0.03),
    "lip_mix": (0.25, 0.6),
    "glasses": (0.0, 1.0),
    "frame": (0.0, 4.0),
    "frame_w": (0.007, 0.014),
    "beard": (0.0, 1.0),
    "beard_top": (0.0, 0.06),
    "blush": (-0.2, 0.3),
    "light_x": (-0.25, 0.25),
    "shoulder_y": (1.04, 1.12),
    "shoulder_rx": (0.85, 1.0),
    "neckline": (0.07, 0.13),
    "ear": (0.9, 1.1),
    "light": (1.06, 1.18),
    "shade": (0.4, 0.6),
}
WIDTHS = [int(d[2]) if len(d) == 3 else 1 for d in DRAWS.values()]
LOW, HIGH = (np.repeat([d[k] for d in DRAWS.values()], WIDTHS) for k in (0, 1))
COLUMNS = dict(zip(DRAWS, np.cumsum([0, *WIDTHS[:-1]]).tolist(), strict=True))  # name -> first column
NUM_DRAWS = 80  # uniforms per face (more than used, so appending draws keeps existing faces unchanged)


@dataclass(frozen=True, eq=False)
class FaceParams:
    """Parameters of ``N`` faces, packed in one tensor so they are cheap to make and to unpack:
    ``values`` ``(N, P)`` float32, one column per scalar and three per RGB colour, in the column order
    of ``widths`` (parameter name -> 1 or 3)."""

    values: Tensor
    widths: dict[str, int]

    def __len__(self) -> int:
        return self.values.shape[0]

    def __getitem__(self, name: str) -> Tensor:
        """Returns parameter ``name``: ``(N,)`` for a scalar, ``(N, 3)`` for a colour."""
        columns = dict(zip(self.widths, self.values.split(list(self.widths.values()), 1), strict=True))
        return columns[name] if self.widths[name] == 3 else columns[name][:, 0]


def sample_face_params(seed: int, indices: Sequence[int]) -> FaceParams:
    """The parameters of faces ``indices`` (non-negative) of ``seed``; face ``i`` depends only on ``(seed, i)``."""
    u = np.stack([np.random.default_rng([seed, int(i)]).random(NUM_DRAWS) for i in indices])  # (N, D)
    u = LOW + (HIGH - LOW) * u[:, : len(LOW)]
    cols = zip(COLUMNS.items(), WIDTHS, strict=True)
    d = {k: u[:, j] if w == 1 else u[:, j : j + w] for (k, j), w in cols}  # name -> (N,) or (N, 3)
    i, f = np.divmod(d["skin"], 1.0)  # interpolate the skin palette
    i, f = i.astype(int), f[:, None]
    skin = (SKIN[i] * (1 - f) + SKIN[i + 1] * f) * d["skin_gain"][:, None]
    hair = HAIR[np.searchsorted(HAIR_CDF, d["hair"])] * d["hair_gain"][:, None]
    top, lips = d["bg"] * 0.7 + d["bg_lift"][:, None], skin + (LIP - skin) * d["lip_mix"][:, None]
    style = STYLES[np.searchsorted(STYLE_CDF, d["style"])]  # (N, 6)
    rx, ry, ex, ey, erx = d["head_rx"], d["head_ry"], d["eye_x"], d["eye_y"], d["eye_rx"]
    nose_y, nose_w = d["nose_y"], d["nose_w"]
    ery, iris_r, vol, mw = erx * d["eye_aspect"], erx * 0.55, style[:, 3] * d["volume"], d["mouth_w"]
    expression = np.searchsorted([0.3, 0.75], d["expression"])  # neutral, smile, open
    mouth_open, eye_open = (expression == 2) * d["open"], 1.0 * (d["closed"] > 0.08)
    direct = (  # noqa: SIM905 (a list literal takes a line per name). Draws used as drawn.
        "clothes rot tx ty scale shoulder_y shoulder_rx hair_length head_rx head_ry jaw light_x light shade "
        "hair_tilt brow_slope brow_bend brow_w brow_len eye_x eye_y eye_rx gaze frame_w nose_y mouth_y mouth_w"
    ).split()
    p = {  # colours (N, 3), scalars (N,) or constants: centres x/y, radii rx/ry, alphas _a
        **{k: d[k] for k in direct},
        "bg_top": top,
        "bg_bottom": top + (d["bg2"] - top) * d["bg_grad"].clip(0.0, None)[:, None],
        "skin": skin,
        "hair": hair,
        "frame": FRAME[d["frame"].astype(int)],
        "iris": IRIS[d["iris"].astype(int)] * d["iris_gain"][:, None],
        "lips": lips,
        "lip_line": lips * 0.45,
        "neck_c": skin * 0.72,
        "ear_c": skin * 0.9,
        "back_c": hair * 0.8,
        "beard_c": hair * 0.85,
        "brow_c": hair * 0.6 + 0.02,
        "shadow_c": skin * 0.78,
        "side_c": skin * 0.7,
        "nostril_c": skin * 0.45,
        # Body: neck, shoulders, neckline; long hair behind the head; ears; head (jaw taper, shading).
        "neck_w": rx * 0.42,
        "neck_y": 0.3,
        "shoulder_ry": 0.42,
        "neckline_y": d["shoulder_y"] - 0.4,
        "neckline_rx": rx * 0.48,
        "neckline_ry": d["neckline"],
        "back_y": 0.2,
        "back_rx": rx + vol + 0.05,
        "back_ry": ry + 0.3,
        "back_a": style[:, 4],
        "ear_x": rx * 0.96,
        "ear_y": ey + 0.07,
        "ear_rx": 0.055 * d["ear"],
        "ear_ry": 0.095 * d["ear"],
        "light_y": -0.3,
        # Beard; hair cap and hairline.
        "beard_rx": rx + 0.015,
        "beard_ry": ry + 0.02,
        "beard_y": nose_y + d["beard_top"] + 0.03,
        "beard_k": -1.5,
        "beard_a": 0.9 * (d["beard"] < 0.14),
        "cap_y": -vol * 0.5,
        "cap_rx": rx + vol,
        "cap_ry": ry + vol,
        "hairline": style[:, 1] + d["hairline"],
        "hair_curve": style[:, 2],
        "fringe": style[:, 5],
        "hair_a": np.where(style[:, 0] > 0, 1.0, d["buzz"]),
        # Brows, eyes and glasses (y relative to the eye line).
        "brow_x": ex + 0.01,
        "brow_dy": -d["brow_raise"],
        "eye_ry": ery,
        "eye_a": eye_open,
        "iris_r": iris_r,
        "pupil_r": iris_r * 0.45,
        "shine_x": iris_r * 0.3,
        "shine_r": iris_r * 0.18,
        "shine_a": eye_open * (d["eye_aspect"] > 0.5),
        "lid_w": 0.008,
        "lid_y": ery * 0.2 + 0.008,
        "lid_side": 2.0 * eye_open - 1.0,
        "glass_r": erx * 1.55,
        "arm_x": rx * 0.97,
        "glasses_a": 1.0 * (d["glasses"] < 0.15),
        # Cheeks, nose, mouth.
        "blush_x": ex + 0.04,
        "blush_y": ey + 0.2,
        "blush_rx": 0.08,
        "blush_ry": 0.05,
        "blush_a": d["blush"].clip(0.0, None),
        "shadow_y": nose_y + 0.01,
        "shadow_rx": nose_w * 1.4,
        "shadow_ry": 0.035,
        "side_x": -nose_w * 0.7,
        "side_w": 0.006,
        "side_y": (ey + nose_y) / 2 + 0.04,
        "side_len": (nose_y - ey) * 0.3,
        "nostril_x": nose_w * 0.75,
        "nostril_rx": 0.018,
        "nostril_ry": 0.011,
        "lip_h": d["lip_w"] + mouth_open,
        "smile": np.where(expression > 0, d["smile"], d["flat"]) / mw**2,
        "inner_rx": mw * 0.85,
        "inner_ry": mouth_open + 1e-3,
        "teeth_y": -mouth_open * 0.4,
        "open_a": 1.0 * (mouth_open > 0),
        "line_len": mw * 0.9,
    }
    values, widths, j = np.empty((len(u), 3 * len(p)), dtype=np.float32), {}, 0
    for name, v in p.items():  # pack into one (N, P) array; column assignment is the fast path
        if np.ndim(v) == 2:
            values[:, j : j + 3], widths[name] = np.clip(v, 0.0, 1.0), 3
        else:
            values[:, j], widths[name] = v, 1
        j += widths[name]
    return FaceParams(torch.from_numpy(values[:, :j].copy()), widths)


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
    img = _render(params, image_size)  # (3, N, H, W); the copy below is a normal tensor
    return img.permute(1, 0, 2, 3).clone(memory_format=torch.contiguous_format)


@torch.inference_mode()  # skips autograd bookkeeping
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
