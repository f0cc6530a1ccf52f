"""``harmonic``: a seam-aware Laplace fill of UV maps, solved with one sparse factorization.

Why harmonic: the fill is the smoothest completion of the known texels (each unknown texel is
the mean of its neighbours), has no parameters, never overshoots the known values and is
exact for linear ramps. Why seam-aware: a UV atlas cuts the surface into charts, so two texels
that touch on the head can lie far apart in the map; a plain image fill sees a hole on either
side of a cut as two unrelated holes and fills them differently, which shows as a visible seam
on the rendered head. With the mesh and its UV layout the texel graph gets extra edges that
stitch the two sides of every cut back together.

The texel graph (built once per resolution and layout, then cached; see :func:`texel_graph`):

* Atlas texels are those whose centre lies in some UV triangle, plus the texels that the
  samples along cut edges fall in. Each belongs to a chart (a connected piece of the UV
  layout); atlas texels are linked to their 4 grid neighbours of the same chart only, so two
  charts that happen to be close in the map do not bleed into each other.
* Cross-seam links: every mesh edge whose two faces give its endpoints different UV
  coordinates is a cut; points sampled along it in both charts (two per texel of length)
  link the texels they fall in pairwise, with the weight of a grid neighbour.
* Texels outside the atlas are linked to all 4 grid neighbours, one way: they follow the
  atlas (the fill extends it smoothly, which keeps bilinear lookups and mipmaps near chart
  borders clean) but never influence it. ``fill_outside=False`` leaves them as they are.

Texture convention: row 0 is v = 1; texel (row i, col j) has its centre at
u = (j + 0.5) / W, v = 1 - (i + 0.5) / H.

Parts with no known texel to anchor them (a whole chart unknown, not reachable through a seam)
are set to the mean of the image's known texels; an image with no known texel at all is an
error (:class:`ValueError`), since there is nothing to fill from.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from flamekit.plugin_types import Inpainter

__all__ = ["HarmonicInpainter", "TexelGraph", "rasterize_uv", "texel_graph"]

_CACHE_SIZE = 8
_cache: OrderedDict[tuple, TexelGraph] = OrderedDict()
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class TexelGraph:
    """The linear system's structure for one resolution and layout.

    Attributes:
        height, width: the map size.
        laplacian: [N,N] CSR matrix (N = H*W), row i = degree * x_i - sum of its neighbours;
            rows of outside-atlas texels reference the atlas but not the other way round.
        atlas: [H,W] bool, texels that belong to the atlas (all True without a layout).
        chart: [H,W] int, the chart of each atlas texel, -1 outside.
        seam_pairs: [P,2] int flat indices (row * W + col) of texels linked across cuts.
    """

    height: int
    width: int
    laplacian: Any
    atlas: np.ndarray
    chart: np.ndarray
    seam_pairs: np.ndarray


def rasterize_uv(
    uvs: np.ndarray, uv_faces: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Which UV triangle covers each texel centre, and where: (face [H,W] int, -1 if none;
    barycentrics [H,W,3] float64). Where triangles overlap, the later face wins."""
    uvs = np.asarray(uvs, dtype=np.float64)
    uv_faces = np.asarray(uv_faces, dtype=np.int64)
    # Texel coordinates: x = u * W - 0.5 (centre of column j at x = j), y likewise with v up.
    tri = np.stack([uvs[:, 0] * width - 0.5, (1.0 - uvs[:, 1]) * height - 0.5], -1)[uv_faces]
    x0 = np.clip(np.ceil(tri[..., 0].min(1) - 1e-9), 0, width).astype(np.int64)
    x1 = np.clip(np.floor(tri[..., 0].max(1) + 1e-9), -1, width - 1).astype(np.int64)
    y0 = np.clip(np.ceil(tri[..., 1].min(1) - 1e-9), 0, height).astype(np.int64)
    y1 = np.clip(np.floor(tri[..., 1].max(1) + 1e-9), -1, height - 1).astype(np.int64)
    bw, bh = np.maximum(x1 - x0 + 1, 0), np.maximum(y1 - y0 + 1, 0)
    counts = bw * bh
    face_of = np.repeat(np.arange(len(uv_faces)), counts)
    local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    cols = x0[face_of] + local % bw[face_of]
    rows = y0[face_of] + local // bw[face_of]
    a, b, c = tri[face_of, 0], tri[face_of, 1], tri[face_of, 2]
    e1, e2 = b - a, c - a
    px, py = cols - a[:, 0], rows - a[:, 1]
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    ok = np.abs(det) > 1e-12
    det = np.where(ok, det, 1.0)
    w1 = (px * e2[:, 1] - py * e2[:, 0]) / det
    w2 = (e1[:, 0] * py - e1[:, 1] * px) / det
    w0 = 1.0 - w1 - w2
    eps = 1e-7
    inside = ok & (w0 >= -eps) & (w1 >= -eps) & (w2 >= -eps)
    face = np.full((height, width), -1, dtype=np.int64)
    bary = np.zeros((height, width, 3))
    face[rows[inside], cols[inside]] = face_of[inside]
    bary[rows[inside], cols[inside]] = np.stack([w0, w1, w2], -1)[inside]
    return face, bary


