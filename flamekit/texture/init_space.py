"""An initial texture space from a coloured mesh: ``flamekit init-space``.

A texture space needs FLAME's UV layout, but colour data usually comes as a mesh of its own
topology (a coloured scan, a PLY/OBJ with vertex colours, or the Basel Face Model's colour
PCA). This module carries such colours onto FLAME:

1. read the mesh and its per-vertex colours (and, for BFM, its colour basis);
2. give every FLAME vertex a point on the input surface: directly when the input already has
   FLAME's topology, otherwise by fitting FLAME (similarity + identity/expression) to the
   mesh and taking the closest surface point;
3. interpolate the colours there and rasterize them into UV space (nearest-atlas fill outside
   the charts), one map for the mean and one per colour component.

The result is saved with :func:`~flamekit.model.save_texture_space`; a plain coloured mesh gives
a mean-only space (K = 0 components), a BFM file a space with its K components.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "ColoredMesh",
    "InitSpaceResult",
    "MeshReadError",
    "closest_points_on_mesh",
    "fit_flame_to_mesh",
    "init_space",
    "read_bfm_h5",
    "read_colored_mesh",
    "read_colored_obj",
    "read_ply",
    "vertex_colors_to_uv",
]


class MeshReadError(ValueError):
    """An input mesh that cannot be read or has no usable colours (message names the file)."""


@dataclass
class ColoredMesh:
    """A triangle mesh with per-vertex RGB colours in 0..1.

    Attributes:
        vertices: [V,3] float64.
        faces: [F,3] int64.
        colors: [V,3] float64 RGB 0..1.
        color_basis: [K,V,3] colour components (one unit of coefficient each), or None.
        color_variance: [K] variance of each coefficient, or None.
        source: the file it was read from.
    """

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray
    color_basis: np.ndarray | None = None
    color_variance: np.ndarray | None = None
    source: str = ""


# --------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip


def _color_scale(dtype: np.dtype) -> float:
    """Integer colours are 0..max of their type (uchar: 255); floats are already 0..1."""
    if dtype.kind in "iu":
        return float(np.iinfo(dtype).max)
    return 1.0


def _check_mesh(path: Path, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None):
    if vertices.shape[0] == 0 or faces.shape[0] == 0:
        raise MeshReadError(f"{path}: no vertices or faces found")
    if faces.min() < 0 or faces.max() >= vertices.shape[0]:
        raise MeshReadError(f"{path}: face indices out of range (0..{vertices.shape[0] - 1})")
    if colors is None:
        raise MeshReadError(
            f"{path}: the mesh has no per-vertex colours (PLY: red/green/blue vertex properties; "
            "OBJ: 'v x y z r g b' records)"
        )
    if not (np.isfinite(vertices).all() and np.isfinite(colors).all()):
        raise MeshReadError(f"{path}: NaN or infinite vertex positions or colours")


def _fan(polygons: list[list[int]]) -> np.ndarray:
    tris = [[p[0], p[k], p[k + 1]] for p in polygons for k in range(1, len(p) - 1)]
    return np.asarray(tris, dtype=np.int64).reshape(-1, 3)


def _parse_ply_header(handle, path: Path):
    if handle.readline().strip() != b"ply":
        raise MeshReadError(f"{path}: not a PLY file (no 'ply' magic line)")
    fmt = None
    elements: list[tuple[str, int, list[tuple]]] = []
    while True:
        line = handle.readline()
        if not line:
            raise MeshReadError(f"{path}: PLY header has no 'end_header'")
        parts = line.decode("ascii", errors="replace").split()
        if not parts or parts[0] in ("comment", "obj_info"):
            continue
        if parts[0] == "end_header":
            break
        if parts[0] == "format":
            fmt = parts[1]
        elif parts[0] == "element":
            elements.append((parts[1], int(parts[2]), []))
        elif parts[0] == "property" and elements:
            if parts[1] == "list":
                props = ("list", parts[4], _PLY_TYPES[parts[2]], _PLY_TYPES[parts[3]])
            else:
                props = ("scalar", parts[2], _PLY_TYPES[parts[1]])
            elements[-1][2].append(props)
    if fmt not in ("ascii", "binary_little_endian"):
        raise MeshReadError(
            f"{path}: PLY format {fmt!r} is not supported (ascii or binary_little_endian)"
        )
    return fmt, elements


def _read_ply_binary_element(handle, count: int, props: list[tuple]) -> dict[str, Any]:
    if all(p[0] == "scalar" for p in props):
        dtype = np.dtype([(p[1], "<" + p[2]) for p in props])
        data = np.frombuffer(handle.read(dtype.itemsize * count), dtype=dtype, count=count)
        return {p[1]: data[p[1]] for p in props}
    out: dict[str, Any] = {p[1]: [] for p in props}
    for _ in range(count):
        for prop in props:
            if prop[0] == "scalar":
                size = np.dtype(prop[2]).itemsize
                out[prop[1]].append(np.frombuffer(handle.read(size), "<" + prop[2])[0])
            else:
                csize = np.dtype(prop[2]).itemsize
                n = int(np.frombuffer(handle.read(csize), "<" + prop[2])[0])
                isize = np.dtype(prop[3]).itemsize
                out[prop[1]].append(np.frombuffer(handle.read(isize * n), "<" + prop[3]).tolist())
    return out


def _read_ply_ascii_element(lines, count: int, props: list[tuple]) -> dict[str, Any]:
    out: dict[str, Any] = {p[1]: [] for p in props}
    for _ in range(count):
        tokens = next(lines).split()
        pos = 0
        for prop in props:
            if prop[0] == "scalar":
                out[prop[1]].append(float(tokens[pos]))
                pos += 1
            else:
                n = int(tokens[pos])
                out[prop[1]].append([int(t) for t in tokens[pos + 1 : pos + 1 + n]])
                pos += 1 + n
    for prop in props:
        if prop[0] == "scalar":
            out[prop[1]] = np.asarray(out[prop[1]], dtype=prop[2])
    return out


def read_ply(path: str | os.PathLike) -> ColoredMesh:
    """Read a PLY (ascii or binary little-endian) with x y z and red green blue per vertex."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            fmt, elements = _parse_ply_header(handle, path)
            data: dict[str, dict[str, Any]] = {}
            if fmt == "ascii":
                text = handle.read().decode("ascii", errors="replace").splitlines()
                lines = iter(line for line in text if line.strip())
                for name, count, props in elements:
                    data[name] = _read_ply_ascii_element(lines, count, props)
            else:
                for name, count, props in elements:
                    data[name] = _read_ply_binary_element(handle, count, props)
    except MeshReadError:
        raise
    except (OSError, KeyError, ValueError, IndexError, StopIteration) as exc:
        raise MeshReadError(f"{path}: cannot read PLY ({type(exc).__name__}: {exc})") from exc
    vert = data.get("vertex")
    if vert is None or not {"x", "y", "z"} <= set(vert):
        raise MeshReadError(f"{path}: PLY has no 'vertex' element with x, y, z")
    vertices = np.stack([np.asarray(vert[k], dtype=np.float64) for k in "xyz"], axis=1)
    colors = None
    for names in (
        ("red", "green", "blue"),
        ("r", "g", "b"),
        ("diffuse_red", "diffuse_green", "diffuse_blue"),
    ):
        if set(names) <= set(vert):
            raw = np.asarray(vert[names[0]])
            scale = _color_scale(raw.dtype)
            colors = np.stack([np.asarray(vert[k], dtype=np.float64) for k in names], 1) / scale
            break
    face = data.get("face", {})
    lists = face.get("vertex_indices", face.get("vertex_index"))
    if lists is None:
        raise MeshReadError(f"{path}: PLY has no 'face' element with vertex_indices")
    faces = _fan([list(map(int, p)) for p in lists])
    _check_mesh(path, vertices, faces, colors)
    return ColoredMesh(vertices, faces, colors, source=str(path))


