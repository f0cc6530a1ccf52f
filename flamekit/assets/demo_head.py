"""The built-in demo head: a procedural head in FLAME format. It is NOT the FLAME model.

Users without the licensed FLAME files still need a model that the whole pipeline
(fitting, rendering, landmarks) can run on, and the tests need one when the licensed data
is absent. :func:`demo_head` builds one from scratch, with no FLAME data in it: its own
mesh, blendshapes, joints, skinning weights, texture and 68-point landmark embedding, all
in the layout of :class:`~flamekit.model.data.FlameData` and
:class:`~flamekit.model.data.LandmarkEmbedding`. ``data.is_flame`` is False and
``data.release`` says "not FLAME", so nothing can mistake it for the real model.

Geometry (metres, life-size, origin near the centre of the skull; +y up, +z out of the
face, +x to the head's own left; triangles counter-clockwise seen from outside):

* The skin is the radial height field of :mod:`flamekit.assets.procedural_head` (same
  sculpting and painting) sampled on a UV sphere whose longitudes are mirror-symmetric,
  with the vertex budget concentrated on the face.
* Mouth: the ring at the mouth latitude is split between the mouth corners: the upper
  lip keeps the ring's vertices (skinned to the head), the lower lip gets its own copies
  (skinned to the jaw), so a jaw rotation opens a slit. A closed pocket behind the slit
  (teeth and a dark throat painted on it) hides the inside of the skull.
* Eyes: two closed spheres with their own vertices, skinned only to their eye joints,
  with the iris on +z. The skin in front of them is pushed along z: in front of the
  eyeball (the lids) outside an almond-shaped opening and behind it inside, so the
  eyeball shows through the opening whatever way it is rotated.
* Joints, in FLAME order: global (at the neck base), neck (skull base), jaw (between the
  jaw hinges), left eye, right eye (eyeball centres).
* ``posedirs``: a single pose corrective, for the jaw (it keeps the skin between the
  head and the jaw from caving in as the mouth opens); neck and eye rotations have none.
* ``shapedirs``: 20 identity components then 10 expression components (see
  :data:`IDENTITY_NAMES`, :data:`EXPRESSION_NAMES`), smooth displacement fields in metres
  per unit coefficient (about one standard deviation: a few millimetres to a centimetre).
  Around the eyes every component except the eyelid one moves the skin rigidly with the
  eyeball, and eyeballs only ever translate, so the eyes never deform.

Texture atlas (``texture`` is [S,S,3], row 0 at v = 1): the top three quarters hold the
head in (longitude, latitude) like the procedural head; the bottom quarter holds the
eyeball (an azimuthal map around the pupil, shared by both eyes) on the left and the
mouth pocket on the right.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from flamekit.assets.procedural_head import (
    _BROW_LAT,
    _EAR,
    _EYE,
    _MOUTH_LAT,
    _NOSE_BASE_LAT,
    _NOSE_TIP_LAT,
    _mix,
    _paint_lonlat,
    _radius,
    _sample_angles,
    _smax,
    _smooth_interp,
    _smoothstep,
)
from flamekit.model.data import FlameData, LandmarkEmbedding, validate_flame_data

__all__ = [
    "DEMO_RELEASE",
    "EXPRESSION_NAMES",
    "IDENTITY_NAMES",
    "DemoHead",
    "demo_head",
]

DEMO_RELEASE = "flamekit demo head (procedural, not FLAME)"

IDENTITY_NAMES = (
    "head_width",
    "crown_height",
    "head_depth",
    "face_length",
    "nose_projection",
    "nose_width",
    "jaw_width",
    "chin_projection",
    "cheek_fullness",
    "eye_spacing",
    "brow_ridge",
    "forehead_slope",
    "mouth_width",
    "lip_fullness",
    "ear_protrusion",
    "neck_thickness",
    "eye_height",
    "nose_bridge",
    "cheekbones",
    "overall_size",
)
EXPRESSION_NAMES = (
    "smile",
    "lip_pucker",
    "brow_raise",
    "brow_frown",
    "eye_squint",
    "cheek_puff",
    "mouth_stretch",
    "upper_lip_raise",
    "lower_lip_depress",
    "nose_wrinkle",
)

# Joint indices (FLAME order).
_GLOBAL, _NECK, _JAW, _LEFT_EYE, _RIGHT_EYE = range(5)
_PARENTS = (-1, 0, 1, 1, 1)

# Skin sampling: longitude segments (even, for mirror symmetry) and latitude bands.
_N_LON = 88
_N_LAT = 56

# Mouth: the slit runs along the ring at _MOUTH_LAT between longitudes +-_MOUTH_HALF.
_MOUTH_HALF = 0.17
# Pocket cross-section, (depth behind the lip, height above it) in metres, from the
# upper lip edge to the back wall and from the lower lip edge to the back wall: the inner
# lip, the front and the biting edge of the teeth (which reach past the lip line, so an
# open mouth shows them), the back of the teeth, the palate or the tongue.
_POCKET_UPPER = (
    (0.003, 0.0),
    (0.0045, -0.0035),
    (0.0075, -0.004),
    (0.012, 0.004),
    (0.024, 0.0085),
    (0.032, 0.0065),
)
_POCKET_LOWER = (
    (0.003, 0.0),
    (0.0045, 0.003),
    (0.0075, 0.0035),
    (0.012, -0.004),
    (0.024, -0.0095),
    (0.032, -0.0075),
)
# Texture row parameter of the upper cross-section points (the lower ones mirror it to
# 1 - s): the lip edge is 0, the back wall 0.5. Teeth and lips get most of the rows.
_POCKET_TEX = (0.06, 0.2, 0.3, 0.36, 0.43, 0.48)
_TEETH = (0.065, 0.3)  # teeth between these row parameters (from the inner lip's end)

# Eyes: eyeball radius, and the opening in the lids around the pupil (frontal x, y).
_EYE_RADIUS = 0.0125
_EYE_RINGS, _EYE_SEGMENTS = 12, 24
_OPEN_HALF_WIDTH = 0.0102  # corner to centre
_OPEN_UP, _OPEN_DOWN = 0.0047, 0.0036  # upper / lower lid above / below the centre line
_CANTHAL_TILT = 0.0007  # outer corners slightly higher than the inner ones
_OPEN_SOFT = 0.0012  # half-width of the lid-to-opening transition
_LID_GAP = 0.002  # lids sit this far in front of the eyeball, the opening this far behind

# Neck cylinder of the procedural head (axis along y at z = _NECK_Z).
_NECK_Z, _NECK_RX, _NECK_RZ = -0.028, 0.047, 0.05


@dataclass
class DemoHead:
    """The demo head: model arrays, landmark embedding and albedo texture.

    Attributes:
        data: the model (``is_flame`` False).
        landmarks: the 68-point iBUG embedding (51 static + 17 yaw-dependent points).
        texture: [H,W,3] float32 RGB albedo in [0, 1]; row 0 is v = 1 (image order).

    :func:`demo_head` returns fresh copies of the arrays, so callers may modify them.
    """

    data: FlameData
    landmarks: LandmarkEmbedding
    texture: np.ndarray


def demo_head(texture_size: int = 256) -> DemoHead:
    """Build the demo head (deterministic; cached, about 0.2 s the first time).

    Args:
        texture_size: S, the texture is [S,S,3]; at least 64.

    Returns:
        A :class:`DemoHead` whose arrays are copies, safe to modify.
    """
    if texture_size < 64:
        raise ValueError(f"texture_size must be >= 64, got {texture_size}")
    head = _build(int(texture_size))
    d, lm = head.data, head.landmarks
    data = FlameData(
        v_template=d.v_template.copy(),
        faces=d.faces.copy(),
        shapedirs=d.shapedirs.copy(),
        num_identity=d.num_identity,
        posedirs=d.posedirs.copy(),
        j_regressor=d.j_regressor.copy(),
        lbs_weights=d.lbs_weights.copy(),
        parents=d.parents.copy(),
        release=d.release,
        source=d.source,
        uvs=d.uvs.copy(),
        uv_faces=d.uv_faces.copy(),
        is_flame=False,
    )
    landmarks = LandmarkEmbedding(
        static_faces=lm.static_faces.copy(),
        static_bary=lm.static_bary.copy(),
        dynamic_faces=lm.dynamic_faces.copy(),
        dynamic_bary=lm.dynamic_bary.copy(),
        full_faces=lm.full_faces.copy(),
        full_bary=lm.full_bary.copy(),
        source=lm.source,
    )
    return DemoHead(data=data, landmarks=landmarks, texture=head.texture.copy())


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


def _direction(phi: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Unit vectors [...,3] for longitude phi (0 = +z, +pi/2 = +x) and latitude lat."""
    cl = np.cos(lat)
    return np.stack([cl * np.sin(phi), np.sin(lat), cl * np.cos(phi)], axis=-1)


