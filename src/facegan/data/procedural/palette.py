"""The procedural faces' design space: palettes, hair styles and the uniform draws of one face."""

from __future__ import annotations

import numpy as np


def _rgb(*colours: tuple[int, int, int]) -> np.ndarray:
    return np.array(colours, dtype=np.float64) / 255.0


SKIN = _rgb(
    (255, 228, 206),
    (243, 201, 172),
    (226, 176, 140),
    (200, 144, 104),
    (168, 112, 76),
    (132, 86, 56),
    (98, 63, 42),
    (70, 46, 32),
)  # light -> dark, interpolated
HAIR = _rgb(
    (22, 18, 18),
    (52, 34, 24),
    (96, 62, 38),
    (146, 100, 60),
    (216, 182, 118),
    (238, 214, 164),
    (168, 72, 34),
    (128, 124, 122),
    (200, 198, 194),
)  # black, browns, blondes, red, greys
HAIR_CDF = np.cumsum([3.0, 3.0, 2.0, 1.5, 1.5, 0.7, 1.0, 0.8, 0.6])
HAIR_CDF /= HAIR_CDF[-1]  # ends at exactly 1.0, so searchsorted on a draw in [0, 1) stays in range
IRIS = _rgb((74, 44, 24), (40, 26, 18), (66, 112, 168), (78, 122, 84), (128, 98, 52), (104, 116, 124))
LIP = _rgb((170, 60, 70))
FRAME = _rgb((18, 18, 20), (92, 60, 40), (150, 150, 156), (130, 30, 34))
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
    "tilt": (-0.18, 0.18),
    "volume": (0.6, 1.4),
    "hair_length": (0.55, 1.1),
    "clothes": (0.05, 0.9, 3),
    "rx": (0.39, 0.48),
    "ry": (0.54, 0.63),
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
