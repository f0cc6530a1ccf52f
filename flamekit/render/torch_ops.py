"""Pure-PyTorch reference implementation of the flamekit rendering ops (the "torch" backend).

This module is the slow, readable reference for the C++/CUDA kernels. It is used by the
tests as ground truth (in float64 it is also the autograd reference for gradient checks)
and as the fallback on machines where the extension cannot be built. Everything is
vectorized torch code, device agnostic, and differentiable through torch autograd; it works
in float32 and float64.

Conventions (identical to nvdiffrast and to ``csrc/include/flamekit/raster_math.h``):

* ``pos`` holds clip-space vertices ``(x, y, z, w)``; ``ndc = xyz / w``.
* Pixel (row ``i``, column ``j``) of an ``H x W`` image has its centre at
  ``px = (2j + 1) / W - 1``, ``py = (2i + 1) / H - 1`` (computed in the working dtype).
* Coverage uses homogeneous edge functions. With ``p = (x, y, w)`` and ``P = (px, py, 1)``,
  ``u_i = (p_j x p_k) . P`` for ``(i, j, k)`` cyclic, evaluated as ``a_j b_k - b_j a_k`` with
  ``a_m = x_m - w_m px`` and ``b_m = y_m - w_m py`` (accurate for small triangles, and
  exactly antisymmetric in ``j, k``). The orientation ``o = +-1`` is the sign of the signed
  ndc area; triangles with zero area, a vertex at ``w <= 0`` or non-finite coordinates are
  skipped (there is no back-face culling). A pixel centre is covered when every
  ``o u_i > 0``; a centre exactly on an edge (``u_i == 0``) is covered when that oriented
  edge is "top-left": with ``(c_x, c_y) = o d u_i / d(px, py)``, ``c_x > 0`` or
  ``c_x == 0 and c_y > 0``. A pixel centre on an edge shared by two triangles is therefore
  covered exactly once.
* Depth is ``z = sum(u_i z_i) / sum(u_i w_i)`` (ndc z, smaller is nearer); fragments with
  ``z`` outside ``[-1, 1]`` are discarded. The nearest fragment wins, ties (compared as
  float32) go to the lower triangle id.
* Coverage and the depth test run in the dtype of ``pos``. The winner's outputs
  ``rast[b, i, j] = (b0, b1, z, tri_id + 1)``, with perspective-correct barycentrics
  ``b_i = u_i / (u_0 + u_1 + u_2)``, are recomputed in float64 and rounded to the dtype of
  ``pos``; background pixels are all zeros. ``b0``, ``b1`` and ``z`` are differentiable with
  respect to ``pos`` for fixed coverage.
* Spherical-harmonics shading uses the second-order basis with the Ramamoorthi-Hanrahan
  irradiance constants, in the form of DECA and the FLAME photometric fitting code.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["interpolate", "rasterize", "sh_shade"]

# Upper bound on the (triangle, pixel) candidate pairs evaluated at once by rasterize(); a
# chunk holds whole triangles, so one triangle's bounding box may exceed it. Peak memory is
# roughly 150 (float32) to 250 (float64) bytes per pair.
MAX_CANDIDATE_PAIRS = 1 << 21

_FLOAT_DTYPES = (torch.float32, torch.float64)
_INDEX_DTYPES = (torch.int32, torch.int64)

# Ramamoorthi-Hanrahan irradiance constants times the SH normalization (DECA / FLAME fitting).
# Written as the same double literals as the kShBand* constants of raster_math.h (evaluating
# the formulas in Python differs from them in the last bit for some entries).
SH_CONSTANTS = (
    0.28209479177387814,  # 1 / sqrt(4 pi)
    1.0233267079464885,  # (2 pi / 3) * sqrt(3 / (4 pi))
    1.0233267079464885,
    1.0233267079464885,
    0.8580855308097834,  # (pi / 4) * 3 * sqrt(5 / (12 pi))
    0.8580855308097834,
    0.8580855308097834,
    0.4290427654048917,  # (pi / 4) * (3 / 2) * sqrt(5 / (12 pi))
    0.24770795610037571,  # (pi / 4) * (1 / 2) * sqrt(5 / (4 pi))
)

# Largest triangle id + 1 that a float32 rast channel represents exactly.
_FLOAT32_MAX_ID = 1 << 24


# ---------------------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------------------


def _check_float(name: str, t: object) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"{name} must be float32 or float64, got {t.dtype}")
    return t


def _check_tri(tri: object, num_vertices: int, device: torch.device, vert_name: str) -> None:
    if not isinstance(tri, torch.Tensor):
        raise ValueError(f"tri must be a torch.Tensor, got {type(tri).__name__}")
    if tri.dtype not in _INDEX_DTYPES:
        raise ValueError(f"tri must be int32 or int64, got {tri.dtype}")
    if tri.dim() != 2 or tri.shape[1] != 3:
        raise ValueError(f"tri must have shape [F,3], got {list(tri.shape)}")
    if tri.device != device:
        raise ValueError(f"tri is on {tri.device} but {vert_name} is on {device}")
    if tri.numel() > 0:
        lo = int(tri.min())
        hi = int(tri.max())
        if lo < 0:
            raise ValueError(f"tri holds a negative vertex index ({lo})")
        if hi >= num_vertices:
            raise ValueError(f"tri indexes vertex {hi} but {vert_name} has {num_vertices} vertices")


def _check_resolution(resolution: object) -> tuple[int, int]:
    if isinstance(resolution, torch.Tensor) or not isinstance(resolution, Sequence):
        raise ValueError(f"resolution must be a (H, W) pair of ints, got {resolution!r}")
    if len(resolution) != 2:
        raise ValueError(f"resolution must be a (H, W) pair of ints, got {resolution!r}")
    try:
        h, w = (int(v) for v in resolution)
    except (TypeError, ValueError):
        raise ValueError(f"resolution must be a (H, W) pair of ints, got {resolution!r}") from None
    if any(float(v) != int(v) for v in resolution) or h <= 0 or w <= 0:
        raise ValueError(f"resolution must be two positive ints, got {resolution!r}")
    return h, w


# ---------------------------------------------------------------------------------------
# Rasterization
# ---------------------------------------------------------------------------------------


def _pixel_centers(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Centres ``(2k + 1) / n - 1`` for k in [0, n), evaluated as T(2k+1) / T(n) - T(1)."""
    num = (2 * torch.arange(n, dtype=torch.int64) + 1).to(dtype)
    # Full-size divisor: keeps a true IEEE division (no reciprocal-multiply scalar paths).
    den = torch.full((n,), float(n), dtype=dtype)
    return (num / den - 1).to(device)