def _surface(phi, lat) -> np.ndarray:
    """Point [...,3] of the procedural skin (before the eyelids) at (phi, lat)."""
    phi, lat = np.broadcast_arrays(np.asarray(phi, np.float64), np.asarray(lat, np.float64))
    return _direction(phi, lat) * _radius(phi, lat)[..., None]


def _gauss(p: np.ndarray, centre, sigma) -> np.ndarray:
    """Anisotropic Gaussian blob [N] of points p [N,3]."""
    d = (p - np.asarray(centre, np.float64)) / np.asarray(sigma, np.float64)
    return np.exp(-0.5 * np.sum(d * d, axis=-1))


def _mirror_gauss(p: np.ndarray, centre, sigma) -> np.ndarray:
    """A blob at ``centre`` plus its mirror image across x = 0."""
    c = np.asarray(centre, np.float64)
    return _gauss(p, c, sigma) + _gauss(p, c * (-1.0, 1.0, 1.0), sigma)


def _softplus(x: np.ndarray, k: float) -> np.ndarray:
    """Smooth max(x, 0) with rounding width k, so displacement fields have no kinks."""
    return k * np.logaddexp(0.0, x / k)


def _side(x: np.ndarray) -> np.ndarray:
    """Smooth sign of x (mirror-symmetric fields push both sides outward)."""
    return np.tanh(x / 0.004)


