"""Differentiable rendering primitives backed by the compiled extension ``flamekit._C``
(whose autograd Functions are written in C++, to keep per-op overhead low).

Conventions are those of nvdiffrast, so adapters and comparisons are trivial:

* ``pos`` is clip space ``(x, y, z, w)``; ndc = xyz / w (w = 1 for orthographic cameras).
* Pixel (row i, col j) has its centre at ``x = (2j+1)/W - 1``, ``y = (2i+1)/H - 1``.
* ``rast[..., 0:2]`` are the perspective-correct barycentrics of the triangle's vertices 0 and
  1, ``rast[..., 2]`` the ndc depth (smaller is nearer), ``rast[..., 3]`` the triangle id + 1
  (0 = background).
* Triangles with a vertex at ``w <= 0`` are skipped; no back-face culling; fragments with
  depth outside [-1, 1] are discarded; ties in depth go to the lower triangle id; a pixel
  centre on an edge shared by two triangles is covered exactly once (top-left rule).

Gradients flow for fixed coverage: ``rasterize`` differentiates (b0, b1, z) with respect to
the clip coordinates of the covering triangle's vertices (there is no antialiasing, so
silhouettes do not move under gradients).
"""

from __future__ import annotations

import torch

from flamekit._extension import load_extension

__all__ = ["rasterize", "interpolate", "sh_shade"]


def _as_int32(tri: torch.Tensor) -> torch.Tensor:
    if tri.dtype != torch.int32:
        tri = tri.to(torch.int32)
    return tri.contiguous()


def rasterize(pos: torch.Tensor, tri: torch.Tensor, resolution: tuple[int, int]) -> torch.Tensor:
    """Rasterize triangles into per-pixel (b0, b1, z, tri_id + 1).

    Args:
        pos: clip-space vertices [B,V,4] (float32, or float64 on the CPU for gradient checks).
        tri: triangle vertex indices [F,3] (int32; other integer dtypes are converted).
        resolution: output size (H, W).

    Returns:
        rast [B,H,W,4]; differentiable with respect to ``pos`` through channels 0-2.
    """
    if pos.dim() == 2:
        pos = pos.unsqueeze(0)
    height, width = (int(r) for r in resolution)
    return load_extension().rasterize(pos.contiguous(), _as_int32(tri), height, width)


def interpolate(attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """Interpolate per-vertex attributes at every covered pixel.

    Args:
        attr: [B,V,C], or [V,C] shared by the whole batch.
        rast: the output of :func:`rasterize`, [B,H,W,4].
        tri: [F,3] indices into ``attr``; may differ from the index buffer that was
            rasterized (e.g. UV faces with seams) but must have the same F. On the CPU, a
            ``rast`` id that ``tri`` does not have raises an error; CUDA treats such pixels
            as background (reporting them would need a device synchronization).

    Returns:
        [B,H,W,C]; zeros on background pixels. Differentiable with respect to ``attr`` and to
        the barycentrics in ``rast``.
    """
    return load_extension().interpolate(attr.contiguous(), rast.contiguous(), _as_int32(tri))


def sh_shade(
    albedo: torch.Tensor,
    normals: torch.Tensor,
    sh: torch.Tensor,
    return_shading: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Second-order spherical-harmonics shading, fused in one kernel.

    ``shading_c = sum_k sh[b,k,c] * a_k * Y_k(n)`` with
    ``Y = [1, x, y, z, xy, xz, yz, x^2 - y^2, 3z^2 - 1]`` and the irradiance constants
    ``a = [1/sqrt(4pi), (2pi/3) sqrt(3/(4pi)) x3, (pi/4) 3 sqrt(5/(12pi)) x3,
    (pi/4)(3/2) sqrt(5/(12pi)), (pi/4)(1/2) sqrt(5/(4pi))]`` (Ramamoorthi and Hanrahan),
    exactly as in DECA and the FLAME photometric fitting code, so their lighting
    coefficients can be used unchanged. ``image = albedo * shading``.

    Args:
        albedo: [B,H,W,3].
        normals: [B,H,W,3], used as given (normalize them first).
        sh: [B,9,3] (one set per colour channel), [B,9,1] (shared across channels) or
            [B,27] (DECA's flat layout, read as [B,9,3]).
        return_shading: also return the shading image.

    Returns:
        image [B,H,W,3], or (image, shading) when ``return_shading``.
    """
    if sh.dim() == 2 and sh.shape[1] == 27:
        sh = sh.reshape(sh.shape[0], 9, 3)
    image, shading = load_extension().sh_shade(
        albedo.contiguous(), normals.contiguous(), sh.contiguous()
    )
    return (image, shading) if return_shading else image