def read_colored_obj(path: str | os.PathLike) -> ColoredMesh:
    """Read an OBJ whose ``v`` records carry colours (``v x y z r g b``, 0..1).

    :func:`flamekit.io.load_obj` drops the colour columns, hence this small reader. Colours above
    1 are taken as 0..255 (some exporters write bytes).
    """
    path = Path(path)
    vertices: list[list[float]] = []
    colors: list[list[float]] = []
    polygons: list[list[int]] = []
    try:
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            for line_no, line in enumerate(handle, start=1):
                parts = line.split()
                if not parts:
                    continue
                if parts[0] == "v":
                    values = [float(p) for p in parts[1:7]]
                    vertices.append(values[:3])
                    if len(values) >= 6:
                        colors.append(values[3:6])
                elif parts[0] == "f":
                    idx = []
                    for token in parts[1:]:
                        value = int(token.split("/")[0])
                        idx.append(value - 1 if value > 0 else len(vertices) + value)
                    if len(idx) < 3:
                        raise ValueError(f"line {line_no}: a face needs at least 3 corners")
                    polygons.append(idx)
    except (OSError, ValueError) as exc:
        raise MeshReadError(f"{path}: cannot read OBJ ({exc})") from exc
    verts = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    faces = _fan(polygons)
    cols = None
    if colors:
        if len(colors) != len(vertices):
            raise MeshReadError(
                f"{path}: only {len(colors)} of {len(vertices)} 'v' records carry colours"
            )
        cols = np.asarray(colors, dtype=np.float64)
        if cols.max() > 1.0 + 1e-6:
            cols = cols / 255.0
    _check_mesh(path, verts, faces, cols)
    return ColoredMesh(verts, faces, cols, source=str(path))


