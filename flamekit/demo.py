"""Render demo: a shaded, textured head from three viewpoints, with no model files needed.

Until fitting exists this is what ``flamekit render-demo`` shows on a fresh machine: it
exercises the whole renderer (rasterize, UV interpolation across seams, texture lookup,
normals, SH shading) on the procedural demo head (not FLAME).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from flamekit.assets.procedural_head import procedural_head
from flamekit.io.image import save_image
from flamekit.render import OrthographicCamera, Renderer

__all__ = ["DEFAULT_SH", "render_demo", "yaw_rotation"]

# Soft light from the upper front left, per colour channel ([9,3]), in the DECA layout.
DEFAULT_SH = torch.tensor(
    [
        [2.3, 2.25, 2.2],
        [-0.3, -0.3, -0.3],
        [0.3, 0.3, 0.3],
        [0.4, 0.39, 0.38],
        [0.0, 0.0, 0.0],
        [0.05, 0.05, 0.05],
        [0.05, 0.05, 0.05],
        [-0.1, -0.1, -0.1],
        [-0.12, -0.12, -0.12],
    ]
)


def yaw_rotation(degrees: torch.Tensor) -> torch.Tensor:
    """[B] yaw angles in degrees -> [B,3,3] rotations about the y axis."""
    a = degrees * (math.pi / 180)
    c, s, z, o = torch.cos(a), torch.sin(a), torch.zeros_like(a), torch.ones_like(a)
    return torch.stack([c, z, s, z, o, z, -s, z, c], dim=-1).reshape(-1, 3, 3)


def render_demo(
    out: str | Path,
    size: int = 512,
    yaws: tuple[float, ...] = (-35.0, 0.0, 35.0),
    backend: str = "flamekit",
    device: str = "cpu",
) -> Path:
    """Render the demo head at ``size`` x ``size`` for each yaw and save them side by side.

    Returns the written path.
    """
    head = procedural_head()
    dev = torch.device(device)
    batch = len(yaws)
    rot = yaw_rotation(torch.tensor(yaws, dtype=torch.float32))
    centre = (head.vertices.amax(0) + head.vertices.amin(0)) / 2
    verts = (head.vertices - centre) @ rot.transpose(1, 2)
    extent = float((head.vertices.amax(0) - head.vertices.amin(0)).max())
    camera = OrthographicCamera(
        scale=torch.full((batch,), 1.8 / extent, device=dev),
        translation=torch.zeros(batch, 2, device=dev),
    )
    renderer = Renderer(head.faces, head.uvs, head.uv_faces, (size, size), backend=backend).to(dev)
    background = torch.tensor([0.93, 0.94, 0.96], device=dev).view(1, 3, 1, 1)
    with torch.no_grad():
        result = renderer(
            verts.to(dev),
            head.texture[None].to(dev),
            DEFAULT_SH[None].expand(batch, -1, -1).to(dev),
            camera,
            background=background.expand(batch, 3, size, size),
        )
    panel = torch.cat(list(result.image), dim=2)  # [3,H,B*W]
    return save_image(panel, out)
