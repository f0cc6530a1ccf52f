"""Cameras: map posed vertices to the clip space the rasterizer consumes.

Image conventions: row 0 is the top of the image; pixel (row i, col j) covers
[j, j+1] x [i, i+1] in pixel coordinates, with its centre at (j + 0.5, i + 0.5).
View-space normals for shading use the OpenGL convention: x right, y up, z towards the viewer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["OrthographicCamera", "PerspectiveCamera", "clip_to_pixels"]


@dataclass
class OrthographicCamera:
    """Scaled orthographic camera of the original FLAME fitting code and DECA.

    ``x_ndc = s (x + tx)``, ``y_ndc = s (y + ty)`` with the model's y axis pointing up in the
    image, and the viewer on the +z side. Depth is ``z_ndc = -s z / depth_range`` so that
    nearer points (larger z) have smaller depth; geometry with ``|s z| > depth_range`` is
    clipped.

    Attributes:
        scale: [B] or [B,1].
        translation: [B,2] (tx, ty), in model units.
        depth_range: scaled depth that maps to the ndc depth range [-1, 1].
    """

    scale: torch.Tensor
    translation: torch.Tensor
    depth_range: float = 10.0

    def to_clip(self, vertices: torch.Tensor) -> torch.Tensor:
        """[B,V,3] model-space vertices -> [B,V,4] clip space (w = 1)."""
        s = self.scale.reshape(-1, 1)
        t = self.translation.reshape(-1, 1, 2)
        x = s * (vertices[..., 0] + t[..., 0])
        y = s * (vertices[..., 1] + t[..., 1])
        z = -s * vertices[..., 2] / self.depth_range
        return torch.stack([x, -y, z, torch.ones_like(x)], dim=-1)

    def view_normals(self, normals: torch.Tensor) -> torch.Tensor:
        """[B,V,3] model-space normals -> view space (the model frame already is)."""
        return normals


@dataclass
class PerspectiveCamera:
    """Pinhole camera with OpenCV intrinsics and extrinsics.

    A model point v maps to camera space ``c = R v + t`` (x right, y down, z forward) and to
    pixels ``u = fx c_x / c_z + cx``, ``v = fy c_y / c_z + cy``. Depth in [near, far] maps to
    ndc depth [-1, 1]; points behind the camera are not drawn.

    Attributes:
        focal: [B,2] (fx, fy) in pixels.
        principal_point: [B,2] (cx, cy) in pixels.
        rotation: [B,3,3].
        translation: [B,3].
        image_size: (H, W) the intrinsics refer to.
        near, far: clipping depths in model units.
    """

    focal: torch.Tensor
    principal_point: torch.Tensor
    rotation: torch.Tensor
    translation: torch.Tensor
    image_size: tuple[int, int]
    near: float = 0.01
    far: float = 100.0

    def to_camera(self, vertices: torch.Tensor) -> torch.Tensor:
        """[B,V,3] model space -> [B,V,3] OpenCV camera space."""
        return vertices @ self.rotation.transpose(1, 2) + self.translation[:, None, :]

    def to_clip(self, vertices: torch.Tensor) -> torch.Tensor:
        """[B,V,3] model-space vertices -> [B,V,4] clip space (w = camera depth)."""
        c = self.to_camera(vertices)
        h, w = self.image_size
        fx, fy = self.focal[:, 0:1], self.focal[:, 1:2]
        cx, cy = self.principal_point[:, 0:1], self.principal_point[:, 1:2]
        z = c[..., 2]
        x_clip = (2 * fx / w) * c[..., 0] + (2 * cx / w - 1) * z
        y_clip = (2 * fy / h) * c[..., 1] + (2 * cy / h - 1) * z
        n, f = self.near, self.far
        z_clip = (f + n) / (f - n) * z - 2 * f * n / (f - n)
        return torch.stack([x_clip, y_clip, z_clip, z], dim=-1)

    def view_normals(self, normals: torch.Tensor) -> torch.Tensor:
        """[B,V,3] model-space normals -> OpenGL view space (x right, y up, z to viewer)."""
        n = normals @ self.rotation.transpose(1, 2)
        return torch.stack([n[..., 0], -n[..., 1], -n[..., 2]], dim=-1)


def clip_to_pixels(clip: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """[B,V,4] clip space -> [B,V,2] pixel coordinates (x, y), pixel centres at +0.5."""
    h, w = image_size
    ndc = clip[..., :2] / clip[..., 3:4]
    return torch.stack([(ndc[..., 0] + 1) * (w / 2), (ndc[..., 1] + 1) * (h / 2)], dim=-1)