def _charts(num_uvs: int, uv_faces: np.ndarray) -> np.ndarray:
    """Chart id of each UV triangle: connected pieces of the layout through shared UVs."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    a = uv_faces.reshape(-1)
    b = np.roll(uv_faces, -1, axis=1).reshape(-1)
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(num_uvs, num_uvs))
    _, label = connected_components(graph, directed=False)
    return label[uv_faces[:, 0]]


def _cut_samples(
    uvs: np.ndarray, uv_faces: np.ndarray, faces: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Texels on both sides of every cut: (flat A, flat B, face A, face B), one per sample."""
    k0, k1 = np.array([0, 1, 2]), np.array([1, 2, 0])
    va, vb = faces[:, k0].reshape(-1), faces[:, k1].reshape(-1)
    ta, tb = uv_faces[:, k0].reshape(-1), uv_faces[:, k1].reshape(-1)
    face_id = np.repeat(np.arange(len(faces)), 3)
    swap = va > vb  # orient every half-edge from its lower vertex index to the higher one
    lo, hi = np.where(swap, vb, va), np.where(swap, va, vb)
    tlo, thi = np.where(swap, tb, ta), np.where(swap, ta, tb)
    order = np.lexsort((hi, lo))
    lo, hi, tlo, thi, face_id = lo[order], hi[order], tlo[order], thi[order], face_id[order]
    same_edge = (lo[1:] == lo[:-1]) & (hi[1:] == hi[:-1])
    cut = same_edge & ((tlo[1:] != tlo[:-1]) | (thi[1:] != thi[:-1]))
    i = np.nonzero(cut)[0]
    if len(i) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, empty
    scale = np.array([width, height], dtype=np.float64)
    a0, a1 = uvs[tlo[i]] * scale, uvs[thi[i]] * scale
    b0, b1 = uvs[tlo[i + 1]] * scale, uvs[thi[i + 1]] * scale
    length = np.maximum(np.linalg.norm(a1 - a0, axis=1), np.linalg.norm(b1 - b0, axis=1))
    counts = np.ceil(2.0 * length).astype(np.int64) + 1
    edge = np.repeat(np.arange(len(i)), counts)
    start = np.repeat(np.cumsum(counts) - counts, counts)
    t = ((np.arange(counts.sum()) - start) / np.maximum(counts[edge] - 1, 1))[:, None]

    def flat(p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
        p = p0[edge] + t * (p1[edge] - p0[edge])
        col = np.clip(np.floor(p[:, 0]), 0, width - 1).astype(np.int64)
        row = np.clip(np.floor(height - p[:, 1]), 0, height - 1).astype(np.int64)
        return row * width + col

    return flat(a0, a1), flat(b0, b1), face_id[i][edge], face_id[i + 1][edge]


def _build_graph(
    height: int,
    width: int,
    uvs: np.ndarray | None,
    uv_faces: np.ndarray | None,
    faces: np.ndarray | None,
) -> TexelGraph:
    from scipy.sparse import coo_matrix

    n = height * width
    if uvs is None:
        chart = np.zeros((height, width), dtype=np.int64)
        pairs = np.zeros((0, 2), dtype=np.int64)
    else:
        face, _ = rasterize_uv(uvs, uv_faces, height, width)
        face_chart = _charts(len(uvs), uv_faces)
        chart = np.where(face >= 0, face_chart[np.maximum(face, 0)], -1).reshape(-1)
        pairs = np.zeros((0, 2), dtype=np.int64)
        if faces is not None:
            fa, fb, face_a, face_b = _cut_samples(uvs, uv_faces, faces, height, width)
            # Cut texels whose centre falls just outside their chart still join it.
            for flat, f in ((fa, face_a), (fb, face_b)):
                free = chart[flat] < 0
                chart[flat[free]] = face_chart[f[free]]
            keep = fa != fb
            pairs = np.unique(np.sort(np.stack([fa[keep], fb[keep]], 1), axis=1), axis=0)
        chart = chart.reshape(height, width)
    atlas = chart >= 0
    idx = np.arange(n).reshape(height, width)
    src, dst = [], []
    for a, b in ((idx[:, :-1], idx[:, 1:]), (idx[:-1, :], idx[1:, :])):
        a, b = a.reshape(-1), b.reshape(-1)
        ca, cb = chart.reshape(-1)[a], chart.reshape(-1)[b]
        # Row of a references b: a outside the atlas (follows anything), or same chart.
        a_uses_b = (ca < 0) | (ca == cb)
        b_uses_a = (cb < 0) | (ca == cb)
        src += [a[a_uses_b], b[b_uses_a]]
        dst += [b[a_uses_b], a[b_uses_a]]
    src += [pairs[:, 0], pairs[:, 1]]
    dst += [pairs[:, 1], pairs[:, 0]]
    src_all, dst_all = np.concatenate(src), np.concatenate(dst)
    adjacency = coo_matrix((np.ones(len(src_all)), (src_all, dst_all)), shape=(n, n)).tocsr()
    adjacency.sum_duplicates()
    adjacency.data[:] = 1.0  # a seam pair that is also a grid pair counts once
    degree = np.asarray(adjacency.sum(axis=1)).reshape(-1)
    from scipy.sparse import diags

    laplacian = (diags(degree) - adjacency).tocsr()
    return TexelGraph(height, width, laplacian, atlas, chart, pairs)


def _fingerprint(*arrays: np.ndarray | None) -> str:
    digest = hashlib.sha1()
    for array in arrays:
        if array is None:
            digest.update(b"none")
        else:
            digest.update(str(array.shape).encode() + str(array.dtype).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def texel_graph(
    height: int,
    width: int,
    uvs: np.ndarray | None = None,
    uv_faces: np.ndarray | None = None,
    faces: np.ndarray | None = None,
    key: str | None = None,
) -> TexelGraph:
    """The (cached) texel graph of a layout at a resolution; without a layout, the plain grid."""
    key = key or _fingerprint(uvs, uv_faces, faces)
    cache_key = (key, int(height), int(width))
    with _cache_lock:
        graph = _cache.get(cache_key)
        if graph is not None:
            _cache.move_to_end(cache_key)
            return graph
    graph = _build_graph(int(height), int(width), uvs, uv_faces, faces)
    with _cache_lock:
        _cache[cache_key] = graph
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return graph


def _as_numpy(array: Any, dtype: type, name: str, columns: int) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    array = np.ascontiguousarray(array, dtype=dtype)
    if array.ndim != 2 or array.shape[1] != columns:
        raise ValueError(f"{name} must have shape [N,{columns}], got {array.shape}")
    return array


def check_inputs(image: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Validate shapes; return ``known`` as a [B,1,H,W] bool tensor on the image's device."""
    if not isinstance(image, torch.Tensor) or image.ndim != 4:
        raise ValueError(f"image must be a [B,C,H,W] tensor, got {getattr(image, 'shape', image)}")
    if not isinstance(known, torch.Tensor) or known.ndim != 4 or known.shape[1] != 1:
        raise ValueError(f"known must be a [B,1,H,W] tensor, got {getattr(known, 'shape', known)}")
    if known.shape[2:] != image.shape[2:] or known.shape[0] not in (1, image.shape[0]):
        raise ValueError(
            f"known {tuple(known.shape)} does not match image {tuple(image.shape)} "
            "(expected [B,1,H,W] or [1,1,H,W])"
        )
    known = known.to(image.device)
    known = known if known.dtype == torch.bool else known > 0.5
    return known.expand(image.shape[0], 1, *image.shape[2:])


def no_known_error(index: int) -> ValueError:
    """The error for an image with nothing to fill from (shared by the inpainters)."""
    return ValueError(
        f"image {index} of the batch has no known texels: there is nothing to inpaint from "
        "(pass at least one known texel, or skip the image)"
    )


class HarmonicInpainter(Inpainter):
    """Seam-aware harmonic (Laplace) fill; the default inpainter (see the module doc)."""

    name = "harmonic"

    def __init__(
        self,
        uvs: Any = None,
        uv_faces: Any = None,
        faces: Any = None,
        fill_outside: bool = True,
    ) -> None:
        """Args:
        uvs: [T,2] UV coordinates (u right, v up); with ``uv_faces`` they give the atlas.
        uv_faces: [F,3] indices into ``uvs``, one row per mesh face.
        faces: [F,3] mesh vertex indices; with the UVs they locate the cuts to stitch.
        fill_outside: fill texels outside the atlas too (smooth extension), or leave them.
        """
        if (uvs is None) != (uv_faces is None):
            raise ValueError("uvs and uv_faces go together: pass both or neither")
        if faces is not None and uvs is None:
            raise ValueError("faces needs uvs and uv_faces (the cuts are found between them)")
        self.uvs = None if uvs is None else _as_numpy(uvs, np.float64, "uvs", 2)
        self.uv_faces = None if uv_faces is None else _as_numpy(uv_faces, np.int64, "uv_faces", 3)
        self.faces = None if faces is None else _as_numpy(faces, np.int64, "faces", 3)
        if self.uv_faces is not None:
            if self.uv_faces.size and (
                self.uv_faces.min() < 0 or self.uv_faces.max() >= len(self.uvs)
            ):
                raise ValueError("uv_faces indexes past the end of uvs")
            if self.faces is not None and self.faces.shape != self.uv_faces.shape:
                raise ValueError(
                    f"faces {self.faces.shape} and uv_faces {self.uv_faces.shape} must match"
                )
        self.fill_outside = bool(fill_outside)
        self._key = _fingerprint(self.uvs, self.uv_faces, self.faces)

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            import scipy.sparse.linalg  # noqa: F401
        except Exception as exc:
            return False, f"scipy is not importable ({exc}); pip install scipy"
        return True, ""

    def graph(self, height: int, width: int) -> TexelGraph:
        """The cached texel graph at this resolution (built on first use)."""
        return texel_graph(height, width, self.uvs, self.uv_faces, self.faces, key=self._key)

    def inpaint(self, image: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        known = check_inputs(image, known)
        batch, _, height, width = image.shape
        if bool(known.all()):
            return image.clone()
        graph = self.graph(height, width)
        values = image.detach().to("cpu", torch.float64).numpy()
        mask = known.cpu().numpy()[:, 0]
        filled = np.empty_like(values)
        for b in range(batch):
            filled[b] = self._fill(graph, values[b], mask[b], b)
        result = torch.from_numpy(filled).to(device=image.device, dtype=image.dtype)
        return torch.where(known, image, result)

    def _fill(self, graph: TexelGraph, image: np.ndarray, known: np.ndarray, index: int):
        """Fill one [C,H,W] image: one sparse LU factorization, one solve for all channels."""
        from scipy.sparse import csr_matrix, vstack
        from scipy.sparse.csgraph import breadth_first_order
        from scipy.sparse.linalg import splu

        channels, height, width = image.shape
        n = height * width
        x = image.reshape(channels, n).T.copy()
        fixed = known.reshape(-1).copy()
        if not fixed.any():
            raise no_known_error(index)
        if not self.fill_outside:
            fixed |= ~graph.atlas.reshape(-1)
        if fixed.all():
            return image
        lap = graph.laplacian
        # Unknowns that cannot reach a fixed texel along their rows' links have no anchor:
        # search backwards from a virtual node joined to every fixed texel.
        reverse = (lap.T != 0).astype(np.float64).tocsr()
        sources = np.nonzero(fixed)[0]
        hub = csr_matrix(
            (np.ones(len(sources)), (np.zeros(len(sources), dtype=np.int64), sources)),
            shape=(1, n),
        )
        graph_plus = vstack([reverse, hub]).tocsr()
        graph_plus.resize((n + 1, n + 1))
        reached = breadth_first_order(graph_plus, n, directed=True, return_predecessors=False)
        anchored = np.zeros(n + 1, dtype=bool)
        anchored[reached] = True
        orphan = ~fixed & ~anchored[:n]
        if orphan.any():
            x[orphan] = x[known.reshape(-1)].mean(axis=0)
            fixed |= orphan
        unknown = np.nonzero(~fixed)[0]
        if len(unknown):
            rows = lap[unknown]
            system = rows[:, unknown].tocsc()
            rhs = -(rows[:, np.nonzero(fixed)[0]] @ x[fixed])
            x[unknown] = splu(system).solve(np.ascontiguousarray(rhs))
        return x.T.reshape(channels, height, width)
