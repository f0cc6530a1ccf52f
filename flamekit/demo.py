"""Render demo: a shaded, textured head from three viewpoints, with no model files needed.

Until fitting exists this is what ``flamekit render-demo`` shows on a fresh machine: it
exercises the model layer (the FLAME-format demo head posed by ``FlameModel``) and the whole
renderer (rasterize, UV interpolation across seams, texture lookup, normals, SH shading).
The demo head is procedural, not FLAME; ``--model`` renders a registered FLAME model.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from flamekit.io.image import save_image
from flamekit.model.flame import FlameModel
from flamekit.render import OrthographicCamera, Renderer

__all__ = ["DEFAULT_SH", "SKIN_TONE", "render_demo", "yaw_rotation"]

SKIN_TONE = torch.tensor([0.78, 0.6, 0.5])  # flat albedo for models without a texture

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


def _albedo_inputs(model: FlameModel, texture: torch.Tensor | None):
    """UVs and albedo map for the renderer; a flat skin tone when the model has no UVs."""
    if model.uvs is not None and texture is not None:
        return model.uvs, model.uv_faces, texture
    # No UV layout or texture registered: every corner samples one skin-coloured texel.
    uvs = torch.full((1, 2), 0.5)
    uv_faces = torch.zeros_like(model.faces)
    return uvs, uv_faces, SKIN_TONE.view(1, 3, 1, 1).clone()


def _head(model: str | None) -> tuple[FlameModel, torch.Tensor | None]:
    """The demo head (default) or a FLAME model by registry name or path, with its albedo."""
    if model is None:
        from flamekit.assets.demo_head import demo_head

        demo = demo_head()
        texture = torch.from_numpy(demo.texture).permute(2, 0, 1)[None]
        return FlameModel(demo.data, demo.landmarks), texture
    from flamekit.model.registry import load_head, resolve_file
    from flamekit.model.texture_space import load_texture_space

    head = load_head(model, allow_demo=False)
    texture = None
    space_files = resolve_file(None, "texture-space")
    if space_files is not None and head.uvs is not None:
        space = load_texture_space(space_files[0], num_components=0)
        texture = space.mean_map()
    return head, texture


def render_demo(
    out: str | Path,
    size: int = 512,
    yaws: tuple[float, ...] = (-35.0, 0.0, 35.0),
    backend: str = "flamekit",
    device: str = "cpu",
    model: str | None = None,
    jaw_open: float = 0.25,
) -> Path:
    """Render a head at ``size`` x ``size`` for each yaw and save the views side by side.

    The head is posed by :class:`FlameModel` (yaw as global pose; the last view opens the
    jaw by ``jaw_open`` radians), so the demo exercises the model layer and the renderer.
    ``model`` is None for the built-in demo head (not FLAME), or a registered name or path
    of a FLAME model (textured with the registered texture space's mean when there is one).
    Returns the written path.
    """
    head, texture = _head(model)
    dev = torch.device(device)
    batch = len(yaws)
    yaw = torch.tensor(yaws, dtype=torch.float32) * (math.pi / 180)
    global_pose = torch.stack([torch.zeros_like(yaw), yaw, torch.zeros_like(yaw)], dim=1)
    jaw = torch.zeros(batch, 3)
    jaw[-1, 0] = jaw_open
    with torch.no_grad():
        verts = head(global_pose=global_pose, jaw_pose=jaw).vertices
    lo, hi = verts.amin((0, 1)), verts.amax((0, 1))
    verts = verts - (lo + hi) / 2
    extent = float((hi - lo).max())
    camera = OrthographicCamera(
        scale=torch.full((batch,), 1.8 / extent, device=dev),
        translation=torch.zeros(batch, 2, device=dev),
    )
    uvs, uv_faces, albedo = _albedo_inputs(head, texture)
    renderer = Renderer(head.faces, uvs, uv_faces, (size, size), backend=backend).to(dev)
    background = torch.tensor([0.93, 0.94, 0.96], device=dev).view(1, 3, 1, 1)
    with torch.no_grad():
        result = renderer(
            verts.to(dev),
            albedo.to(dev).expand(batch, -1, -1, -1),
            DEFAULT_SH[None].expand(batch, -1, -1).to(dev),
            camera,
            background=background.expand(batch, 3, size, size),
        )
    panel = torch.cat(list(result.image), dim=2)  # [3,H,B*W]
    return save_image(panel, out)
