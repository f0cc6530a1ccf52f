"""Photo -> UV albedo: lift a fitted photo into texture space, lighting divided out.

For every texel of a T x T map we find the 3D point it stands for on the posed mesh, look
where that point lands in the photo, and read ``albedo = photo / shading`` there. This runs
"texel first" (rasterize the UV layout, interpolate the posed positions) rather than
"pixel first" (splat every pixel into UV), so every texel gets exactly one value and no
holes appear where the photo is sampled more coarsely than the texture.

A texel's value is only trusted (``visible``) when all of these hold:

* the render shows the texel's own surface at that pixel: the render's face id there is the
  texel's face, or (robust variant, needed because a pixel usually covers several small
  triangles, so an exact id match alone would drop most good texels) the surface point the
  render shows at one of the four pixel centres around the projection is within a pixel
  footprint of the texel's point; occluded texels (the cheek behind the nose, the back of
  the head) are centimetres away from the occluder and fail both tests;
* it faces the camera: interpolated normal . view direction >= ``min_cos`` (grazing texels
  are smeared over many texels and their shading is least reliable);
* the skin mask is on at that pixel (hair, glasses, hands are not albedo);
* the projection lies inside the render and on the rendered head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from flamekit.render.geometry import vertex_normals

__all__ = ["texel_faces", "unwrap"]


def _ops(backend):
    if backend is None:
        from flamekit.render import ops

        return ops.rasterize, ops.interpolate
    return backend.rasterize, backend.interpolate


def texel_faces(uvs: torch.Tensor, uv_faces: torch.Tensor, size: int, backend=None) -> torch.Tensor:
    """[1,T,T,4] rasterization of the UV layout (row 0 = v = 1; id + 1 in channel 3)."""
    rasterize, _ = _ops(backend)
    uvs = uvs.to(torch.float32)
    pos = torch.stack(
        [
            uvs[:, 0] * 2 - 1,
            1 - uvs[:, 1] * 2,
            torch.zeros_like(uvs[:, 0]),
            torch.ones_like(uvs[:, 0]),
        ],
        -1,
    )[None].contiguous()
    return rasterize(pos, uv_faces.to(torch.int32), (size, size))


def _gather(maps: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """maps [B,H,W,C] at integer pixels x, y [B,N] (clamped) -> [B,N,C]."""
    b, h, w, c = maps.shape
    index = (y.clamp(0, h - 1) * w + x.clamp(0, w - 1)).long()
    return torch.gather(maps.reshape(b, h * w, c), 1, index[..., None].expand(-1, -1, c))


def _view_directions(camera, points: torch.Tensor) -> torch.Tensor:
    """[B,N,3] unit directions from the points to the viewer, in the renderer's view space."""
    to_camera = getattr(camera, "to_camera", None)
    if to_camera is None:  # orthographic: the viewer is along +z everywhere
        out = torch.zeros_like(points)
        out[..., 2] = 1
        return out
    c = to_camera(points)  # OpenCV camera space; view space is (x, -y, -z)
    return F.normalize(torch.stack([-c[..., 0], c[..., 1], c[..., 2]], -1), dim=-1)