def _h5py(path: Path):
    try:
        import h5py
    except ImportError as exc:
        raise MeshReadError(
            f"{path}: reading Basel Face Model .h5 files needs h5py (pip install h5py)"
        ) from exc
    return h5py


def read_bfm_h5(path: str | os.PathLike) -> ColoredMesh:
    """Read a Basel Face Model HDF5 (scalismo layout): mean shape, colour mean and colour PCA.

    ``color/model/pcaBasis`` (3N,K) columns become components with std sqrt(pcaVariance), so
    ``colour = mean + sum_k c_k basis_k`` with c_k ~ N(0, var_k), as TextureSpace expects.
    Colours stored as 0..255 (mean above 1.5) are rescaled to 0..1.
    """
    path = Path(path)
    h5py = _h5py(path)
    try:
        with h5py.File(path, "r") as f:
            if "shape/model/mean" in f:
                points = np.asarray(f["shape/model/mean"], dtype=np.float64).reshape(-1, 3)
            else:
                points = np.asarray(f["shape/representer/points"], dtype=np.float64)
                points = points.T if points.shape[0] == 3 and points.shape[1] != 3 else points
            cells = np.asarray(f["shape/representer/cells"], dtype=np.int64)
            mean = np.asarray(f["color/model/mean"], dtype=np.float64).reshape(-1, 3)
            basis = variance = None
            if "color/model/pcaBasis" in f:
                basis = np.asarray(f["color/model/pcaBasis"], dtype=np.float64)
                variance = np.asarray(f["color/model/pcaVariance"], dtype=np.float64).ravel()
    except (OSError, KeyError, ValueError) as exc:
        raise MeshReadError(
            f"{path}: not a Basel Face Model HDF5 (needs shape/model/mean or "
            f"shape/representer/points, shape/representer/cells, color/model/mean): {exc}"
        ) from exc
    faces = cells.T if cells.shape[0] == 3 and cells.shape[1] != 3 else cells
    n = points.shape[0]
    if mean.shape[0] != n:
        raise MeshReadError(f"{path}: colour mean has {mean.shape[0]} vertices, shape has {n}")
    scale = 255.0 if mean.max() > 1.5 else 1.0
    color_basis = None
    if basis is not None:
        if basis.shape[0] != 3 * n or variance.shape[0] != basis.shape[1]:
            raise MeshReadError(
                f"{path}: pcaBasis {basis.shape} / pcaVariance {variance.shape} do not match "
                f"{n} vertices"
            )
        color_basis = basis.T.reshape(-1, n, 3) / scale
        variance = variance / scale**2
    _check_mesh(path, points, faces, mean)
    return ColoredMesh(points, faces, mean / scale, color_basis, variance, source=str(path))


def read_colored_mesh(path: str | os.PathLike) -> ColoredMesh:
    """Dispatch on the suffix: ``.ply``, ``.obj``, ``.h5``/``.hdf5`` (Basel Face Model)."""
    path = Path(path)
    if not path.is_file():
        raise MeshReadError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".ply":
        return read_ply(path)
    if suffix == ".obj":
        return read_colored_obj(path)
    if suffix in (".h5", ".hdf5"):
        return read_bfm_h5(path)
    raise MeshReadError(f"{path}: unsupported mesh format {suffix!r} (.ply, .obj, .h5)")


