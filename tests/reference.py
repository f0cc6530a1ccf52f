"""Brute-force float64 rasterizer used as an independent reference in tests.

It tests every pixel against every triangle with 2D ndc barycentrics (not the homogeneous
edge functions the kernels use) and records, per pixel, the nearest and the runner-up depth
and whether any triangle's coverage is ambiguous (a barycentric within eps of zero).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ReferenceRaster:
    tri_id: np.ndarray  # [B,H,W] int, -1 background
    bary: np.ndarray  # [B,H,W,2]
    depth: np.ndarray  # [B,H,W]
    runner_up: np.ndarray  # [B,H,W] depth of the second-nearest fragment (inf if none)
    ambiguous: np.ndarray  # [B,H,W] bool


def brute_force_rasterize(pos, tri, resolution, eps: float = 1e-6) -> ReferenceRaster:
    pos = np.asarray(pos, dtype=np.float64)
    tri = np.asarray(tri, dtype=np.int64)
    height, width = resolution
    batch = pos.shape[0]
    out = ReferenceRaster(
        tri_id=np.full((batch, height, width), -1, dtype=np.int64),
        bary=np.zeros((batch, height, width, 2)),
        depth=np.zeros((batch, height, width)),
        runner_up=np.full((batch, height, width), np.inf),
        ambiguous=np.zeros((batch, height, width), dtype=bool),
    )
    xs = (2 * np.arange(width) + 1) / width - 1
    for b in range(batch):
        v = pos[b][tri]  # [F,3,4]
        w = v[..., 3]
        valid = np.all(w > 0, axis=1) & np.all(np.isfinite(v).reshape(len(tri), -1), axis=1)
        w_safe = np.where(valid[:, None], w, 1.0)
        nx, ny = v[..., 0] / w_safe, v[..., 1] / w_safe  # [F,3]
        area = (nx[:, 1] - nx[:, 0]) * (ny[:, 2] - ny[:, 0]) - (nx[:, 2] - nx[:, 0]) * (
            ny[:, 1] - ny[:, 0]
        )
        valid &= area != 0
        area_safe = np.where(valid, area, 1.0)
        ids = np.arange(len(tri))
        for i in range(height):
            py = (2 * i + 1) / height - 1
            # 2D barycentrics lam [W,F,3]
            px = xs[:, None]
            l0 = ((nx[:, 1] - px) * (ny[:, 2] - py) - (nx[:, 2] - px) * (ny[:, 1] - py)) / area_safe
            l1 = ((nx[:, 2] - px) * (ny[:, 0] - py) - (nx[:, 0] - px) * (ny[:, 2] - py)) / area_safe
            l2 = 1 - l0 - l1
            lam = np.stack([l0, l1, l2], axis=-1)
            persp = lam / w_safe[None]
            bsum = persp.sum(-1)
            with np.errstate(divide="ignore", invalid="ignore"):
                bary = persp / bsum[..., None]
                z = (bary * v[None, :, :, 2]).sum(-1) / (bary * w[None]).sum(-1)
            min_lam = lam.min(-1)
            inside = valid[None] & (min_lam >= 0) & (z >= -1) & (z <= 1)
            near_edge = valid[None] & (np.abs(min_lam) < eps) & (z >= -1 - eps) & (z <= 1 + eps)
            zz = np.where(inside, z, np.inf)
            order = np.lexsort((np.broadcast_to(ids, zz.shape), zz), axis=-1)
            first, second = order[:, 0], order[:, 1] if len(tri) > 1 else order[:, 0]
            cols = np.arange(width)
            z_first = zz[cols, first]
            hit = np.isfinite(z_first)
            out.tri_id[b, i] = np.where(hit, first, -1)
            out.bary[b, i] = np.where(hit[:, None], bary[cols, first, :2], 0)
            out.depth[b, i] = np.where(hit, z_first, 0)
            out.runner_up[b, i] = zz[cols, second] if len(tri) > 1 else np.inf
            out.ambiguous[b, i] = near_edge.any(-1)
    return out
