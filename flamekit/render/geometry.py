"""Mesh geometry helpers used by the renderer."""

from __future__ import annotations

import torch

__all__ = ["vertex_normals"]


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals.

    Args:
        vertices: [B,V,3].
        faces: [F,3] (counter-clockwise seen from outside gives outward normals).

    Returns:
        [B,V,3]; zero vectors stay zero for unreferenced vertices.
    """
    faces = faces.long()
    v0, v1, v2 = (vertices[:, faces[:, k]] for k in range(3))
    face_normals = torch.cross(v1 - v0, v2 - v0, dim=-1)  # length = 2 * area
    normals = torch.zeros_like(vertices)
    for k in range(3):
        normals = normals.index_add(1, faces[:, k], face_normals)
    return torch.nn.functional.normalize(normals, dim=-1, eps=1e-12)
