"""Procedurally generated, textured head mesh for demos and smoke tests.

This is NOT the FLAME model: it has none of FLAME's topology, shape space,
expression space or skinning, and no FLAME data went into it. It exists only so
that the renderer can show a shaded, textured head on a machine that has no
licensed FLAME files. Replace it with a FLAME-format demo head once one exists.

Conventions (right-handed, metres, origin near the centre of the skull):

* +y is up, +z points out of the face towards a frontal viewer (the nose tip
  is the largest z), +x points to the head's own left, which is the viewer's
  right in a frontal view.
* Faces are counter-clockwise seen from outside (outward normals).
* UVs follow the OBJ convention: u to the right, v up, (0, 0) is the
  bottom-left corner of the image. u = 0.5 is the middle of the face, the
  seam (smallest and largest u) runs down the back of the head, the largest v
  is the crown.
* ``texture`` rows are stored top-down like an image file: row 0 is v = 1.
  Texel (row i, column j) has its centre at u = (j + 0.5) / W,
  v = 1 - (i + 0.5) / H.
* The UVs span only [0.5 / W, 1 - 0.5 / W] x [0.5 / H, 1 - 0.5 / H]: the seam
  and the poles land on the centres of the outermost texels, whose colours
  match across the seam. A bilinear lookup (grid_sample, zero padding) at
  exactly u = 0 or 1 would blend in the padding and draw a dark seam line.

The surface is a radial height field r(direction) sampled on a UV sphere, so it
is star-shaped around the origin: closed, free of self-intersections and
outward-oriented by construction as long as the radius stays positive.
Geometry and texture are both written in the same (longitude, latitude)
coordinates, which keeps painted features (eyes, lips, hairline) on top of the
sculpted ones. The head is life-sized: about 0.15 m wide (0.18 m across the
ears), 0.23 m from crown to chin and 0.22 m from the back to the nose tip, on
a short neck that ends at y = -0.16 m.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["ProceduralHead", "procedural_head"]

# Landmarks in (longitude, latitude) radians. Longitude phi = atan2(x, z) is 0
# in the middle of the face and +-pi at the back; latitude is the elevation
# angle above the horizontal plane through the origin. Shared by the sculpting
# and the painting so the two stay registered.
_EYE = (0.36, 0.04)
_BROW_LAT = 0.2
_NOSE_TIP_LAT = -0.25
_NOSE_BASE_LAT = -0.37
_MOUTH_LAT = -0.6
_UPPER_LIP_LAT = _MOUTH_LAT + 0.035
_LOWER_LIP_LAT = _MOUTH_LAT - 0.04
_CHIN_LAT = -0.92
_EAR = (1.62, -0.12)
_HAIR_VOLUME = 0.005  # metres of hair added on top of the skull

# Hairline latitude as a function of |longitude|: a high forehead, sideburns in
# front of the ears, a loop over the ears, and a low nape at the back.
_HAIRLINE_PHI = (0.0, 0.4, 0.95, 1.18, 1.28, 1.4, 1.5, 1.62, 1.78, 1.95, 2.3, 2.8, math.pi)
_HAIRLINE_LAT = (0.74, 0.72, 0.58, 0.36, 0.0, -0.06, 0.2, 0.27, 0.18, -0.05, -0.42, -0.52, -0.52)


@dataclass(frozen=True)
class ProceduralHead:
    """A closed, textured head mesh; see the module docstring for conventions.

    Attributes:
        vertices: [V, 3] float32 positions in metres (+y up, +z towards the
            viewer, +x to the head's left).
        faces: [F, 3] int64 vertex indices, counter-clockwise from outside.
        uvs: [T, 2] float32 texture coordinates in [0, 1], v up (OBJ). T > V
            because vertices on the back seam and at the poles carry several
            texture coordinates.
        uv_faces: [F, 3] int64 indices into ``uvs``, corner for corner with
            ``faces``.
        texture: [3, Ht, Wt] float32 RGB in [0, 1]; row 0 is the top of the
            image (v = 1).
    """

    vertices: torch.Tensor
    faces: torch.Tensor
    uvs: torch.Tensor
    uv_faces: torch.Tensor
    texture: torch.Tensor


# ---------------------------------------------------------------------------
# Small helpers (numpy, float64)
# ---------------------------------------------------------------------------


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    """C1 ramp from 0 at e0 to 1 at e1 (e0 > e1 gives a falling ramp)."""
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _wrap(angle: np.ndarray) -> np.ndarray:
    """Wrap to [-pi, pi) so features near the back seam stay continuous."""
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


def _bump(phi, lat, phi0, lat0, s_phi, s_lat) -> np.ndarray:
    """Unit Gaussian blob centred at (phi0, lat0) on the sphere."""
    d_phi = _wrap(phi - phi0) / s_phi
    d_lat = (lat - lat0) / s_lat
    return np.exp(-0.5 * (d_phi * d_phi + d_lat * d_lat))


def _pair(phi, lat, phi0, lat0, s_phi, s_lat) -> np.ndarray:
    """Mirror-symmetric pair of blobs at +-phi0 (eyes, cheeks, ears)."""
    return _bump(phi, lat, phi0, lat0, s_phi, s_lat) + _bump(phi, lat, -phi0, lat0, s_phi, s_lat)


def _smooth_interp(x: np.ndarray, xs, ys) -> np.ndarray:
    """Piecewise smoothstep interpolation: C1 where np.interp has kinks."""
    xs = np.asarray(xs, dtype=np.float64)
    ys = np.asarray(ys, dtype=np.float64)
    k = np.clip(np.searchsorted(xs, x, side="right") - 1, 0, len(xs) - 2)
    t = np.clip((x - xs[k]) / (xs[k + 1] - xs[k]), 0.0, 1.0)
    return ys[k] + (ys[k + 1] - ys[k]) * t * t * (3.0 - 2.0 * t)


def _smax(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth maximum (soft union of radial surfaces) with blend width k."""
    return np.maximum(a, b) + k * np.log1p(np.exp(-np.abs(a - b) / k))


def _hair_mask(phi: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """1 on the scalp, 0 on skin, with a soft hairline."""
    line = _smooth_interp(np.abs(phi), _HAIRLINE_PHI, _HAIRLINE_LAT)
    return _smoothstep(line - 0.03, line + 0.03, lat)


def _sample_angles(count: int, lo: float, hi: float, density) -> np.ndarray:
    """count + 1 angles from lo to hi, spaced inversely to ``density``.

    Concentrates the fixed vertex budget on the face instead of spreading it
    evenly over the back of the head.
    """
    grid = np.linspace(lo, hi, 4097)
    dens = density(grid)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]))])
    cdf /= cdf[-1]
    out = np.interp(np.linspace(0.0, 1.0, count + 1), cdf, grid)
    out[0], out[-1] = lo, hi
    return out