def _vertex_normals(v: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit normals [V,3] (zero for unreferenced vertices)."""
    fn = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, faces[:, k], fn)
    return n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)


# ---------------------------------------------------------------------------
# Eyes
# ---------------------------------------------------------------------------


def _opening(dx: np.ndarray, dy: np.ndarray, open_scale: float) -> np.ndarray:
    """Signed distance-like measure of the lid opening: < 0 inside, > 0 on the lids.

    dx is the frontal offset from the pupil towards the outer corner, dy upwards.
    ``open_scale`` scales the lid heights (1 open, 0 closed along the centre line).
    """
    u = dx / _OPEN_HALF_WIDTH
    arch = 1.0 - u * u
    top = _OPEN_UP * open_scale * arch + _CANTHAL_TILT * u
    bottom = -_OPEN_DOWN * open_scale * arch + _CANTHAL_TILT * u
    return np.maximum(dy - top, bottom - dy)


def _eye_frame(p: np.ndarray, centres: np.ndarray):
    """(dx towards the outer corner, dy, eye index) of points p [N,3] for the nearer eye."""
    k = (p[:, 0] < 0).astype(np.int64)  # 0 = left eye (+x), 1 = right eye (-x)
    c = centres[k]
    dx = (p[:, 0] - c[:, 0]) * np.where(k == 0, 1.0, -1.0)
    return dx, p[:, 1] - c[:, 1], k


def _lid_z(p: np.ndarray, centres: np.ndarray, open_scale: float = 1.0) -> np.ndarray:
    """z of the skin at the frontal position of p [N,3] once the lids wrap the eyeballs.

    Where an eyeball lies under the face (in the frontal view), the skin stays at least
    _LID_GAP in front of it (the lids); inside the opening it sinks _LID_GAP behind it,
    so the eyeball shows. Only z changes, so the opening seen from the front is exactly
    the almond of :func:`_opening`.
    """
    dx, dy, k = _eye_frame(p, centres)
    c = centres[k]
    q = _EYE_RADIUS**2 - dx * dx - dy * dy
    under = (q > 0.0) & (p[:, 2] > 0.0)  # the face, not the back of the head
    z_eye = c[:, 2] + np.sqrt(np.maximum(q, 0.0))
    z0 = p[:, 2]
    z_lid = np.where(under, _smax(z0, z_eye + _LID_GAP, 0.001), z0)
    inside = _smoothstep(_OPEN_SOFT, -_OPEN_SOFT, _opening(dx, dy, open_scale)) * under
    return z_lid + inside * (z_eye - _LID_GAP - z_lid)


def _eye_centres() -> np.ndarray:
    """[2,3] eyeball centres (left eye at +x first): the cornea touches the skin surface
    where the procedural head painted its eyes, and the pupils look straight along +z."""
    apex = _surface(_EYE[0], _EYE[1])
    centre = apex - np.array([0.0, 0.0, _EYE_RADIUS - 0.0005])
    return np.stack([centre, centre * (-1.0, 1.0, 1.0)])


def _eyeball(centre: np.ndarray):
    """UV sphere around ``centre`` with its front pole on +z.

    Returns vertices [N,3], faces [M,3] (local indices, counter-clockwise outside) and
    per-face-corner angles (theta from +z, psi around it) [M,3,2] for the texture.
    """
    n_r, n_s = _EYE_RINGS, _EYE_SEGMENTS
    theta = np.arange(1, n_r) * (math.pi / n_r)
    psi = np.arange(n_s) * (2.0 * math.pi / n_s)
    tg, pg = np.meshgrid(theta, psi, indexing="ij")
    ring = np.stack([np.sin(tg) * np.cos(pg), np.sin(tg) * np.sin(pg), np.cos(tg)], axis=-1)
    unit = np.concatenate([[[0.0, 0.0, 1.0]], ring.reshape(-1, 3), [[0.0, 0.0, -1.0]]])
    verts = centre + _EYE_RADIUS * unit

    j = np.arange(n_s)
    jn = (j + 1) % n_s
    back = 1 + (n_r - 1) * n_s

    def vid(r, col):
        return 1 + r * n_s + col

    faces = [np.stack([np.zeros(n_s, np.int64), vid(0, j), vid(0, jn)], axis=-1)]
    r = np.arange(n_r - 2)[:, None]
    a, b, c, d = vid(r, j), vid(r, jn), vid(r + 1, j), vid(r + 1, jn)
    faces.append(np.stack([a, c, d], axis=-1).reshape(-1, 3))
    faces.append(np.stack([a, d, b], axis=-1).reshape(-1, 3))
    faces.append(np.stack([vid(n_r - 2, j), np.full(n_s, back), vid(n_r - 2, jn)], axis=-1))
    faces = np.concatenate(faces)
    # Outward orientation, checked rather than assumed.
    fn = np.cross(verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]])
    out = np.einsum("ij,ij->i", fn, verts[faces].mean(1) - centre) > 0
    faces = np.where(out[:, None], faces, faces[:, [0, 2, 1]])

    # Texture angles per corner. Poles take the psi of the face's mid-segment so their
    # fans do not smear across the map.
    t_all = np.concatenate([[0.0], tg.reshape(-1), [math.pi]])
    p_all = np.concatenate([[0.0], pg.reshape(-1), [0.0]])
    tp = np.stack([t_all[faces], p_all[faces]], axis=-1)
    for pole in (0, back):
        at = faces == pole
        rows = np.flatnonzero(at.any(1))
        for f in rows:
            others = [k for k in range(3) if faces[f, k] != pole]
            p0, p1 = p_all[faces[f, others[0]]], p_all[faces[f, others[1]]]
            dp = (p1 - p0 + math.pi) % (2.0 * math.pi) - math.pi
            tp[f, at[f], 1] = p0 + 0.5 * dp
    return verts, faces, tp


# ---------------------------------------------------------------------------
# Mesh
# ---------------------------------------------------------------------------


@dataclass
class _Mesh:
    verts: np.ndarray  # [V,3] float64
    faces: np.ndarray  # [F,3]
    uvs: np.ndarray  # [T,2]
    uv_faces: np.ndarray  # [F,3]
    phi: np.ndarray  # [V] longitude of skin vertices (nan elsewhere)
    lat: np.ndarray  # [V] latitude of skin vertices (nan elsewhere)
    kind: np.ndarray  # [V] 0 skin, 1 upper pocket, 2 lower pocket, 3 left eye, 4 right eye
    lower: np.ndarray  # [V] bool: lower-lip copies
    mirror: np.ndarray  # [V] index of the mirror-image vertex (skin only, -1 elsewhere)
    lip_of: np.ndarray  # [V] for pocket vertices, the lip vertex they hang from
    welded: np.ndarray  # [V] lower-lip copies -> their upper originals, identity elsewhere
    n_skin_faces: int
    mouth_ring: int
    slit_cols: np.ndarray  # columns with both lips, by increasing longitude
    corner_cols: tuple[int, int]
    lons: np.ndarray
    eye_centres: np.ndarray


def _lon_density(p: np.ndarray) -> np.ndarray:
    ap = np.abs(p)
    return (
        0.45
        + np.exp(-0.5 * (ap / 0.9) ** 2)
        + 0.9 * np.exp(-0.5 * ((ap - 0.37) / 0.15) ** 2)
        + 0.8 * np.exp(-0.5 * (ap / 0.15) ** 2)
    )


def _lat_density(t: np.ndarray) -> np.ndarray:
    return (
        0.45
        + np.exp(-0.5 * ((t + 0.35) / 0.55) ** 2)
        + 0.9 * np.exp(-0.5 * ((t - 0.04) / 0.07) ** 2)
        + 0.5 * np.exp(-0.5 * ((t - _MOUTH_LAT) / 0.06) ** 2)
    )


def _grid_angles() -> tuple[np.ndarray, np.ndarray]:
    """Mirror-symmetric longitudes (-pi..pi, a column exactly at each mouth corner) and
    latitudes (crown to neck, a ring exactly on the mouth line)."""
    half = _sample_angles(_N_LON // 2, 0.0, math.pi, _lon_density)
    half[np.argmin(np.abs(half - _MOUTH_HALF))] = _MOUTH_HALF
    lons = np.concatenate([-half[::-1], half[1:]])
    lats = _sample_angles(_N_LAT, -0.5 * math.pi, 0.5 * math.pi, _lat_density)[::-1].copy()
    lats[np.argmin(np.abs(lats - _MOUTH_LAT))] = _MOUTH_LAT
    return lons, lats


def _uv_head(lon: np.ndarray, lat: np.ndarray, size: int) -> np.ndarray:
    """Texture coordinates of the head region (top rows of the atlas)."""
    rows = size - size // 4
    u = (0.5 + (lon + math.pi) / (2.0 * math.pi) * (size - 1)) / size
    v = 1.0 - (0.5 + (0.5 * math.pi - lat) / math.pi * (rows - 1)) / size
    return np.stack(np.broadcast_arrays(u, v), axis=-1)


def _build_mesh(size: int) -> _Mesh:
    """Skin (with the mouth slit), mouth pocket and eyeballs, with the texture atlas's UVs
    for texture size ``size`` and the bookkeeping the later stages need."""
    n = _N_LON
    lons, lats = _grid_angles()
    n_rings = len(lats) - 2
    ring_lat = lats[1:-1]
    lat_g, lon_g = np.meshgrid(ring_lat, lons[:-1], indexing="ij")
    ring_pts = _surface(lon_g, lat_g).reshape(-1, 3)
    top = _surface(0.0, 0.5 * math.pi)
    bottom = _surface(0.0, -0.5 * math.pi)
    skin = np.concatenate([top[None], ring_pts, bottom[None]])
    eye_c = _eye_centres()
    skin[:, 2] = _lid_z(skin, eye_c)

    n_skin = skin.shape[0]
    top_v, bottom_v = 0, n_skin - 1

    def vid(r, col):
        return 1 + r * n + col

    # Skin texture coordinates: ring uvs (n + 1 columns: the seam twice), pole uvs per
    # segment (mid-segment) so the pole fans do not collapse onto one texel column.
    ring_uv = _uv_head(lons[None, :], ring_lat[:, None], size).reshape(-1, 2)
    mid = 0.5 * (lons[:-1] + lons[1:])
    top_uv = _uv_head(mid, np.full(n, 0.5 * math.pi), size)
    bottom_uv = _uv_head(mid, np.full(n, -0.5 * math.pi), size)
    uvs = [ring_uv, top_uv, bottom_uv]
    top_t, bottom_t = n_rings * (n + 1), n_rings * (n + 1) + n

    def tid(r, col):
        return r * (n + 1) + col

    # Mouth slit: lower-lip copies of the mouth ring's vertices between the corners.
    rm = int(np.flatnonzero(ring_lat == _MOUTH_LAT)[0])
    cols = np.arange(n)
    slit = cols[np.abs(lons[:-1]) < _MOUTH_HALF - 1e-9]
    slit = slit[np.argsort(lons[slit])]
    corner_l = int(np.flatnonzero(lons[:-1] == -_MOUTH_HALF)[0])
    corner_r = int(np.flatnonzero(lons[:-1] == _MOUTH_HALF)[0])
    lower_of = {int(vid(rm, c)): n_skin + i for i, c in enumerate(slit)}
    n_lower = len(slit)
    to_lower = np.arange(n_skin)
    to_lower[list(lower_of)] = list(lower_of.values())

    j = np.arange(n)
    jn = (j + 1) % n
    faces, uv_faces = [], []
    faces.append(np.stack([np.full(n, top_v), vid(0, j), vid(0, jn)], axis=-1))
    uv_faces.append(np.stack([top_t + j, tid(0, j), tid(0, j + 1)], axis=-1))
    for r in range(n_rings - 1):
        a, b, c, d = vid(r, j), vid(r, jn), vid(r + 1, j), vid(r + 1, jn)
        ta, tb, tc, td = tid(r, j), tid(r, j + 1), tid(r + 1, j), tid(r + 1, j + 1)
        band = np.concatenate([np.stack([a, c, d], -1), np.stack([a, d, b], -1)])
        if r == rm:  # the band under the mouth line hangs from the lower lip
            band = to_lower[band]
        faces.append(band)
        uv_faces.append(np.concatenate([np.stack([ta, tc, td], -1), np.stack([ta, td, tb], -1)]))
    faces.append(np.stack([vid(n_rings - 1, j), np.full(n, bottom_v), vid(n_rings - 1, jn)], -1))
    uv_faces.append(np.stack([tid(n_rings - 1, j), bottom_t + j, tid(n_rings - 1, j + 1)], -1))
    faces = np.concatenate(faces)
    uv_faces = np.concatenate(uv_faces)
    n_skin_faces = faces.shape[0]
    n_uv = top_t + 2 * n

    # Mouth pocket: one cross-section per slit column, collapsing to the corners.
    verts = [skin, skin[[vid(rm, c) for c in slit]]]
    n_up, n_lo = len(_POCKET_UPPER), len(_POCKET_LOWER)
    loop_len = 2 + n_up + n_lo
    section = np.array(_POCKET_UPPER + _POCKET_LOWER[::-1])  # [12,2] (depth, height)
    tex = np.array(_POCKET_TEX)
    pocket_s = np.concatenate([[0.0], tex, 1.0 - tex[::-1], [1.0]])
    base = n_skin + n_lower
    pocket_ids = []  # per column of [corner_l, slit..., corner_r]: loop vertex ids
    pocket_verts, kinds, lip_of = [], [], []
    for c in [corner_l, *slit, corner_r]:
        if c in (corner_l, corner_r):
            pocket_ids.append(np.full(loop_len, vid(rm, c)))
            continue
        upper = vid(rm, c)
        lip = skin[upper]
        prof = math.sqrt(max(0.0, 1.0 - (lons[c] / _MOUTH_HALF) ** 2))
        depth = section[:, 0] * (0.6 + 0.4 * prof)
        height = section[:, 1] * prof
        p = np.stack([lip[0] * (1.0 - 4.0 * depth), lip[1] + height, lip[2] - depth], axis=-1)
        ids = base + len(pocket_verts) * len(section) + np.arange(len(section))
        pocket_verts.append(p)
        kinds.extend([1] * n_up + [2] * n_lo)
        lip_of.extend([upper] * n_up + [lower_of[upper]] * n_lo)
        pocket_ids.append(np.concatenate([[upper], ids, [lower_of[upper]]]))
    pocket_verts = np.concatenate(pocket_verts)
    verts.append(pocket_verts)

    # Pocket texture: columns of the mouth region of the atlas, rows along the loop.
    strip = size // 4
    pocket_cols = [corner_l, *slit, corner_r]
    u = strip + 1.0 + (lons[pocket_cols] + _MOUTH_HALF) / (2 * _MOUTH_HALF) * (size - strip - 2)
    v_rows = size - strip + 1.0 + pocket_s * (strip - 3)
    puv = np.stack(np.broadcast_arrays((u / size)[:, None], 1.0 - (v_rows / size)[None, :]), -1)
    uvs.append(puv.reshape(-1, 2))
    pocket_faces, pocket_uv_faces = [], []
    for ci in range(len(pocket_cols) - 1):
        c0, c1 = pocket_ids[ci], pocket_ids[ci + 1]
        for k in range(loop_len - 1):
            quad = (c0[k], c1[k], c1[k + 1], c0[k + 1])
            tq = tuple(
                n_uv + cc * loop_len + kk
                for cc, kk in ((ci, k), (ci + 1, k), (ci + 1, k + 1), (ci, k + 1))
            )
            for tri in ((0, 1, 2), (0, 2, 3)):
                f = [quad[t] for t in tri]
                if len(set(f)) == 3:
                    pocket_faces.append(f)
                    pocket_uv_faces.append([tq[t] for t in tri])
    pocket_faces = np.array(pocket_faces, np.int64)
    pocket_uv_faces = np.array(pocket_uv_faces, np.int64)
    # Orient the pocket consistently with the skin it closes: the first pocket face
    # shares an edge with a skin face, which must run the other way round.
    a, b = pocket_faces[0, 0], pocket_faces[0, 1]
    skin_edges = {(int(f[k]), int(f[(k + 1) % 3])) for f in faces for k in range(3)}
    if (int(a), int(b)) in skin_edges:
        pocket_faces = pocket_faces[:, [0, 2, 1]]
        pocket_uv_faces = pocket_uv_faces[:, [0, 2, 1]]
    faces = np.concatenate([faces, pocket_faces])
    uv_faces = np.concatenate([uv_faces, pocket_uv_faces])
    n_uv += puv.shape[0] * puv.shape[1]

    # Eyeballs (left eye first), sharing one eye texture.
    eye_uv_centre = np.array([0.5 * strip / size, 1.0 - (size - 0.5 * strip) / size])
    eye_uv_radius = (0.5 * strip - 1.0) / size
    for e in range(2):
        ev, ef, tp = _eyeball(eye_c[e])
        offset = sum(len(x) for x in verts)
        verts.append(ev)
        faces = np.concatenate([faces, ef + offset])
        rad = eye_uv_radius * tp[..., 0] / math.pi
        euv = eye_uv_centre + rad[..., None] * np.stack(
            [np.cos(tp[..., 1]), np.sin(tp[..., 1])], -1
        )
        uvs.append(euv.reshape(-1, 2))
        uv_faces = np.concatenate([uv_faces, n_uv + np.arange(euv.shape[0] * 3).reshape(-1, 3)])
        n_uv += euv.shape[0] * 3
        kinds.extend([3 + e] * len(ev))
        lip_of.extend([-1] * len(ev))

    verts = np.concatenate(verts)
    nv = verts.shape[0]
    kind = np.zeros(nv, np.int64)
    kind[n_skin + n_lower :] = kinds
    lower = np.zeros(nv, bool)
    lower[n_skin : n_skin + n_lower] = True
    lip = np.full(nv, -1, np.int64)
    lip[n_skin + n_lower :] = lip_of
    welded = np.arange(nv)
    for up, lo in lower_of.items():
        welded[lo] = up

    phi = np.full(nv, np.nan)
    lat = np.full(nv, np.nan)
    phi[1 : n_skin - 1] = lon_g.reshape(-1)
    lat[1 : n_skin - 1] = lat_g.reshape(-1)
    phi[[top_v, bottom_v]] = 0.0
    lat[top_v], lat[bottom_v] = 0.5 * math.pi, -0.5 * math.pi
    phi[n_skin : n_skin + n_lower] = phi[list(lower_of)]
    lat[n_skin : n_skin + n_lower] = _MOUTH_LAT

    mirror = np.full(nv, -1, np.int64)
    rr, cc = np.meshgrid(np.arange(n_rings), np.arange(n), indexing="ij")
    mirror[vid(rr, cc).reshape(-1)] = vid(rr, (n - cc) % n).reshape(-1)
    mirror[[top_v, bottom_v]] = [top_v, bottom_v]
    return _Mesh(
        verts=verts,
        faces=faces.astype(np.int64),
        uvs=np.concatenate(uvs),
        uv_faces=uv_faces.astype(np.int64),
        phi=phi,
        lat=lat,
        kind=kind,
        lower=lower,
        mirror=mirror,
        lip_of=lip,
        welded=welded,
        n_skin_faces=n_skin_faces,
        mouth_ring=rm,
        slit_cols=slit,
        corner_cols=(corner_l, corner_r),
        lons=lons,
        eye_centres=eye_c,
    )


# ---------------------------------------------------------------------------
# Texture
# ---------------------------------------------------------------------------


def _paint_lids(img: np.ndarray, phi_1d, lat_1d, centres: np.ndarray) -> np.ndarray:
    """Paint lash lines, lid creases, the closed-lid skin and the inner corners.

    Painted in the same frontal (x, y) frame that cuts the lid opening (the texel's
    point on the procedural skin; the lids only move along z), so paint and geometry
    stay registered.
    """
    cols = np.flatnonzero((np.abs(phi_1d) > 0.05) & (np.abs(phi_1d) < 0.8))
    rows = np.flatnonzero((lat_1d > -0.3) & (lat_1d < 0.35))
    win = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    phi, lat = np.meshgrid(phi_1d[cols[0] : cols[-1] + 1], lat_1d[rows[0] : rows[-1] + 1])
    p = _surface(phi, lat).reshape(-1, 3)
    dx, dy, _ = _eye_frame(p, centres)
    shape = phi.shape
    dx, dy = dx.reshape(shape), dy.reshape(shape)
    g = _opening(dx, dy, 1.0)
    u = dx / _OPEN_HALF_WIDTH
    mid = _CANTHAL_TILT * u
    span = _smoothstep(1.25, 0.95, np.abs(u))
    out = img[win]

    # A shadowed socket, lid skin where the opening is (seen when the lids close), and
    # the line where the closed lids meet.
    socket = _smoothstep(0.007, 0.0, g) * _smoothstep(-0.002, 0.0, g)
    out = out * (1.0 - 0.12 * socket)[..., None]
    lid_skin = _smoothstep(0.0004, -0.0008, g)
    out = _mix(out, out * np.array([0.86, 0.76, 0.74]), lid_skin)
    closed = _smoothstep(0.0007, 0.0002, np.abs(dy - mid)) * span * lid_skin
    out = _mix(out, (0.25, 0.14, 0.12), 0.7 * closed)
    # Upper lash line just outside the rim, a finer lower one, and the lid crease.
    upper = dy > mid
    lash = _smoothstep(0.0009, 0.0001, np.abs(g - 0.0004)) * span
    out = _mix(out, (0.1, 0.06, 0.05), np.where(upper, 0.95, 0.45) * lash)
    top = _OPEN_UP * (1.0 - u * u) + mid
    crease = _smoothstep(0.0012, 0.0, np.abs(dy - top - 0.0035)) * span * upper
    out = out * (1.0 - 0.18 * crease)[..., None]
    # Pink inner corners.
    caruncle = np.exp(-0.5 * (((dx + _OPEN_HALF_WIDTH) / 0.0013) ** 2 + ((dy + mid) / 0.001) ** 2))
    out = _mix(out, (0.86, 0.5, 0.5), 0.8 * caruncle)
    img = img.copy()
    img[win] = out
    return img


def _paint_eyeball(size: int) -> np.ndarray:
    """[size,size,3] azimuthal map of the eyeball: pupil at the centre, the back pole on
    the rim (the angle from the pupil grows linearly with the distance from the centre)."""
    c = np.arange(size) + 0.5 - 0.5 * size
    r = np.hypot(c[None, :], c[:, None])
    theta = r / (0.5 * size - 1.0) * math.pi
    ang = np.arctan2(c[:, None], c[None, :])
    img = np.empty((size, size, 3))
    img[:] = (0.95, 0.94, 0.91)
    img = _mix(img, (0.93, 0.84, 0.82), _smoothstep(0.9, 1.6, theta))  # redder towards the back
    iris = _smoothstep(0.5, 0.46, theta)
    streaks = 1.0 + 0.12 * np.sin(23.0 * ang) * np.sin(7.0 * ang + 1.0)
    blue = np.array([0.24, 0.46, 0.66])[None, None] * streaks[..., None]
    img = img * (1.0 - iris[..., None]) + blue * iris[..., None]
    img = _mix(img, (0.11, 0.22, 0.35), iris * _smoothstep(0.36, 0.47, theta))  # limbus
    img = _mix(img, (0.16, 0.3, 0.45), iris * _smoothstep(0.28, 0.2, theta))  # collarette
    return _mix(img, (0.02, 0.02, 0.03), _smoothstep(0.18, 0.15, theta))  # pupil


def _paint_mouth(rows: int, cols: int) -> np.ndarray:
    """[rows,cols,3] inside of the mouth: rows run along the pocket's cross-section from
    the upper lip (wet lip, teeth, palate) over the dark throat to the lower lip (row
    parameters as in _POCKET_TEX), columns from one mouth corner to the other."""
    s = ((np.arange(rows) + 0.5 - 1.0) / (rows - 3.0))[:, None] * np.ones((1, cols))
    t = ((np.arange(cols) + 0.5 - 1.0) / (cols - 2.0))[None, :] * np.ones((rows, 1))
    e = np.minimum(s, 1.0 - s)  # 0 at the lip edges, 0.5 at the back wall
    t0, t1 = _TEETH
    img = np.empty((rows, cols, 3))
    img[:] = (0.6, 0.27, 0.28)
    img = _mix(img, (0.42, 0.12, 0.13), _smoothstep(t1, t1 + 0.03, e))
    img = _mix(img, (0.07, 0.02, 0.03), _smoothstep(t1 + 0.05, 0.45, e))
    gaps = _smoothstep(0.04, 0.0, np.abs((t * 12.0) % 1.0 - 0.5) - 0.46)
    teeth = _smoothstep(t0 - 0.01, t0 + 0.01, e) * _smoothstep(t1 + 0.01, t1 - 0.01, e)
    teeth *= _smoothstep(0.0, 0.1, t) * _smoothstep(1.0, 0.9, t)
    return _mix(img, (0.95, 0.93, 0.86), teeth * (1.0 - 0.6 * gaps))


def _paint(size: int, centres: np.ndarray) -> np.ndarray:
    """The [size,size,3] atlas: head on top, eyeball and mouth pocket in the bottom quarter."""
    strip = size // 4
    rows = size - strip
    phi_1d = np.linspace(-math.pi, math.pi, size)
    lat_1d = np.linspace(0.5 * math.pi, -0.5 * math.pi, rows)
    img = np.empty((size, size, 3))
    img[:rows] = _paint_lids(_paint_lonlat(phi_1d, lat_1d, eyes=False), phi_1d, lat_1d, centres)
    img[rows:, :strip] = _paint_eyeball(strip)
    img[rows:, strip:] = _paint_mouth(strip, size - strip)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------------------
# Skinning and joints
# ---------------------------------------------------------------------------


def _neckness(p: np.ndarray) -> np.ndarray:
    """1 on the neck below the jaw, 0 on the head: the neck is the elliptic cylinder of
    the procedural head, the jaw and skull stick out of it."""
    e = np.hypot(p[:, 0] / _NECK_RX, (p[:, 2] - _NECK_Z) / _NECK_RZ)
    return _smoothstep(1.3, 1.05, e) * _smoothstep(-0.06, -0.09, p[:, 1])


def _jaw_weight(m: _Mesh) -> np.ndarray:
    """Jaw skinning weight [V]: the lower face, chin, lower lip and lower pocket.

    Below the mouth line it is 1 between the mouth corners (a sharp cut along the slit)
    and falls off over a widening band towards the cheeks; it fades out before the ears
    and on the neck.
    """
    v = m.verts
    skin = m.kind == 0
    aphi = np.abs(np.nan_to_num(m.phi))
    lat = np.nan_to_num(m.lat)
    ref = _smooth_interp(
        aphi, (0.0, 0.45, 1.0, 1.4, 4.0), (_MOUTH_LAT, _MOUTH_LAT, -0.42, -0.3, -0.3)
    )
    band = 0.015 + 0.22 * _smoothstep(_MOUTH_HALF, _MOUTH_HALF + 0.4, aphi)
    w = _smoothstep(band, -band, lat - ref)
    on_slit = skin & (lat == _MOUTH_LAT) & (aphi < _MOUTH_HALF - 1e-9)
    w = np.where(on_slit, m.lower.astype(np.float64), w)
    w = w * _smoothstep(1.5, 1.25, aphi) * (1.0 - _neckness(v))
    w = np.where(skin, w, 0.0)
    return np.where(m.kind == 2, 1.0, w)


def _skinning(m: _Mesh) -> np.ndarray:
    """[V,5] weights: head on the neck joint, the lower neck blending onto the global
    joint, the jaw region on the jaw, eyeballs entirely on their eye joints."""
    jaw = _jaw_weight(m)
    low = _smoothstep(-0.085, -0.155, m.verts[:, 1])
    w = np.zeros((len(m.verts), 5))
    w[:, _GLOBAL] = low * (1.0 - jaw)
    w[:, _NECK] = (1.0 - low) * (1.0 - jaw)
    w[:, _JAW] = jaw
    eyes = m.kind >= 3
    w[eyes] = 0.0
    w[m.kind == 3, _LEFT_EYE] = 1.0
    w[m.kind == 4, _RIGHT_EYE] = 1.0
    return w / w.sum(1, keepdims=True)


def _mirror_pairs_regressor(m: _Mesh, target_yz, sigma: float) -> np.ndarray:
    """[V] convex weights on mirror pairs of lateral skin vertices whose (y, z) lie near
    ``target_yz``: the weighted midpoints sit on x = 0 near the target, inside the head."""
    v = m.verts
    cand = np.flatnonzero((m.kind == 0) & ~m.lower & (v[:, 0] > 0.01) & (m.mirror >= 0))
    d2 = np.sum((v[cand, 1:] - np.asarray(target_yz)) ** 2, axis=1)
    wc = np.exp(-0.5 * d2 / sigma**2)
    keep = wc > 1e-3 * wc.max()
    cand, wc = cand[keep], wc[keep] / wc[keep].sum()
    w = np.zeros(len(v))
    np.add.at(w, cand, 0.5 * wc)
    np.add.at(w, m.mirror[cand], 0.5 * wc)
    return w


def _regressor(m: _Mesh) -> np.ndarray:
    """[5,V] joint regressor, each row convex: global at the neck base, neck at the skull
    base, jaw between the jaw hinges (in front of and below the ears), eyes at the mean
    of their eyeball's vertices (the sphere's centre)."""
    reg = np.zeros((5, len(m.verts)))
    reg[_GLOBAL] = _mirror_pairs_regressor(m, (-0.15, _NECK_Z), 0.004)
    reg[_NECK] = _mirror_pairs_regressor(m, (-0.065, -0.03), 0.004)
    reg[_JAW] = _mirror_pairs_regressor(m, (-0.03, 0.01), 0.004)
    for joint, kind in ((_LEFT_EYE, 3), (_RIGHT_EYE, 4)):
        sel = m.kind == kind
        reg[joint, sel] = 1.0 / sel.sum()
    return reg


# ---------------------------------------------------------------------------
# Blendshapes
# ---------------------------------------------------------------------------


def _blendshapes(m: _Mesh, jaw: np.ndarray) -> np.ndarray:
    """[V,3,K] identity then expression displacement fields, metres per unit coefficient.

    Fields are smooth functions of the template position, so the two copies of a lip
    vertex move together unless a field asks otherwise (through the jaw weight), the
    pocket moves with the lip it hangs from, and the skin near each eye moves rigidly
    with its eyeball (every component but the eyelid one); expressions never move the
    eyeballs.
    """
    v = m.verts
    normals = _skin_normals(m)
    eyes = m.eye_centres
    # Evaluate every field at the vertices and at the two eyeball centres.
    p = np.concatenate([v, eyes])
    n = np.concatenate([normals, [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]])
    j = np.concatenate([jaw, [0.0, 0.0]])
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    one = np.ones_like(x)
    zero = np.zeros_like(x)

    def vec(dx, dy, dz) -> np.ndarray:
        return np.stack(np.broadcast_arrays(dx * one, dy * one, dz * one), axis=-1)

    eye_y = eyes[0, 1]
    mouth = _surface(0.0, _MOUTH_LAT)
    corner = _surface(_MOUTH_HALF, _MOUTH_LAT)
    chin = _surface(0.0, -0.95)
    ear = _surface(_EAR[0], _EAR[1])
    side = _side(x)

    identity = [
        vec(0.07 * x, 0.0, 0.0),  # head_width
        vec(0.0, 0.05 * _softplus(y, 0.01), 0.0),  # crown_height
        vec(0.0, 0.0, -0.06 * _softplus(-z, 0.01)),  # head_depth
        vec(0.0, -0.06 * _softplus(eye_y - y, 0.01), 0.0),  # face_length
        vec(0.0, -0.0015, 0.004) * _gauss(p, (0.0, -0.012, 0.1), (0.012, 0.022, 0.03))[:, None],
        vec(0.2 * x, 0.0, 0.0) * _gauss(p, (0.0, -0.03, 0.095), (0.02, 0.014, 0.03))[:, None],
        vec(0.09 * x, 0.0, 0.0)
        * (_smoothstep(-0.03, -0.09, y) * _smoothstep(-0.04, 0.0, z))[:, None],  # jaw_width
        vec(0.0, -0.002, 0.005) * _gauss(p, chin, (0.022, 0.02, 0.04))[:, None],
        n * (0.004 * _mirror_gauss(p, (0.048, -0.04, 0.06), 0.02))[:, None],  # cheek_fullness
        vec(0.003 * side, 0.0, 0.0) * _mirror_gauss(p, eyes[0], 0.025)[:, None],  # eye_spacing
        n * (0.003 * _mirror_gauss(p, (0.03, 0.022, 0.085), (0.022, 0.01, 0.03)))[:, None],
        vec(0.0, 0.0, -0.06 * _softplus(y - 0.03, 0.01) * _smoothstep(0.0, 0.06, z)),
        vec(0.15 * x, 0.0, 0.0) * _gauss(p, mouth, (0.03, 0.012, 0.04))[:, None],  # mouth_width
        n * (0.002 * _gauss(p, mouth, (0.02, 0.01, 0.03)))[:, None],  # lip_fullness
        vec(0.005 * side, 0.0, 0.0) * _mirror_gauss(p, ear, 0.02)[:, None],  # ear_protrusion
        vec(0.1 * x, 0.0, 0.1 * (z - _NECK_Z)) * _smoothstep(-0.08, -0.12, y)[:, None],
        vec(0.0, 0.003, 0.0) * _mirror_gauss(p, eyes[0], 0.025)[:, None],  # eye_height
        vec(0.0, 0.0, 0.003) * _gauss(p, (0.0, 0.0, 0.09), (0.01, 0.015, 0.03))[:, None],
        vec(0.003 * side, 0.001, 0.002)
        * _mirror_gauss(p, (0.055, -0.005, 0.055), 0.018)[:, None],  # cheekbones
        vec(0.03 * x, 0.03 * (y + 0.02), 0.03 * z),  # overall_size
    ]
    expression = [
        vec(0.003 * side, 0.004, -0.0025) * _mirror_gauss(p, corner, 0.011)[:, None]
        + vec(0.0, 0.0025, 0.001) * _mirror_gauss(p, (0.04, -0.045, 0.075), 0.016)[:, None],
        vec(-0.25 * x, 0.0, 0.005) * _gauss(p, mouth, (0.02, 0.014, 0.04))[:, None],  # pucker
        vec(0.0, 0.005, 0.0)
        * _mirror_gauss(p, (0.03, 0.028, 0.08), (0.028, 0.014, 0.04))[:, None],  # brow_raise
        vec(-0.0025 * side, -0.003, 0.0005)
        * _mirror_gauss(p, (0.014, 0.022, 0.09), (0.012, 0.01, 0.03))[:, None],  # brow_frown
        zero[:, None] * one[:, None] * np.zeros(3),  # eye_squint, filled in below
        n * (0.006 * _mirror_gauss(p, (0.038, -0.058, 0.072), 0.017))[:, None],  # cheek_puff
        vec(0.004 * side, -0.002, -0.001) * _mirror_gauss(p, corner, 0.012)[:, None],
        vec(0.0, 0.003, 0.001)
        * ((1.0 - j) * _gauss(p, mouth + (0.0, 0.006, 0.0), (0.022, 0.01, 0.04)))[:, None],
        vec(0.0, -0.003, 0.001)
        * (j * _gauss(p, mouth + (0.0, -0.008, 0.0), (0.022, 0.012, 0.04)))[:, None],
        vec(0.0, 0.003, -0.001)
        * _mirror_gauss(p, (0.012, -0.02, 0.09), (0.01, 0.012, 0.03))[:, None],  # nose_wrinkle
    ]
    assert len(identity) == len(IDENTITY_NAMES) and len(expression) == len(EXPRESSION_NAMES)
    fields = np.stack(identity + expression, axis=-1)  # [V+2,3,K]

    # Rigid near the eyes: blend each field towards its value at the eyeball centre, which
    # is where identity moves the eyeball; expressions leave the eyeballs where they are.
    nv = len(v)
    out = fields[:nv].copy()
    fields[nv:, :, len(identity) :] = 0.0
    for e in range(2):
        dist = np.linalg.norm(v - eyes[e], axis=1)
        w = _smoothstep(0.024, 0.014, dist)
        w[m.kind == 3 + e] = 1.0
        w[m.kind == 4 - e] = 0.0
        out = out * (1.0 - w)[:, None, None] + fields[nv + e][None] * w[:, None, None]

    # Eyelids: the difference between half-closed and open lids (skin only, along z).
    skin = m.kind == 0
    base = _surface(m.phi[skin], m.lat[skin])
    squint = EXPRESSION_NAMES.index("eye_squint") + len(IDENTITY_NAMES)
    out[:, :, squint] = 0.0
    out[skin, 2, squint] = _lid_z(base, eyes, 0.5) - _lid_z(base, eyes, 1.0)

    pocket = (m.kind == 1) | (m.kind == 2)
    out[pocket] = out[m.lip_of[pocket]]
    return out


def _skin_normals(m: _Mesh) -> np.ndarray:
    """[V,3] skin normals, the same for both copies of a lip vertex (zero off the skin)."""
    skin_faces = m.welded[m.faces[: m.n_skin_faces]]
    return _vertex_normals(m.verts, skin_faces)[m.welded]


def _pose_correctives(m: _Mesh, jaw: np.ndarray) -> np.ndarray:
    """[V,3,36] posedirs: one corrective, for opening the jaw; everything else zero.

    Skin blended between head and jaw is pulled inwards by linear blend skinning as the
    jaw turns; this pushes it back out along the normal, in proportion to sin(angle) of
    the jaw's rotation about x (the mouth opening). Only partly jaw-weighted skin moves.
    """
    offset = (0.004 * 4.0 * jaw * (1.0 - jaw))[:, None] * _skin_normals(m)
    offset[m.kind != 0] = 0.0
    posedirs = np.zeros((len(m.verts), 3, 9 * (len(_PARENTS) - 1)))
    block = 9 * (_JAW - 1)  # pose feature: flattened (R - I) of joints 1..4
    posedirs[:, :, block + 7] = 0.5 * offset  # R[2,1] = sin(angle)
    posedirs[:, :, block + 5] = -0.5 * offset  # R[1,2] = -sin(angle)
    return posedirs


# ---------------------------------------------------------------------------
# Landmarks
# ---------------------------------------------------------------------------


def _ray_hits(origins: np.ndarray, dirs: np.ndarray, tri: np.ndarray):
    """Ray/triangle intersections (Moller-Trumbore) of R rays with F triangles [F,3,3].

    Returns t, u, v, each [R,F]; t is inf where the ray misses.
    """
    v0 = tri[None, :, 0]
    e1 = tri[None, :, 1] - v0
    e2 = tri[None, :, 2] - v0
    d = dirs[:, None, :]
    pvec = np.cross(d, e2)
    det = np.sum(e1 * pvec, -1)
    ok = np.abs(det) > 1e-15
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    tvec = origins[:, None, :] - v0
    u = np.sum(tvec * pvec, -1) * inv
    qvec = np.cross(tvec, e1)
    w = np.sum(d * qvec, -1) * inv
    t = np.sum(e2 * qvec, -1) * inv
    hit = ok & (u >= -1e-9) & (w >= -1e-9) & (u + w <= 1.0 + 1e-9) & (t > 0)
    return np.where(hit, t, np.inf), u, w


def _cast(m: _Mesh, origins: np.ndarray, dirs: np.ndarray, farthest: bool):
    """Face index [R] and barycentrics [R,3] where rays meet the skin (not eyes, pocket)."""
    faces = m.faces[: m.n_skin_faces]
    t, u, w = _ray_hits(origins, dirs, m.verts[faces])
    if farthest:
        t_sel = np.where(np.isfinite(t), t, -np.inf)
        f = np.argmax(t_sel, axis=1)
    else:
        f = np.argmin(t, axis=1)
    r = np.arange(len(origins))
    if not np.all(np.isfinite(t[r, f])):
        raise RuntimeError("demo head: a landmark ray missed the skin")
    bary = np.stack([1.0 - u[r, f] - w[r, f], u[r, f], w[r, f]], axis=-1)
    return f, np.clip(bary, 0.0, 1.0) / np.clip(bary, 0.0, 1.0).sum(1, keepdims=True)


def _radial(m: _Mesh, phi, lat):
    """Landmarks where rays from the origin towards (phi, lat) leave the skin."""
    d = _direction(np.asarray(phi, np.float64), np.asarray(lat, np.float64))
    return _cast(m, np.zeros_like(d), d, farthest=True)


def _frontal(m: _Mesh, xy: np.ndarray):
    """Landmarks on the skin seen from the front at frontal positions xy [R,2]."""
    o = np.concatenate([xy, np.ones((len(xy), 1))], axis=1)
    d = np.tile([0.0, 0.0, -1.0], (len(xy), 1))
    return _cast(m, o, d, farthest=False)


def _slit(m: _Mesh, lons: np.ndarray, lower: bool):
    """Landmarks on the upper or lower lip edge along the slit, at longitudes ``lons``."""
    n = _N_LON
    ring = 1 + m.mouth_ring * n
    cols = np.array([m.corner_cols[0], *m.slit_cols, m.corner_cols[1]])
    to_lower = {int(m.welded[i]): int(i) for i in np.flatnonzero(m.lower)}
    skin_faces = m.faces[: m.n_skin_faces]
    faces, barys = [], []
    for lon in lons:
        k = int(np.clip(np.searchsorted(m.lons[cols], lon) - 1, 0, len(cols) - 2))
        t = (lon - m.lons[cols[k]]) / (m.lons[cols[k + 1]] - m.lons[cols[k]])
        a, b = ring + cols[k], ring + cols[k + 1]
        if lower:
            a, b = to_lower.get(a, a), to_lower.get(b, b)
        has = (skin_faces == a).any(1) & (skin_faces == b).any(1)
        ys = m.verts[skin_faces[:, 0], 1] + m.verts[skin_faces[:, 1], 1]
        ys = ys + m.verts[skin_faces[:, 2], 1]
        cand = np.flatnonzero(has)
        # Of the two faces on the edge, the one on the lip's own side of the slit.
        f = cand[np.argmin(ys[cand])] if lower else cand[np.argmax(ys[cand])]
        bary = np.zeros(3)
        bary[list(skin_faces[f]).index(a)] = 1.0 - t
        bary[list(skin_faces[f]).index(b)] = t
        faces.append(f)
        barys.append(bary)
    return np.array(faces), np.array(barys)


def _bin_yaw(b: int) -> float:
    """Yaw in degrees (rotation about +y) of dynamic-landmark bin b (FLAME's layout)."""
    return float(b) if b < 40 else -float(b - 39)


def _section(m: _Mesh, height: float):
    """Points where the plane y = height cuts the skin's edges: faces [P], bary [P,3],
    points [P,3]."""
    faces = m.faces[: m.n_skin_faces]
    v = m.verts
    out_f, out_b, out_p = [], [], []
    for k in range(3):
        a, b = faces[:, k], faces[:, (k + 1) % 3]
        ya, yb = v[a, 1] - height, v[b, 1] - height
        cross = ya * yb < 0
        t = ya[cross] / (ya[cross] - yb[cross])
        bary = np.zeros((cross.sum(), 3))
        bary[:, k] = 1.0 - t
        bary[:, (k + 1) % 3] = t
        out_f.append(np.flatnonzero(cross))
        out_b.append(bary)
        out_p.append(v[a[cross]] * (1.0 - t)[:, None] + v[b[cross]] * t[:, None])
    return np.concatenate(out_f), np.concatenate(out_b), np.concatenate(out_p)


def _contour(m: _Mesh, heights: np.ndarray, fixed_chin):
    """Dynamic contour [79,17] faces and [79,17,3] barycentrics.

    Points 0..6 (subject's right, -x) and 10..16 (left) keep their height and move along
    their horizontal section of the cheek and jaw to the outermost point on their own
    side once the head is rotated by the bin's yaw (the silhouette), never behind the
    front of the ears nor onto the neck. Points 7..9 stay on the chin.
    """
    dyn_f = np.zeros((79, 17), np.int64)
    dyn_b = np.zeros((79, 17, 3))
    yaws = np.radians([_bin_yaw(b) for b in range(79)])
    chin_f, chin_b = fixed_chin
    dyn_f[:, 7:10] = chin_f
    dyn_b[:, 7:10] = chin_b
    for i, h in enumerate(heights):
        f, b, p = _section(m, float(h))
        phi = np.arctan2(p[:, 0], p[:, 2])
        ok = (np.abs(phi) < 1.42) & (_neckness(p) < 0.5)
        for k, sign in ((i, -1.0), (16 - i, 1.0)):
            sel = ok & (p[:, 0] * sign > 0.002)
            xr = p[sel, 0][None] * np.cos(yaws)[:, None] + p[sel, 2][None] * np.sin(yaws)[:, None]
            best = np.argmax(sign * xr, axis=1)
            dyn_f[:, k] = f[sel][best]
            dyn_b[:, k] = b[sel][best]
    return dyn_f, dyn_b


def _landmarks(m: _Mesh) -> LandmarkEmbedding:
    """The iBUG-68 embedding, designed on the procedural head's painted features."""
    # Brows (17-21 right brow outer->inner, 22-26 left inner->outer), on the painted arcs.
    t = np.array([0.88, 0.68, 0.48, 0.28, 0.08])
    arc = _BROW_LAT - 0.005 + 0.05 * np.sin(math.pi * t * 0.8) + 0.01 * (1.0 - 0.6 * t)
    brow_phi = np.concatenate([-(0.12 + 0.5 * t), (0.12 + 0.5 * t)[::-1]])
    brows = _radial(m, brow_phi, np.concatenate([arc, arc[::-1]]))
    # Nose bridge (27-30) top to tip, nostril base (31-35) right to left.
    nose_tip = _NOSE_TIP_LAT + 0.05
    bridge = _radial(m, np.zeros(4), np.linspace(_EYE[1] + 0.01, nose_tip, 4))
    base = _radial(
        m,
        np.array([-0.1, -0.05, 0.0, 0.05, 0.1]),
        _NOSE_BASE_LAT + np.array([0.025, 0.01, 0.0, 0.01, 0.025]),
    )
    # Eyes (36-41 right eye from its outer corner over the upper lid; 42-47 left eye
    # from its inner corner), on the rim of the lid opening.
    c = m.eye_centres
    ux = np.array([1.0, 0.4, -0.35, -1.0, -0.35, 0.4]) * 0.96  # towards the outer corner
    upper = np.array([0, 1, 1, 0, -1, -1])
    u = ux / 0.96
    arch = np.clip(1.0 - u * u, 0.0, None)
    dy = _CANTHAL_TILT * u + np.where(upper > 0, _OPEN_UP, -_OPEN_DOWN) * arch * np.abs(upper)
    right = np.stack([c[1, 0] - ux * _OPEN_HALF_WIDTH, c[1, 1] + dy], axis=-1)
    order_left = [3, 2, 1, 0, 5, 4]  # inner corner, upper inner, upper outer, outer, ...
    left = np.stack([c[0, 0] + ux * _OPEN_HALF_WIDTH, c[0, 1] + dy], axis=-1)[order_left]
    eyes = _frontal(m, np.concatenate([right, left]))
    # Outer lips (48-59) on the painted outline: corner, upper lip to the other corner,
    # lower lip back. Inner lips (60-67) on the slit's edges.
    frac = np.array([-0.97, -0.55, -0.22, 0.0, 0.22, 0.55, 0.97, 0.55, 0.22, 0.0, -0.22, -0.55])
    xl = frac
    fullness = np.clip(1.0 - xl * xl, 0.0, None) ** 0.6
    bow = 1.0 - 0.3 * np.exp(-((xl / 0.12) ** 2))
    lat_top = _MOUTH_LAT + 0.06 * fullness * bow
    lat_bottom = _MOUTH_LAT - 0.07 * fullness
    is_top = np.arange(12) < 7
    lips = _radial(m, 0.19 * frac, np.where(is_top, lat_top, lat_bottom))
    w = _MOUTH_HALF
    inner_up = _slit(m, np.array([-w, -0.5 * w, 0.0, 0.5 * w, w]), lower=False)
    inner_lo = _slit(m, np.array([0.5 * w, 0.0, -0.5 * w]), lower=True)

    parts = [brows, bridge, base, eyes, lips, inner_up, inner_lo]
    static_f = np.concatenate([p[0] for p in parts])
    static_b = np.concatenate([p[1] for p in parts])

    chin = _radial(m, np.array([-0.3, 0.0, 0.3]), np.array([-1.03, -1.06, -1.03]))
    chin_y = np.einsum("pk,pkd->pd", chin[1], m.verts[m.faces[chin[0]]])[1, 1]
    eye_y = c[0, 1]
    frac_h = np.array([0.04, 0.2, 0.37, 0.53, 0.67, 0.79, 0.88])
    dyn_f, dyn_b = _contour(m, eye_y - frac_h * (eye_y - chin_y), chin)
    return LandmarkEmbedding(
        static_faces=static_f.astype(np.int64),
        static_bary=static_b.astype(np.float32),
        dynamic_faces=dyn_f,
        dynamic_bary=dyn_b.astype(np.float32),
        full_faces=np.concatenate([dyn_f[0], static_f]).astype(np.int64),
        full_bary=np.concatenate([dyn_b[0], static_b]).astype(np.float32),
        source="built-in",
    )


# ---------------------------------------------------------------------------
# Assembly
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _build(size: int) -> DemoHead:
    """Build once per texture size; callers get copies (see :func:`demo_head`)."""
    m = _build_mesh(size)
    weights = _skinning(m)
    data = FlameData(
        v_template=m.verts.astype(np.float32),
        faces=m.faces.astype(np.int64),
        shapedirs=_blendshapes(m, weights[:, _JAW]).astype(np.float32),
        num_identity=len(IDENTITY_NAMES),
        posedirs=_pose_correctives(m, weights[:, _JAW]).astype(np.float32),
        j_regressor=_regressor(m).astype(np.float32),
        lbs_weights=weights.astype(np.float32),
        parents=np.array(_PARENTS, np.int64),
        release=DEMO_RELEASE,
        source="built-in",
        uvs=m.uvs.astype(np.float32),
        uv_faces=m.uv_faces.astype(np.int64),
        is_flame=False,
    )
    validate_flame_data(data)
    return DemoHead(data=data, landmarks=_landmarks(m), texture=_paint(size, m.eye_centres))
