"""Random and structured test scenes in clip space."""

from __future__ import annotations

import math

import torch


def random_scene(seed: int, batch: int = 2, triangles: int = 60, dtype=torch.float32):
    """Random triangles with perspective w, partly off-screen, some discarded by depth, plus
    one triangle behind the camera, degenerate ones, tiny ones and one larger than the image.

    Returns (pos [B,V,4], tri [F,3] int32).
    """
    g = torch.Generator().manual_seed(seed)
    n = triangles * 3
    ndc = torch.rand(batch, n, 3, generator=g, dtype=torch.float64) * 3.0 - 1.5
    ndc[..., 2] = torch.rand(batch, n, generator=g, dtype=torch.float64) * 2.4 - 1.2
    # Tiny triangles: shrink a few towards their first vertex.
    for t in range(0, 6):
        base = ndc[:, 3 * t : 3 * t + 1, :2]
        ndc[:, 3 * t : 3 * t + 3, :2] = base + 0.02 * (ndc[:, 3 * t : 3 * t + 3, :2] - base)
    # One triangle larger than the image.
    ndc[:, 18:21, :2] = torch.tensor([[-6.0, -5.0], [7.0, -4.0], [0.5, 6.5]], dtype=torch.float64)
    ndc[:, 18:21, 2] = torch.tensor([0.9, 0.95, 0.85], dtype=torch.float64)
    # Degenerate: two coincident vertices, and three collinear ones.
    ndc[:, 22] = ndc[:, 21]
    ndc[:, 26] = 0.5 * (ndc[:, 24] + ndc[:, 25])
    w = torch.rand(batch, n, generator=g, dtype=torch.float64) * 1.5 + 0.5
    pos = torch.cat([ndc * w[..., None], w[..., None]], dim=-1)
    # Behind the camera: one vertex with negative w.
    pos[:, 27, 3] = -0.7
    tri = torch.arange(n, dtype=torch.int32).reshape(triangles, 3)
    return pos.to(dtype), tri


def grid_mesh(cells: int, size: int, w: float = 1.0, seed: int = 0):
    """A (cells x cells) grid of quads whose vertices sit on pixel centres of a size x size
    image, split along random diagonals with random winding. Returns (pos [1,V,4], tri)."""
    g = torch.Generator().manual_seed(seed)
    step = size // cells
    coords = torch.arange(cells + 1) * step + (size - cells * step) // 2
    centre = (2 * coords.double() + 1) / size - 1
    ys, xs = torch.meshgrid(centre, centre, indexing="ij")
    pos = torch.stack([xs, ys, torch.zeros_like(xs), torch.ones_like(xs)], -1).reshape(-1, 4)
    pos = pos * w
    faces = []
    for r in range(cells):
        for c in range(cells):
            a, b = r * (cells + 1) + c, r * (cells + 1) + c + 1
            d, e = a + cells + 1, b + cells + 1
            quad = (
                [[a, b, e], [a, e, d]]
                if torch.rand(1, generator=g) < 0.5
                else [[a, b, d], [b, e, d]]
            )
            for f in quad:
                faces.append(f if torch.rand(1, generator=g) < 0.5 else f[::-1])
    return pos[None].float(), torch.tensor(faces, dtype=torch.int32)


def rotation(yaw: float, pitch: float, roll: float) -> torch.Tensor:
    """[3,3] rotation from Euler angles in degrees (yaw about y, pitch about x, roll about z)."""
    y, p, r = (math.radians(a) for a in (yaw, pitch, roll))
    ry = torch.tensor([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = torch.tensor([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rz = torch.tensor([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry
