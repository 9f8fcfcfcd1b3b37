"""Face designs: face ``i`` of a seed turned into the geometry and colours of every part (numpy),
from the design space below (palettes, hair styles and the uniform draws of one face)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


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