def _edge_functions(
    x: Sequence[torch.Tensor],
    y: Sequence[torch.Tensor],
    w: Sequence[torch.Tensor],
    px: torch.Tensor,
    py: torch.Tensor,
) -> list[torch.Tensor]:
    """Unoriented edge functions u_i = (p_j x p_k) . P, evaluated as a_j b_k - b_j a_k.

    x[m], y[m], w[m]: [N] clip coordinates of vertex m; px, py: [N] pixel centres. With
    a_m = x_m - w_m px and b_m = y_m - w_m py this is det(P, p_j - w_j P, p_k - w_k P):
    subtracting before multiplying keeps small triangles accurate, and swapping j and k
    negates u exactly.
    """
    a = [x[m] - w[m] * px for m in range(3)]
    b = [y[m] - w[m] * py for m in range(3)]
    return [a[(i + 1) % 3] * b[(i + 2) % 3] - b[(i + 1) % 3] * a[(i + 2) % 3] for i in range(3)]


def _gather(columns: Sequence[torch.Tensor], idx: torch.Tensor) -> list[torch.Tensor]:
    return [c.index_select(0, idx) for c in columns]


def _edge_terms(
    coord: Sequence[torch.Tensor],
    ws: Sequence[torch.Tensor],
    start: torch.Tensor,
    length: torch.Tensor,
    centers: torch.Tensor,
    sl: slice,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """coord_m - w_m * centre for every bounding-box column (or row) of the triangles in sl.

    coord, ws: per-vertex [T] tables; start, length: first pixel and extent [T] of the boxes.
    Returns the three terms [M] (entries of one triangle are consecutive) and the offset of
    each triangle's first entry [len(sl)].
    """
    lengths = length[sl]
    ends = torch.cumsum(lengths, 0)
    base = ends - lengths
    total = int(ends[-1])
    owner = torch.repeat_interleave(
        torch.arange(lengths.numel(), device=lengths.device), lengths, output_size=total
    )
    pixel = start[sl].index_select(0, owner) + (
        torch.arange(total, device=lengths.device) - base.index_select(0, owner)
    )
    c = centers.index_select(0, pixel)
    owner += sl.start
    terms = [coord[m].index_select(0, owner) - ws[m].index_select(0, owner) * c for m in range(3)]
    return terms, base


def _order_key(z: torch.Tensor) -> torch.Tensor:
    """Order-preserving signed int64 key of float32(z) (same order as float_order_key)."""
    bits = z.to(torch.float32).contiguous().view(torch.int32).to(torch.int64)
    return torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)