# --------------------------------------------------------------------------------------------
# Closest points on a triangle mesh
# --------------------------------------------------------------------------------------------


def _triangle_barycentrics(p, a, b, c) -> np.ndarray:
    """Barycentrics of the closest point to ``p`` on triangles abc (Ericson's region tests)."""
    ab, ac, ap = b - a, c - a, p - a
    bp, cp = p - b, p - c
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = va + vb + vc
        v, w = vb / denom, vc / denom
        bary = np.stack([1 - v - w, v, w], -1)
        t_ab = d1 / (d1 - d3)
        t_ac = d2 / (d2 - d6)
        t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
    zero = np.zeros_like(d1)
    one = np.ones_like(d1)
    # Ericson returns at the first matching region; apply them last-to-first so it wins.
    regions = [
        ((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0), (zero, 1 - t_bc, t_bc)),
        ((vb <= 0) & (d2 >= 0) & (d6 <= 0), (1 - t_ac, zero, t_ac)),
        ((d6 >= 0) & (d5 <= d6), (zero, zero, one)),
        ((vc <= 0) & (d1 >= 0) & (d3 <= 0), (1 - t_ab, t_ab, zero)),
        ((d3 >= 0) & (d4 <= d3), (zero, one, zero)),
        ((d1 <= 0) & (d2 <= 0), (one, zero, zero)),
    ]
    for mask, values in regions:
        bary = np.where(mask[:, None], np.stack(values, -1), bary)
    bad = ~np.isfinite(bary).all(-1)  # degenerate triangles: fall back to vertex a
    bary[bad] = (1.0, 0.0, 0.0)
    return bary