@torch.no_grad()
def unwrap(
    image: torch.Tensor,
    vertices: torch.Tensor,
    camera,
    faces: torch.Tensor,
    uvs: torch.Tensor,
    uv_faces: torch.Tensor,
    shading: torch.Tensor,
    skin_mask: torch.Tensor,
    rast: torch.Tensor,
    size: int,
    min_cos: float = 0.2,
    min_shading: float = 0.05,
    backend=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lift fitted photos into UV albedo maps.

    Args:
        image: [B,3,R,R] photos at the render size, 0..1.
        vertices: [B,V,3] posed vertices of the fit.
        camera: the fit's camera (``to_clip``, ``view_normals``; see flamekit.render.camera).
        faces, uvs, uv_faces: the mesh and its UV layout.
        shading: [B,3,R,R] the fit's SH irradiance (``RenderOutput.shading``).
        skin_mask: [B,1,R,R] 1 on skin.
        rast: [B,R,R,4] the fit's rasterization (``RenderOutput.rast``).
        size: T.
        min_cos: smallest normal . view cosine kept.
        min_shading: shading is clamped to at least this before dividing.
        backend: a render backend (default: ``flamekit.render.ops``).

    Returns:
        (albedo [B,3,T,T] in 0..1, zero where not visible; visible [B,1,T,T] 0/1 float).
    """
    _, interpolate = _ops(backend)
    batch, _, r, _ = image.shape
    device = vertices.device
    vertices = vertices.to(torch.float32)
    faces = faces.to(device=device, dtype=torch.int32)
    uv_rast = texel_faces(uvs.to(device), uv_faces.to(device), size, backend)
    uv_rast = uv_rast.expand(batch, -1, -1, -1).contiguous()
    texel_face = uv_rast[..., 3].reshape(batch, -1).long() - 1  # [B,N], -1 off the atlas
    on_atlas = texel_face >= 0

    points = interpolate(vertices, uv_rast, faces).reshape(batch, -1, 3)
    normals = camera.view_normals(vertex_normals(vertices, faces.long()))
    normals = F.normalize(interpolate(normals.contiguous(), uv_rast, faces), dim=-1)
    facing = (normals.reshape(batch, -1, 3) * _view_directions(camera, points)).sum(-1)

    clip = camera.to_clip(points)
    w = clip[..., 3]
    ndc = clip[..., :2] / w.clamp_min(1e-8)[..., None]
    inside = (w > 0) & (ndc.abs() <= 1).all(-1)
    grid = ndc.reshape(batch, size, size, 2)

    def sample(maps: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
        return F.grid_sample(
            maps.to(torch.float32), grid, mode=mode, padding_mode="border", align_corners=False
        )

    photo = sample(image)
    light = sample(shading).clamp_min(min_shading)
    skin = sample(skin_mask).reshape(batch, -1) >= 0.5

    # Visibility: the render's own face at the nearest pixel, or its surface near the texel.
    render_face = rast[..., 3].long() - 1  # [B,R,R]
    pixel_points = interpolate(vertices, rast.contiguous(), faces)  # [B,R,R,3]
    pixel = (ndc + 1) * (r / 2) - 0.5  # centre of the top-left pixel at 0
    nearest = torch.round(pixel).long()
    shown = _gather(render_face[..., None], nearest[..., 0], nearest[..., 1])[..., 0]
    on_head = shown >= 0
    same_face = shown == texel_face
    footprint = _pixel_footprint(pixel_points, render_face)  # [B] model units per pixel
    tolerance = footprint[:, None] * (0.75 / facing.clamp_min(max(min_cos, 0.05)) + 0.5)
    x0, y0 = torch.floor(pixel[..., 0]).long(), torch.floor(pixel[..., 1]).long()
    near_surface = torch.zeros_like(on_atlas)
    for dx in (0, 1):
        for dy in (0, 1):
            covered = _gather(render_face[..., None], x0 + dx, y0 + dy)[..., 0] >= 0
            there = _gather(pixel_points, x0 + dx, y0 + dy)
            close = (there - points).norm(dim=-1) <= tolerance
            near_surface |= covered & close
    visible = on_atlas & inside & on_head & (same_face | near_surface) & (facing >= min_cos) & skin
    visible = visible.reshape(batch, 1, size, size).to(torch.float32)
    albedo = (photo / light).clamp(0, 1) * visible
    return albedo, visible


def _pixel_footprint(pixel_points: torch.Tensor, render_face: torch.Tensor) -> torch.Tensor:
    """[B] median 3D distance between horizontally adjacent covered pixels (the median
    ignores the few pairs that straddle a depth jump)."""
    both = (render_face[:, :, 1:] >= 0) & (render_face[:, :, :-1] >= 0)
    step = (pixel_points[:, :, 1:] - pixel_points[:, :, :-1]).norm(dim=-1)
    out = []
    for b in range(step.shape[0]):
        values = step[b][both[b]]
        out.append(values.median() if values.numel() else step.new_tensor(0.0))
    return torch.stack(out)
