"""Procedural cartoon faces: a built-in dataset so facegan trains with no download.

Design:

* :func:`sample_face_params` designs faces: face ``i`` draws a fixed list of uniforms from
  ``np.random.default_rng([seed, i])`` (so it depends only on ``(seed, i)``: identical in any worker and
  in any order) and turns them, in numpy, into the final geometry and colours of every part.
* :func:`render_faces` draws a batch with plain torch ops. Every part is a signed distance field on the
  pixel-centre grid in head-local coordinates (the image spans ``[-1, 1]``, so a face looks the same at
  any resolution); a one-pixel linear ramp turns distance into anti-aliased coverage, and parts are
  composited back to front with ``lerp_``. Symmetric parts (eyes, brows, ears, nostrils, glasses) are
  drawn once on ``|x|``; optional ones (glasses, beard, long hair, open mouth) have a per-face alpha and
  are skipped only when no face in the batch has them, so there are no per-face branches.
* Speed: parts are evaluated only in a pixel window that holds them; the image is kept as
  ``(3, N, H, W)`` so per-face values are ``(1, N, 1, 1)`` views of one tensor; no op takes a Python
  float (torch copies those to a tensor on every call). ``ProceduralFaces.__getitems__`` lets a
  DataLoader render a whole batch in one call.
"""

from facegan.data.procedural.dataset import ProceduralFaces
from facegan.data.procedural.params import FaceParams, sample_face_params
from facegan.data.procedural.render import render_faces

__all__ = ["FaceParams", "ProceduralFaces", "render_faces", "sample_face_params"]