class _Surface:
    """A triangle mesh with a KD-tree on its vertices and a vertex -> faces table."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        from scipy.spatial import cKDTree

        self.vertices = np.asarray(vertices, dtype=np.float64)
        self.faces = np.asarray(faces, dtype=np.int64)
        self.tree = cKDTree(self.vertices)
        flat = self.faces.ravel()
        order = np.argsort(flat, kind="stable")
        counts = np.bincount(flat, minlength=len(self.vertices))
        width = max(1, int(counts.max()))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank = np.arange(flat.size) - np.repeat(starts, counts)
        self.adjacency = np.full((len(self.vertices), width), -1, dtype=np.int64)
        self.adjacency[flat[order], rank] = order // 3

    def closest(self, points: np.ndarray, k: int = 8):
        """Closest surface points: (points [N,3], face ids [N], barycentrics [N,3], dist [N]).

        Candidate triangles are those around the k nearest vertices, which finds the true
        closest triangle on any reasonably even mesh at a fraction of a brute-force search.
        """
        points = np.asarray(points, dtype=np.float64)
        k = min(k, len(self.vertices))
        n = len(points)
        out_p = np.empty((n, 3))
        out_f = np.empty(n, dtype=np.int64)
        out_b = np.empty((n, 3))
        out_d = np.empty(n)
        width = k * self.adjacency.shape[1]
        chunk = max(1, 2_000_000 // width)
        for s in range(0, n, chunk):
            q = points[s : s + chunk]
            _, near = self.tree.query(q, k=k)
            near = near.reshape(len(q), k)
            cand = self.adjacency[near].reshape(len(q), width)
            valid = cand >= 0
            cand_safe = np.where(valid, cand, 0)
            tri = self.faces[cand_safe]  # [n,c,3]
            qq = np.broadcast_to(q[:, None], (len(q), width, 3)).reshape(-1, 3)
            a, b, c = (self.vertices[tri[..., i]].reshape(-1, 3) for i in range(3))
            bary = _triangle_barycentrics(qq, a, b, c)
            proj = bary[:, :1] * a + bary[:, 1:2] * b + bary[:, 2:] * c
            dist = np.linalg.norm(proj - qq, axis=1).reshape(len(q), width)
            dist[~valid] = np.inf
            best = dist.argmin(1)
            rows = np.arange(len(q))
            out_f[s : s + chunk] = cand_safe[rows, best]
            out_b[s : s + chunk] = bary.reshape(len(q), width, 3)[rows, best]
            out_p[s : s + chunk] = proj.reshape(len(q), width, 3)[rows, best]
            out_d[s : s + chunk] = dist[rows, best]
        return out_p, out_f, out_b, out_d


def closest_points_on_mesh(points, vertices, faces, k: int = 8):
    """Closest points on the mesh (vertices, faces) to ``points``: (points, face ids,
    barycentrics, distances). See :class:`_Surface`."""
    return _Surface(vertices, faces).closest(points, k)


# --------------------------------------------------------------------------------------------
# Fitting FLAME to a mesh
# --------------------------------------------------------------------------------------------


def _umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) minimising |s R src + t - dst|^2."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[2, 2] = -1
    rot = u @ d @ vt
    var = (xs**2).sum() / len(src)
    scale = float(np.trace(np.diag(sig) @ d) / max(var, 1e-12))
    return scale, rot, mu_d - scale * rot @ mu_s


def _rigid_icp(src, surface: _Surface, s, rot, t, iterations: int = 12):
    """Similarity ICP with nearest vertices both ways; returns (s, R, t, mean distance)."""
    from scipy.spatial import cKDTree

    target = surface.vertices
    sub = target[:: max(1, len(target) // 4000)]
    err = np.inf
    for _ in range(iterations):
        y = s * src @ rot.T + t
        d_fwd, i_fwd = surface.tree.query(y)
        d_bwd, i_bwd = cKDTree(y).query(sub)
        err = 0.5 * (d_fwd.mean() + d_bwd.mean())
        s, rot, t = _umeyama(
            np.concatenate([src, src[i_bwd]]), np.concatenate([target[i_fwd], sub])
        )
    return s, rot, t, err


def _resolve_landmarks(landmarks, mesh: ColoredMesh) -> np.ndarray | None:
    if landmarks is None:
        return None
    if isinstance(landmarks, (str, os.PathLike)):
        path = Path(landmarks)
        try:
            landmarks = np.load(path) if path.suffix == ".npy" else np.loadtxt(path)
        except (OSError, ValueError) as exc:
            raise MeshReadError(f"{path}: cannot read landmarks ({exc})") from exc
    arr = np.asarray(landmarks)
    if arr.shape == (68,) and np.allclose(arr, np.round(arr)):
        idx = arr.astype(np.int64)
        if idx.min() < 0 or idx.max() >= len(mesh.vertices):
            raise MeshReadError(f"landmark vertex indices out of range 0..{len(mesh.vertices) - 1}")
        return mesh.vertices[idx]
    if arr.shape == (68, 3):
        return arr.astype(np.float64)
    raise MeshReadError(f"landmarks must be 68 vertex indices or (68,3) points, got {arr.shape}")


@dataclass
class FitResult:
    """FLAME fitted to a mesh: FLAME vertices in the mesh's frame and the parameters."""

    vertices: np.ndarray
    identity: np.ndarray
    expression: np.ndarray
    global_pose: np.ndarray
    translation: np.ndarray
    scale: float
    residual: float
    residual_mm: float