def _bbox(lo: torch.Tensor, hi: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inclusive pixel range [first, last] of the centres within [lo, hi] (ndc) plus a margin
    of 1/64 pixel, clamped to the image; evaluated like setup_triangle in raster_math.h."""
    margin = 1.0 / 64.0
    f0 = ((((lo + 1) * size) * 0.5 - 0.5) - margin).clamp(-2.0, size + 1.0)
    f1 = ((((hi + 1) * size) * 0.5 - 0.5) + margin).clamp(-2.0, size + 1.0)
    # ceil / floor through truncation of a shifted positive number
    t0 = (f0 + 3).to(torch.int64) - 3
    first = t0 + (t0.to(f0.dtype) < f0).to(torch.int64)
    last = (f1 + 3).to(torch.int64) - 3
    return first.clamp(min=0), last.clamp(max=size - 1)


def _triangle_setups(v: torch.Tensor, height: int, width: int):
    """Per-triangle setup (no grad) of v [N, 3, 4]: orientation [N] (+-1), owns [N, 3] (top-left
    rule per edge), pixel bounding box (x0, y0, width, height) and pixel count [N]."""
    finite = torch.isfinite(v).all(dim=-1).all(dim=-1)
    valid = finite & (v[..., 3] > 0).all(dim=-1)
    v = torch.where(valid[:, None, None], v, torch.ones_like(v))
    x, y, w = v[..., 0], v[..., 1], v[..., 3]
    nx = x / w
    ny = y / w
    # Orientation from the signed ndc area (w > 0: the sign of det(p0, p1, p2)).
    area = (nx[:, 1] - nx[:, 0]) * (ny[:, 2] - ny[:, 0]) - (nx[:, 2] - nx[:, 0]) * (
        ny[:, 1] - ny[:, 0]
    )
    valid &= area != 0
    orientation = torch.where(area > 0, 1.0, -1.0).to(v.dtype)
    # Gradient (c0, c1) of u_i with respect to (px, py), oriented; top-left rule.
    xj, yj, wj = x.roll(-1, dims=1), y.roll(-1, dims=1), w.roll(-1, dims=1)
    xk, yk, wk = x.roll(-2, dims=1), y.roll(-2, dims=1), w.roll(-2, dims=1)
    c0 = orientation[:, None] * (yj * wk - wj * yk)
    c1 = orientation[:, None] * (wj * xk - xj * wk)
    owns = (c0 > 0) | ((c0 == 0) & (c1 > 0))

    bx0, bx1 = _bbox(nx.amin(dim=1), nx.amax(dim=1), width)
    by0, by1 = _bbox(ny.amin(dim=1), ny.amax(dim=1), height)
    bw = (bx1 - bx0 + 1).clamp(min=0)
    bh = (by1 - by0 + 1).clamp(min=0)
    count = torch.where(valid, bw * bh, torch.zeros_like(bw))
    return orientation, owns, bx0, by0, bw, bh, count


def _depth_test(pos: torch.Tensor, tri: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Winning triangle per pixel (no grad). Returns int64 [B*H*W], -1 for background."""
    batch = pos.shape[0]
    num_tri = tri.shape[0]
    device, dtype = pos.device, pos.dtype
    num_pixels = batch * height * width
    empty = torch.iinfo(torch.int64).max
    frags = torch.full((num_pixels,), empty, dtype=torch.int64, device=device)
    if num_tri == 0:
        return frags.new_full((num_pixels,), -1)

    v = pos[:, tri.long()].reshape(batch * num_tri, 3, 4)
    orientation, owns, bx0, by0, bw, bh, count = _triangle_setups(v, height, width)

    # Compact to the (batch, triangle) pairs whose bounding box is not empty. Per-candidate
    # data is kept as contiguous 1-D tensors: the per-pair gathers are then plain 1-D
    # index_selects and the arithmetic runs on contiguous memory.
    cand = torch.nonzero(count > 0).squeeze(1)
    if cand.numel() == 0:
        return frags.new_full((num_pixels,), -1)
    counts = count[cand]
    vc = v[cand].permute(2, 1, 0).contiguous()  # [4, 3, T]: coordinate, vertex, candidate
    xs, ys, zs, ws = (list(vc[k].unbind(0)) for k in range(4))
    orientation = orientation[cand]
    owns = list(owns[cand].t().contiguous().unbind(0))
    bx0, by0, bw, bh = bx0[cand], by0[cand], bw[cand], bh[cand]
    tri_id = cand % num_tri
    pix_base = (cand // num_tri) * (height * width)

    px_tab = _pixel_centers(width, dtype, device)
    py_tab = _pixel_centers(height, dtype, device)

    ends = torch.cumsum(counts, 0)
    ends_cpu = ends.cpu()
    num_cand = cand.numel()
    first = 0
    while first < num_cand:
        done = int(ends_cpu[first - 1]) if first > 0 else 0
        # Largest stop with ends[stop - 1] - done <= budget, at least one triangle.
        stop = int(torch.searchsorted(ends_cpu, done + MAX_CANDIDATE_PAIRS, right=True))
        stop = max(stop, first + 1)
        n = int(ends_cpu[stop - 1]) - done
        sl = slice(first, stop)
        first = stop
        # a_m = x_m - w_m px depends only on (triangle, column) and b_m = y_m - w_m py only
        # on (triangle, row): evaluate them once per bounding-box column / row.
        a, col_base = _edge_terms(xs, ws, bx0, bw, px_tab, sl)
        b, row_base = _edge_terms(ys, ws, by0, bh, py_tab, sl)
        # Candidate pair k belongs to triangle t[k] and is pixel r[k] of its bounding box.
        local = torch.arange(stop - sl.start, device=device)
        t = torch.repeat_interleave(local, counts[sl], output_size=n)
        r = torch.arange(n, device=device) - (ends[sl] - counts[sl] - done).index_select(0, t)
        width_t = bw[sl].index_select(0, t)
        lc = r % width_t
        lr = r // width_t
        del r, width_t
        ic = col_base.index_select(0, t) + lc
        ir = row_base.index_select(0, t) + lr
        am = _gather(a, ic)
        bm = _gather(b, ir)
        del ic, ir
        # u_i = a_j b_k - b_j a_k, as in _edge_functions
        u = []
        for i in range(3):
            j, k = (i + 1) % 3, (i + 2) % 3
            u.append(am[j] * bm[k] - bm[j] * am[k])
        del am, bm
        t += sl.start
        o = orientation.index_select(0, t)
        inside = torch.ones(n, dtype=torch.bool, device=device)
        for i in range(3):
            ui = o * u[i]
            on_edge = ui == 0
            if bool(on_edge.any()):
                inside &= (ui > 0) | (on_edge & owns[i].index_select(0, t))
            else:
                inside &= ui > 0
        del o, ui, on_edge
        # Depth of the covered pairs only.
        sel = torch.nonzero(inside).squeeze(1)
        del inside
        if sel.numel() == 0:
            continue
        t, lc, lr = t.index_select(0, sel), lc.index_select(0, sel), lr.index_select(0, sel)
        u = [ui.index_select(0, sel) for ui in u]
        wt = _gather(ws, t)
        zt = _gather(zs, t)
        nw = (u[0] * wt[0] + u[1] * wt[1]) + u[2] * wt[2]
        nz = (u[0] * zt[0] + u[1] * zt[1]) + u[2] * zt[2]
        z = nz / nw
        keep = torch.nonzero((nw != 0) & (z >= -1) & (z <= 1)).squeeze(1)
        del u, wt, zt, nw, nz
        if keep.numel() == 0:
            continue
        t = t.index_select(0, keep)
        col = bx0.index_select(0, t) + lc.index_select(0, keep)
        row = by0.index_select(0, t) + lr.index_select(0, keep)
        pix = pix_base.index_select(0, t) + row * width + col
        packed = (_order_key(z.index_select(0, keep)) << 32) | tri_id.index_select(0, t)
        frags.scatter_reduce_(0, pix, packed, reduce="amin", include_self=True)

    winner = frags & 0xFFFFFFFF
    return torch.where(frags == empty, torch.full_like(frags, -1), winner)


def rasterize(pos: torch.Tensor, tri: torch.Tensor, resolution: Sequence[int]) -> torch.Tensor:
    """Rasterize clip-space triangles.

    Args:
        pos: [B, V, 4] float32/float64 clip-space vertices (x, y, z, w).
        tri: [F, 3] int32/int64 vertex indices.
        resolution: (H, W).

    Returns:
        rast: [B, H, W, 4] in pos.dtype, (b0, b1, z_ndc, tri_id + 1) per pixel, zeros for
        background. b0, b1 and z are differentiable with respect to pos (coverage fixed).
    """
    _check_float("pos", pos)
    if pos.dim() != 3 or pos.shape[2] != 4:
        raise ValueError(
            f"pos must have shape [B,V,4] (clip-space x, y, z, w), got {list(pos.shape)}"
        )
    _check_tri(tri, pos.shape[1], pos.device, "pos")
    height, width = _check_resolution(resolution)
    batch, num_vertices = pos.shape[0], pos.shape[1]
    num_tri = tri.shape[0]
    if pos.dtype == torch.float32 and num_tri >= _FLOAT32_MAX_ID:
        raise ValueError(
            f"float32 rast cannot represent triangle ids above {_FLOAT32_MAX_ID - 1}; "
            f"tri has {num_tri} triangles (use float64)"
        )

    with torch.no_grad():
        winner = _depth_test(pos.detach(), tri, height, width)

    hw = height * width
    rast = pos.new_zeros(batch * hw, 4)
    pix = torch.nonzero(winner >= 0).squeeze(1)
    if pix.numel() == 0:
        return rast.reshape(batch, height, width, 4)

    # Differentiable recomputation of (b0, b1, z) for the winning triangles, in float64
    # whatever the input dtype (like resolve_fragment in raster_math.h): one evaluation per
    # pixel, exact to the output precision.
    f = winner[pix]
    b = pix // hw
    vidx = b[:, None] * num_vertices + tri.long()[f]  # [N, 3]
    v = pos.reshape(batch * num_vertices, 4)[vidx].to(torch.float64)  # [N, 3, 4]
    px = _pixel_centers(width, torch.float64, pos.device)[pix % width]
    py = _pixel_centers(height, torch.float64, pos.device)[(pix % hw) // width]
    x, y, w = v[..., 0].unbind(1), v[..., 1].unbind(1), v[..., 3].unbind(1)
    u0, u1, u2 = _edge_functions(x, y, w, px, py)
    total = (u0 + u1) + u2
    nw = (u0 * v[:, 0, 3] + u1 * v[:, 1, 3]) + u2 * v[:, 2, 3]
    nz = (u0 * v[:, 0, 2] + u1 * v[:, 1, 2]) + u2 * v[:, 2, 2]
    values = torch.stack((u0 / total, u1 / total, nz / nw), dim=1).to(pos.dtype)
    ids = (f + 1).to(pos.dtype)[:, None]
    rast = rast.index_copy(0, pix, torch.cat((values, ids), dim=1))
    return rast.reshape(batch, height, width, 4)


# ---------------------------------------------------------------------------------------
# Attribute interpolation
# ---------------------------------------------------------------------------------------


def interpolate(attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """Interpolate vertex attributes with the barycentrics of a rasterized image.

    Args:
        attr: [B, V, C] per-batch attributes, or [V, C] shared across the batch.
        rast: [B, H, W, 4] output of rasterize() (same dtype as attr).
        tri: [F, 3] int32/int64 indices into attr; may differ from the index buffer used to
            rasterize (e.g. UV faces) but must have the same F.

    Returns:
        out: [B, H, W, C] = b0 * A[t0] + b1 * A[t1] + (1 - b0 - b1) * A[t2] on covered
        pixels, zeros on background. Differentiable with respect to attr and rast[..., :2].
    """
    _check_float("attr", attr)
    _check_float("rast", rast)
    if attr.dim() not in (2, 3):
        raise ValueError(f"attr must have shape [B,V,C] or [V,C], got {list(attr.shape)}")
    if rast.dim() != 4 or rast.shape[3] != 4:
        raise ValueError(f"rast must have shape [B,H,W,4], got {list(rast.shape)}")
    if attr.dtype != rast.dtype:
        raise ValueError(f"attr is {attr.dtype} but rast is {rast.dtype}")
    if attr.device != rast.device:
        raise ValueError(f"attr is on {attr.device} but rast is on {rast.device}")
    batch, height, width = rast.shape[:3]
    if attr.dim() == 3 and attr.shape[0] != batch:
        raise ValueError(
            f"attr has batch size {attr.shape[0]} but rast has {batch}; pass [V,C] to share "
            "attributes"
        )
    num_vertices, channels = attr.shape[-2], attr.shape[-1]
    _check_tri(tri, num_vertices, attr.device, "attr")
    num_tri = tri.shape[0]

    ids = rast[..., 3].detach().reshape(-1)
    if ids.numel() > 0:
        bad = (ids != ids.round()) | (ids < 0) | (ids > num_tri)
        if bool(bad.any()):
            value = float(ids[bad][0])
            raise ValueError(
                f"rast references triangle id {value:g} (stored id + 1) but tri has "
                f"{num_tri} triangles"
            )
    f = ids.to(torch.int64) - 1

    hw = height * width
    out = attr.new_zeros(batch * hw, channels)
    pix = torch.nonzero(f >= 0).squeeze(1)
    if pix.numel() == 0:
        return out.reshape(batch, height, width, channels)
    vidx = tri.long()[f[pix]]  # [N, 3]
    if attr.dim() == 3:
        vidx = vidx + (pix // hw)[:, None] * num_vertices
    a = attr.reshape(-1, channels)[vidx]  # [N, 3, C]
    r = rast.reshape(batch * hw, 4)[pix]
    b0 = r[:, 0:1]
    b1 = r[:, 1:2]
    b2 = (1 - b0) - b1
    values = (b0 * a[:, 0] + b1 * a[:, 1]) + b2 * a[:, 2]
    out = out.index_copy(0, pix, values)
    return out.reshape(batch, height, width, channels)


# ---------------------------------------------------------------------------------------
# Spherical-harmonics shading
# ---------------------------------------------------------------------------------------


def sh_shade(
    albedo: torch.Tensor,
    normals: torch.Tensor,
    sh: torch.Tensor,
    return_shading: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Second-order spherical-harmonics (irradiance) shading.

    shading_c = sum_k sh[b, k, c] * a_k * Y_k(n) with
    Y = [1, x, y, z, xy, xz, yz, x^2 - y^2, 3 z^2 - 1] and a = SH_CONSTANTS; the normals
    are used as given (not normalized).

    Args:
        albedo: [B, H, W, 3].
        normals: [B, H, W, 3].
        sh: [B, 9, 3] (one set per colour channel), [B, 9, 1] (shared by the channels) or
            [B, 27] (DECA's flat layout, read as [B, 9, 3]).
        return_shading: also return the shading.

    Returns:
        image [B, H, W, 3] = albedo * shading, or (image, shading [B, H, W, 3]).
    """
    _check_float("albedo", albedo)
    _check_float("normals", normals)
    _check_float("sh", sh)
    if sh.dim() == 2 and sh.shape[1] == 27:
        sh = sh.reshape(sh.shape[0], 9, 3)
    if albedo.dim() != 4 or albedo.shape[3] != 3:
        raise ValueError(f"albedo must have shape [B,H,W,3], got {list(albedo.shape)}")
    if normals.shape != albedo.shape:
        raise ValueError(
            f"normals must have the shape of albedo {list(albedo.shape)}, got {list(normals.shape)}"
        )
    batch = albedo.shape[0]
    if sh.dim() != 3 or sh.shape[0] != batch or sh.shape[1] != 9 or sh.shape[2] not in (1, 3):
        raise ValueError(
            f"sh must have shape [B,9,3] or [B,9,1] with B = {batch}, got {list(sh.shape)}"
        )
    for name, t in (("normals", normals), ("sh", sh)):
        if t.dtype != albedo.dtype:
            raise ValueError(f"{name} is {t.dtype} but albedo is {albedo.dtype}")
        if t.device != albedo.device:
            raise ValueError(f"{name} is on {t.device} but albedo is on {albedo.device}")

    a = [torch.tensor(k, dtype=albedo.dtype, device=albedo.device) for k in SH_CONSTANTS]
    x, y, z = normals.unbind(dim=-1)
    basis = [
        a[0].expand_as(x),
        a[1] * x,
        a[2] * y,
        a[3] * z,
        a[4] * (x * y),
        a[5] * (x * z),
        a[6] * (y * z),
        a[7] * (x * x - y * y),
        a[8] * (3 * (z * z) - 1),
    ]
    coef = sh[:, :, None, None, :]  # [B, 9, 1, 1, C']
    shading = coef[:, 0] * basis[0][..., None]
    for k in range(1, 9):
        shading = shading + coef[:, k] * basis[k][..., None]
    shading = shading.expand(albedo.shape).contiguous()
    image = albedo * shading
    if return_shading:
        return image, shading
    return image