# ---------------------------------------------------------------------------
# Shape
# ---------------------------------------------------------------------------


def _skull_and_neck(phi: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Radius of the featureless head: a deformed superellipsoid plus a neck."""
    cl = np.cos(lat)
    dx, dy, dz = cl * np.sin(phi), np.sin(lat), cl * np.cos(phi)
    low = _smoothstep(-0.1, -0.8, lat)  # 0 above the cheekbones, 1 at the jaw
    face = _smoothstep(0.3, 0.97, np.cos(phi))  # chin width
    frontish = _smoothstep(-0.2, 0.8, np.cos(phi))
    a = 0.074 * (1.0 - 0.2 * low)  # the jaw is narrower than the cranium
    # Blend (rather than switch) the half-axes between hemispheres: a jump in
    # curvature at the equator shows up as a crease in the shading.
    below = _smoothstep(0.15, -0.15, dy)
    behind = _smoothstep(0.15, -0.15, dz)
    b = 0.108 + (0.07 + 0.05 * face - 0.108) * below  # jaw line rises to the ears
    c = 0.09 + (0.098 * (1.0 - 0.3 * low) - 0.09) * behind
    p = 2.3 + 1.7 * low * frontish  # squarer lower face: flat front, real chin
    q = (np.abs(dx) / a) ** p + (np.abs(dy) / b) ** p + (np.abs(dz) / c) ** p
    head = q ** (-1.0 / p)

    # Neck: elliptic cylinder (axis along y, slightly behind the origin) cut
    # flat at the bottom and, hidden inside the skull, at the top. Distances
    # along the ray are solved in closed form.
    z0, rx, rz, cut, top = -0.028, 0.047, 0.05, 0.16, 0.02
    qa = (dx / rx) ** 2 + (dz / rz) ** 2
    qb = -2.0 * dz * z0 / rz**2
    qc = (z0 / rz) ** 2 - 1.0
    t_cyl = -2.0 * qc / np.maximum(qb + np.sqrt(qb * qb - 4.0 * qa * qc), 1e-9)
    t_cap = np.where(dy < 0.0, cut / np.maximum(-dy, 1e-9), top / np.maximum(dy, 1e-9))
    neck = -_smax(-t_cyl, -t_cap, 0.015)
    return _smax(head, neck, 0.008)


def _features(phi: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Radial offsets in metres that sculpt the face onto the skull."""
    e_phi, e_lat = _EYE
    off = np.zeros_like(phi)

    # Nose: a ridge that rises from the bridge to the tip, widening as it goes,
    # then tucks under the tip; plus the nostril wings.
    rise = _smoothstep(_EYE[1] + 0.08, _NOSE_TIP_LAT, lat)
    tuck = _smoothstep(_NOSE_TIP_LAT + 0.02, _NOSE_BASE_LAT, lat)
    height = (0.004 + 0.019 * rise**1.5) * (1.0 - tuck)
    height *= _smoothstep(_BROW_LAT + 0.05, _EYE[1], lat)
    width = 0.05 + 0.05 * rise
    off += height * np.exp(-0.5 * (_wrap(phi) / width) ** 2)
    off += 0.008 * _pair(phi, lat, 0.11, _NOSE_TIP_LAT - 0.06, 0.05, 0.05)

    # Eyes: recessed sockets holding slightly bulging eyeballs, under a brow.
    off -= 0.011 * _pair(phi, lat, e_phi, e_lat, 0.17, 0.1)
    off += 0.006 * _pair(phi, lat, e_phi, e_lat, 0.11, 0.06)
    brow_span = np.exp(-0.5 * (_wrap(phi) / 0.6) ** 4)
    off += 0.006 * brow_span * np.exp(-0.5 * ((lat - _BROW_LAT) / 0.07) ** 2)

    # Cheekbones and the slight hollow of the temples.
    off += 0.006 * _pair(phi, lat, 0.62, -0.15, 0.2, 0.16)
    off -= 0.003 * _pair(phi, lat, 1.05, 0.3, 0.2, 0.15)

    # Mouth: the teeth push the whole muzzle forward; two lips and a slit.
    off += 0.008 * _bump(phi, lat, 0.0, _MOUTH_LAT + 0.05, 0.3, 0.18)
    off += 0.004 * _bump(phi, lat, 0.0, _UPPER_LIP_LAT, 0.15, 0.035)
    off += 0.005 * _bump(phi, lat, 0.0, _LOWER_LIP_LAT, 0.13, 0.04)
    off -= 0.003 * _bump(phi, lat, 0.0, _MOUTH_LAT, 0.17, 0.012)

    # Chin: a knob below the groove under the lower lip.
    off -= 0.003 * _bump(phi, lat, 0.0, _LOWER_LIP_LAT - 0.1, 0.14, 0.035)
    off += 0.007 * _bump(phi, lat, 0.0, _CHIN_LAT, 0.18, 0.1)

    # Ears: an elongated lobe with a hollow (concha) in front of its centre.
    ear_phi, ear_lat = _EAR
    off += 0.019 * _pair(phi, lat, ear_phi, ear_lat, 0.11, 0.17)
    off -= 0.007 * _pair(phi, lat, ear_phi - 0.03, ear_lat - 0.03, 0.05, 0.07)

    # Hair sits a few millimetres proud of the scalp.
    off += _HAIR_VOLUME * _hair_mask(phi, lat)
    return off


def _radius(phi: np.ndarray, lat: np.ndarray) -> np.ndarray:
    return _skull_and_neck(phi, lat) + _features(phi, lat)


# ---------------------------------------------------------------------------
# Texture
# ---------------------------------------------------------------------------


def _mix(base: np.ndarray, colour, weight: np.ndarray) -> np.ndarray:
    """Blend ``colour`` over ``base`` ([H, W, 3]) with per-texel weight."""
    w = np.clip(weight, 0.0, 1.0)[..., None]
    return base * (1.0 - w) + np.asarray(colour, dtype=np.float64) * w


def _paint_face(img: np.ndarray, phi: np.ndarray, lat: np.ndarray, eyes: bool = True) -> np.ndarray:
    """Paint brows, eyes and lips; every one fades to zero well inside the
    window the caller passes, so painting only there leaves no edges.

    ``eyes=False`` leaves the eyes unpainted, for heads with eyeballs of their own
    (the FLAME-format demo head paints its eyelids itself).
    """
    aphi = np.abs(phi)

    # Eyebrows: tapered arcs above each eye.
    t = (aphi - 0.12) / 0.5  # 0 at the inner end, 1 at the outer end
    arc = _BROW_LAT - 0.005 + 0.05 * np.sin(math.pi * np.clip(t, 0.0, 1.0) * 0.8)
    thick = 0.034 * (1.0 - 0.6 * t)
    inside = _smoothstep(0.0, 0.06, t) * _smoothstep(1.0, 0.9, t)
    brow = inside * _smoothstep(1.0, 0.7, np.abs(lat - arc) / np.maximum(thick, 1e-3))
    img = _mix(img, (0.24, 0.15, 0.09), 0.9 * brow)

    if eyes:
        img = _paint_eyes(img, phi, lat)
    return _paint_lips(img, phi, lat)


def _paint_eyes(img: np.ndarray, phi: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Eyes: almond-shaped white, blue iris, pupil, a highlight, a lash line."""
    aphi = np.abs(phi)
    e_phi, e_lat = _EYE
    x = (aphi - e_phi) / 0.16
    y = (lat - e_lat) / 0.055
    lid = 1.0 - x * x  # half-height of the opening; negative beyond the corners
    eye = _smoothstep(0.05, -0.05, np.abs(y) - lid)
    rad = np.hypot((aphi - e_phi) * math.cos(e_lat), lat - e_lat)
    iris = eye * _smoothstep(0.062, 0.055, rad)
    img = _mix(img, (0.95, 0.94, 0.91), eye)
    img = _mix(img, (0.22, 0.45, 0.66), iris)
    img = _mix(img, (0.12, 0.24, 0.38), iris * _smoothstep(0.045, 0.06, rad))
    img = _mix(img, (0.03, 0.03, 0.04), eye * _smoothstep(0.027, 0.022, rad))
    glint = np.hypot(aphi - e_phi + 0.012 * np.sign(phi), lat - e_lat - 0.015)
    img = _mix(img, (1.0, 1.0, 1.0), eye * _smoothstep(0.012, 0.007, glint))
    lash = _smoothstep(0.09, 0.0, np.abs(y - lid - 0.05)) * _smoothstep(1.1, 0.95, np.abs(x))
    return _mix(img, (0.15, 0.09, 0.07), 0.85 * lash)


def _paint_lips(img: np.ndarray, phi: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Lips: a cupid's-bow upper lip, a fuller lower lip, a dark slit."""
    aphi = np.abs(phi)
    x = phi / 0.19
    fullness = np.clip(1.0 - x * x, 0.0, None) ** 0.6
    bow = 1.0 - 0.3 * np.exp(-((x / 0.12) ** 2))
    top = _MOUTH_LAT + 0.065 * fullness * bow
    bottom = _MOUTH_LAT - 0.075 * fullness
    outside = np.maximum(np.maximum(lat - top, bottom - lat), 0.1 * (np.abs(x) - 1.0))
    img = _mix(img, (0.74, 0.33, 0.34), _smoothstep(0.006, -0.004, outside))
    slit = _smoothstep(0.012, 0.004, np.abs(lat - _MOUTH_LAT)) * _smoothstep(0.19, 0.15, aphi)
    return _mix(img, (0.35, 0.12, 0.13), slit)


def _texel_uv(t: np.ndarray, size: int) -> np.ndarray:
    """Map t in [0, 1] onto [0.5 / size, 1 - 0.5 / size], first to last texel centre."""
    return (0.5 + t * (size - 1)) / size


def _paint_texture(size: int) -> np.ndarray:
    """Paint skin, hair and the face in (longitude, latitude) space.

    Returns [size, size, 3] float64 with row 0 at v = 1 (the crown).
    """
    # Column 0 and column size-1 both sit on the seam (phi = -pi and +pi),
    # row 0 on the crown and row size-1 on the bottom pole; see _texel_uv.
    phi_1d = np.linspace(-math.pi, math.pi, size)
    lat_1d = np.linspace(0.5 * math.pi, -0.5 * math.pi, size)
    return _paint_lonlat(phi_1d, lat_1d)


def _paint_lonlat(phi_1d: np.ndarray, lat_1d: np.ndarray, eyes: bool = True) -> np.ndarray:
    """Paint the head on the texel grid of columns ``phi_1d`` x rows ``lat_1d``.

    Returns [len(lat_1d), len(phi_1d), 3] float64 in [0, 1]. Shared with the
    FLAME-format demo head, which lays its texture atlas out differently.
    """
    phi, lat = np.meshgrid(phi_1d, lat_1d)

    # Skin: a warm base with gentle, low-frequency blotchiness. Integer
    # frequencies in phi keep the pattern continuous across the seam.
    blotch = (
        0.035 * np.sin(3.0 * phi + 2.0 * lat + 0.7)
        + 0.025 * np.sin(5.0 * phi - 3.0 * lat + 1.9)
        + 0.02 * np.cos(7.0 * phi + 5.0 * lat)
    )
    # Rosy cheeks, nose tip and ears, dark nostrils.
    tint = np.zeros(phi.shape + (3,))
    tint[..., 1] -= 0.07 * _pair(phi, lat, 0.6, -0.3, 0.16, 0.12)
    tint[..., 1] -= 0.08 * _bump(phi, lat, 0.0, _NOSE_TIP_LAT, 0.08, 0.06)
    tint[..., 1] -= 0.07 * _pair(phi, lat, _EAR[0], _EAR[1], 0.1, 0.16)
    tint[..., 2] += 0.5 * tint[..., 1]
    tint -= 0.2 * _pair(phi, lat, 0.1, _NOSE_BASE_LAT, 0.03, 0.02)[..., None]
    # Shade the neck towards its cut so the bottom reads as shadowed.
    shade = 1.0 + blotch - 0.25 * _smoothstep(-1.0, -1.5, lat)
    img = np.array([0.88, 0.69, 0.57]) * shade[..., None] + tint

    # Hair: dark brown, streaked along the meridians, lighter on the crown.
    streak = 0.12 * np.sin(48.0 * phi + 4.0 * np.sin(6.0 * lat)) + 0.06 * np.sin(
        97.0 * phi + 3.0 * lat
    )
    hair_shade = 1.0 + streak + 0.25 * _smoothstep(0.8, 1.5, lat)
    h = _hair_mask(phi, lat)[..., None]
    img = img * (1.0 - h) + np.array([0.2, 0.13, 0.08]) * hair_shade[..., None] * h

    # The small facial details only touch |phi| < 0.75, -0.75 < lat < 0.4:
    # paint them on that window alone, which is most of the speed-up.
    cols = np.flatnonzero(np.abs(phi_1d) < 0.75)
    rows = np.flatnonzero((lat_1d > -0.75) & (lat_1d < 0.4))
    if cols.size and rows.size:
        win = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        img[win] = _paint_face(img[win], phi[win], lat[win], eyes=eyes)
    return np.clip(img, 0.0, 1.0)


# ---------------------------------------------------------------------------
# Mesh
# ---------------------------------------------------------------------------


def procedural_head(resolution: int = 64, texture_size: int = 256) -> ProceduralHead:
    """Build the demo head: a UV sphere with ``resolution`` latitude bands and
    ``resolution`` longitude segments, sculpted into a head and textured.

    V = (resolution - 1) * resolution + 2 vertices, F = 2 * resolution *
    (resolution - 1) faces, T = (resolution - 1) * (resolution + 1) +
    2 * resolution texture coordinates. Deterministic: no randomness at all.
    """
    if resolution < 8:
        raise ValueError(f"resolution must be >= 8, got {resolution}")
    if texture_size < 16:
        raise ValueError(f"texture_size must be >= 16, got {texture_size}")
    n = int(resolution)
    half_pi = 0.5 * math.pi

    # Longitudes from the back (-pi) through the face (0) to the back again
    # (+pi, the seam); latitudes from the crown (+pi/2) down to the neck.
    lons = _sample_angles(
        n, -math.pi, math.pi, lambda p: 1.0 + 1.5 * np.exp(-0.5 * (p / 0.75) ** 2)
    )
    lats = _sample_angles(
        n, -half_pi, half_pi, lambda t: 1.0 + 1.2 * np.exp(-0.5 * ((t + 0.3) / 0.6) ** 2)
    )[::-1]

    # Vertices: top pole, rings 1..n-1 (n columns each), bottom pole.
    ring_lat = lats[1:-1]
    lat_g, lon_g = np.meshgrid(ring_lat, lons[:-1], indexing="ij")
    dirs = np.stack(
        [np.cos(lat_g) * np.sin(lon_g), np.sin(lat_g), np.cos(lat_g) * np.cos(lon_g)], axis=-1
    )
    ring_pts = dirs * _radius(lon_g, lat_g)[..., None]
    top = np.array([0.0, _radius(np.zeros(1), np.full(1, half_pi))[0], 0.0])
    bottom = np.array([0.0, -_radius(np.zeros(1), np.full(1, -half_pi))[0], 0.0])
    vertices = np.concatenate([top[None], ring_pts.reshape(-1, 3), bottom[None]])

    # Texture coordinates: rings carry n + 1 columns (the seam column appears
    # at both ends of u); each pole gets one coordinate per segment, at
    # mid-segment, so the pole fans do not collapse to one texel column.
    size = int(texture_size)
    u_cols = _texel_uv((lons + math.pi) / (2.0 * math.pi), size)
    v_rows = _texel_uv(0.5 + lats / math.pi, size)
    ring_uv = np.stack(np.broadcast_arrays(u_cols[None, :], v_rows[1:-1, None]), axis=-1)
    u_mid = 0.5 * (u_cols[:-1] + u_cols[1:])
    top_uv = np.stack([u_mid, np.full(n, v_rows[0])], axis=-1)
    bottom_uv = np.stack([u_mid, np.full(n, v_rows[-1])], axis=-1)
    uvs = np.concatenate([ring_uv.reshape(-1, 2), top_uv, bottom_uv])

    # Index helpers. Ring r is 0-based over the n - 1 interior rings.
    j = np.arange(n)
    jn = (j + 1) % n  # vertex columns wrap; uv columns do not (seam)
    top_v, bottom_v = 0, 1 + (n - 1) * n
    top_t, bottom_t = (n - 1) * (n + 1), (n - 1) * (n + 1) + n

    def vid(r, col):
        return 1 + r * n + col

    def tid(r, col):
        return r * (n + 1) + col

    faces, uv_faces = [], []
    # Crown fan: (pole, left, right) is counter-clockwise seen from outside.
    faces.append(np.stack([np.full(n, top_v), vid(0, j), vid(0, jn)], axis=-1))
    uv_faces.append(np.stack([top_t + j, tid(0, j), tid(0, j + 1)], axis=-1))
    # Bands: quad (a b / c d) split into (a, c, d) and (a, d, b).
    r = np.arange(n - 2)[:, None]
    a, b, c, d = vid(r, j), vid(r, jn), vid(r + 1, j), vid(r + 1, jn)
    ta, tb, tc, td = tid(r, j), tid(r, j + 1), tid(r + 1, j), tid(r + 1, j + 1)
    faces.append(np.stack([a, c, d], axis=-1).reshape(-1, 3))
    faces.append(np.stack([a, d, b], axis=-1).reshape(-1, 3))
    uv_faces.append(np.stack([ta, tc, td], axis=-1).reshape(-1, 3))
    uv_faces.append(np.stack([ta, td, tb], axis=-1).reshape(-1, 3))
    # Neck fan: (left, pole, right).
    faces.append(np.stack([vid(n - 2, j), np.full(n, bottom_v), vid(n - 2, jn)], axis=-1))
    uv_faces.append(np.stack([tid(n - 2, j), bottom_t + j, tid(n - 2, j + 1)], axis=-1))

    texture = _paint_texture(size)
    return ProceduralHead(
        vertices=torch.from_numpy(vertices.astype(np.float32)),
        faces=torch.from_numpy(np.concatenate(faces).astype(np.int64)),
        uvs=torch.from_numpy(uvs.astype(np.float32)),
        uv_faces=torch.from_numpy(np.concatenate(uv_faces).astype(np.int64)),
        texture=torch.from_numpy(np.ascontiguousarray(texture.transpose(2, 0, 1), np.float32)),
    )