def fit_flame_to_mesh(
    model,
    vertices: np.ndarray,
    faces: np.ndarray,
    landmarks: np.ndarray | None = None,
    steps: int = 300,
    device: str | torch.device = "cpu",
    log=None,
) -> FitResult:
    """Fit FLAME's geometry to a mesh of another topology (similarity, then non-rigid).

    Why two stages: the non-rigid chamfer fit only converges from a good similarity, which
    comes from landmarks when given or else from the best of a few centroid/principal-axis
    alignments refined by ICP. The non-rigid stage optimises identity, expression, global
    pose, translation and scale against closest surface points (re-queried every 10 steps),
    with a reverse term (mesh points to FLAME) so that partial scans do not shrink FLAME.
    """
    from flamekit.model.lbs import axis_angle_to_matrix

    log = log or (lambda _msg: None)
    verts = np.asarray(vertices, dtype=np.float64)
    centre = verts.mean(0)
    radius = float(np.sqrt(((verts - centre) ** 2).sum(1).mean()))
    norm = (verts - centre) / radius  # work in a unit frame whatever the input units
    surface = _Surface(norm, faces)
    model = model.to(device)
    with torch.no_grad():
        out = model(batch_size=1)
    template = out.vertices[0].double().cpu().numpy()
    t_centre = template.mean(0)
    src = template - t_centre
    s0 = 1.0 / float(np.sqrt((src**2).sum(1).mean()))

    lmk_target = None
    if landmarks is not None:
        if out.landmarks is None:
            raise ValueError("landmarks were given but the model has no landmark embedding")
        lmk_target = (np.asarray(landmarks, dtype=np.float64) - centre) / radius
        lmk_src = out.landmarks[0].double().cpu().numpy() - t_centre
        s, rot, t = _umeyama(lmk_src, lmk_target)
        s, rot, t, err = _rigid_icp(src, surface, s, rot, t, iterations=4)
    else:
        candidates = [np.eye(3)]
        _, _, v_src = np.linalg.svd(src, full_matrices=False)
        _, _, v_dst = np.linalg.svd(norm, full_matrices=False)
        for signs in ((1, 1, 1), (-1, -1, 1), (-1, 1, -1), (1, -1, -1)):
            rot = v_dst.T @ np.diag(signs) @ v_src
            if np.linalg.det(rot) < 0:
                rot = v_dst.T @ np.diag(signs) @ np.diag((1, 1, -1)) @ v_src
            candidates.append(rot)
        best = None
        for rot in candidates:
            fit = _rigid_icp(src, surface, s0, rot, np.zeros(3))
            if best is None or fit[3] < best[3]:
                best = fit
        s, rot, t, err = best
    log(f"similarity initialisation: mean distance {err * radius:.4g} (input units)")

    dtype = torch.float32
    dev = torch.device(device)
    aa = torch.from_numpy(_matrix_to_axis_angle(rot)).to(dev, dtype)
    params = {
        "identity": torch.zeros(1, model.num_identity, device=dev, requires_grad=True),
        "expression": torch.zeros(1, model.num_expression, device=dev, requires_grad=True),
        "pose": aa.clone().requires_grad_(True),
        "translation": torch.from_numpy(t).to(dev, dtype).requires_grad_(True),
        "log_scale": torch.tensor(np.log(s), device=dev, dtype=dtype, requires_grad=True),
    }
    t_centre_t = torch.from_numpy(t_centre).to(dev, dtype)
    lmk_t = None if lmk_target is None else torch.from_numpy(lmk_target).to(dev, dtype)
    sub = norm[:: max(1, len(norm) // 5000)]
    sub_t = torch.from_numpy(sub).to(dev, dtype)
    rigid_steps = max(1, steps // 5)

    def pose(rigid: bool):
        result = model(
            identity=None if rigid else params["identity"],
            expression=None if rigid else params["expression"],
        )
        rot_t = axis_angle_to_matrix(params["pose"][None])[0]
        scale = params["log_scale"].exp()
        y = scale * (result.vertices[0] - t_centre_t) @ rot_t.T + params["translation"]
        lm = None
        if lmk_t is not None:
            lm = scale * (result.landmarks[0] - t_centre_t) @ rot_t.T + params["translation"]
        return y, lm

    from scipy.spatial import cKDTree

    optim = torch.optim.Adam(
        [
            {"params": [params["identity"], params["expression"]], "lr": 0.05},
            {"params": [params["pose"], params["translation"], params["log_scale"]], "lr": 0.005},
        ]
    )
    target = weights = back_idx = None
    for step in range(steps):
        rigid = step < rigid_steps
        y, lm = pose(rigid)
        if step % 10 == 0:
            y_np = y.detach().double().cpu().numpy()
            target_np, _, _, dist = surface.closest(y_np, k=4)
            # trim FLAME vertices far from the mesh (regions a partial scan does not cover)
            cut = max(3.0 * np.median(dist), 1e-6)
            target = torch.from_numpy(target_np).to(dev, dtype)
            weights = torch.from_numpy((dist < cut).astype(np.float32)).to(dev)
            _, back = cKDTree(y_np).query(sub)
            back_idx = torch.from_numpy(back).to(dev)
        unit = 1000.0 / params["log_scale"].detach().exp()  # normalised frame -> FLAME mm
        d_fwd = ((y - target) ** 2).sum(1) * unit**2
        loss = (weights * d_fwd).sum() / weights.sum().clamp(min=1)
        loss = loss + (((y[back_idx] - sub_t) ** 2).sum(1) * unit**2).mean()
        if lm is not None:
            loss = loss + ((lm - lmk_t) ** 2).sum(1).mean() * unit**2
        if not rigid:
            loss = loss + 1e-2 * (params["identity"] ** 2).sum()
            loss = loss + 1e-2 * (params["expression"] ** 2).sum()
        optim.zero_grad()
        loss.backward()
        optim.step()
    with torch.no_grad():
        y, _ = pose(False)
    y_np = y.double().cpu().numpy()
    _, _, _, dist = surface.closest(y_np)
    scale = float(params["log_scale"].detach().exp())
    residual = float(np.mean(dist))
    log(f"non-rigid fit: mean distance {residual * radius:.4g} (input units)")
    return FitResult(
        vertices=y_np * radius + centre,
        identity=params["identity"].detach().cpu().numpy()[0],
        expression=params["expression"].detach().cpu().numpy()[0],
        global_pose=params["pose"].detach().cpu().numpy(),
        translation=params["translation"].detach().cpu().numpy() * radius + centre,
        scale=scale * radius,
        residual=residual * radius,
        residual_mm=residual / scale * 1000.0,
    )


def _matrix_to_axis_angle(rot: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(rot).as_rotvec()


# --------------------------------------------------------------------------------------------
# UV projection
# --------------------------------------------------------------------------------------------


def vertex_colors_to_uv(
    attributes: torch.Tensor,
    faces: torch.Tensor,
    uvs: torch.Tensor,
    uv_faces: torch.Tensor,
    size: int,
    fill: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-vertex attributes [V,C] -> UV maps [C,size,size] and the atlas mask [size,size].

    The UV layout is rasterized with pos = (2u-1, 1-2v, 0, 1) so row 0 is v = 1, as in every
    flamekit texture map; ``faces`` index ``attributes`` (UV seams split texture coordinates,
    not vertices). Texels outside the atlas take the nearest atlas texel's value when ``fill``
    so bilinear lookups near chart borders do not bleed black.
    """
    from scipy.ndimage import distance_transform_edt

    from flamekit.render.ops import interpolate, rasterize

    uv = uvs.detach().to("cpu", torch.float32)
    pos = torch.stack(
        [2 * uv[:, 0] - 1, 1 - 2 * uv[:, 1], torch.zeros_like(uv[:, 0]), torch.ones_like(uv[:, 0])],
        dim=1,
    )
    rast = rasterize(pos[None], uv_faces.cpu(), (size, size))
    mask = rast[0, ..., 3] > 0
    channels = attributes.shape[1]
    out = torch.empty(channels, size, size)
    step = 48
    for c in range(0, channels, step):
        block = attributes[:, c : c + step].detach().to("cpu", torch.float32)
        out[c : c + step] = interpolate(block, rast, faces.cpu())[0].permute(2, 0, 1)
    if fill and mask.any() and not mask.all():
        _, (rows, cols) = distance_transform_edt(~mask.numpy(), return_indices=True)
        out = out[:, torch.from_numpy(rows), torch.from_numpy(cols)]
    return out, mask


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------


@dataclass
class InitSpaceResult:
    """What :func:`init_space` built and where it wrote it.

    Attributes:
        path: the texture-space file written.
        space: the :class:`~flamekit.model.TextureSpace` (mean [3,S,S], K components).
        vertex_colors: [V,3] colours given to the FLAME vertices.
        correspondence: ``"direct"`` (input has FLAME's topology) or ``"fit"``.
        fit_residual: mean distance from the fitted FLAME vertices to the input surface, in
            the input's units (0 for direct correspondence).
        fit_residual_mm: the same in FLAME millimetres.
        atlas_coverage: fraction of texels inside the UV atlas.
        seconds: wall time.
    """

    path: Path
    space: Any
    vertex_colors: np.ndarray
    correspondence: str
    fit_residual: float
    fit_residual_mm: float
    atlas_coverage: float
    seconds: float
    fit: FitResult | None = field(default=None, repr=False)


def _load_model(model):
    if isinstance(model, torch.nn.Module):
        return model
    from flamekit.model.registry import load_head

    return load_head(model)


def init_space(
    mesh_path: str | os.PathLike,
    out: str | os.PathLike,
    model=None,
    texture_size: int = 512,
    landmarks=None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    steps: int = 300,
) -> InitSpaceResult:
    """Build an initial texture space from a coloured mesh and save it to ``out``.

    Args:
        mesh_path: ``.ply`` / ``.obj`` with vertex colours, or a Basel Face Model ``.h5``.
        out: the ``.npz`` to write (flamekit texture-space format).
        model: a FlameModel, a registered name / path, or None (registry, else demo head).
        texture_size: side of the UV maps.
        landmarks: 68 vertex indices or (68,3) points on the input mesh (or a .npy/.txt file
            holding them) to initialise the fit; ignored for FLAME-topology input.
        steps: optimisation steps of the non-rigid fit.

    Raises:
        MeshReadError: unreadable input or no colours (the message names the file).
    """
    from flamekit.model.texture_space import TextureSpace, save_texture_space

    start = time.perf_counter()
    log = (lambda msg: print(f"init-space: {msg}", file=sys.stderr)) if progress else None
    if texture_size < 8:
        raise ValueError(f"texture_size must be >= 8, got {texture_size}")
    mesh = read_colored_mesh(mesh_path)
    head = _load_model(model)
    if head.uvs is None or head.uv_faces is None:
        raise ValueError("the model has no UV layout; register FLAME's template mesh or texture")
    model_faces = head.faces.cpu().numpy()
    k = 0 if mesh.color_basis is None else mesh.color_basis.shape[0]
    attrs = [mesh.colors] + ([] if k == 0 else list(mesh.color_basis))  # each [V_in,3]
    stacked = np.concatenate(attrs, axis=1)  # [V_in, 3(1+K)]
    fit = None
    direct = mesh.vertices.shape[0] == head.num_vertices and np.array_equal(mesh.faces, model_faces)
    if direct:
        per_vertex = stacked
        residual = residual_mm = 0.0
        if log:
            log("input has FLAME's topology: direct vertex correspondence")
    else:
        lmk = _resolve_landmarks(landmarks, mesh)
        fit = fit_flame_to_mesh(
            head, mesh.vertices, mesh.faces, lmk, steps=steps, device=device, log=log
        )
        surface = _Surface(mesh.vertices, mesh.faces)
        _, face_id, bary, _ = surface.closest(fit.vertices)
        corners = mesh.faces[face_id]  # [V,3]
        per_vertex = np.einsum("vk,vkc->vc", bary, stacked[corners])
        residual, residual_mm = fit.residual, fit.residual_mm
    maps, mask = vertex_colors_to_uv(
        torch.from_numpy(per_vertex).float(), head.faces, head.uvs, head.uv_faces, texture_size
    )
    maps = maps.view(1 + k, 3, texture_size, texture_size)
    mean = maps[0].clamp(0, 1)
    std = torch.from_numpy(np.sqrt(np.maximum(mesh.color_variance, 0))).float() if k else None
    provenance = {
        "built_by": "flamekit init-space",
        "source_file": str(Path(mesh_path).resolve()),
        "correspondence": "direct" if direct else "fit",
        "fit_residual": residual,
        "fit_residual_mm": residual_mm,
        "model_release": getattr(head, "data_release", ""),
        "texture_size": texture_size,
        "components": k,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    space = TextureSpace(
        mean.contiguous(),
        maps[1:].contiguous(),
        std=std if k else torch.zeros(0),
        uvs=head.uvs.cpu(),
        uv_faces=head.uv_faces.cpu(),
        provenance=provenance,
    )
    path = save_texture_space(space, out)
    seconds = time.perf_counter() - start
    if log:
        log(f"wrote {path} ({k} components, {texture_size}x{texture_size}, {seconds:.1f} s)")
    return InitSpaceResult(
        path=Path(path),
        space=space,
        vertex_colors=per_vertex[:, :3].copy(),
        correspondence="direct" if direct else "fit",
        fit_residual=float(residual),
        fit_residual_mm=float(residual_mm),
        atlas_coverage=float(mask.float().mean()),
        seconds=seconds,
        fit=fit,
    )
