"""The renderer: textured, SH-lit meshes to images, on any registered backend."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from flamekit.render.backends import RasterBackend, get_backend
from flamekit.render.geometry import vertex_normals

__all__ = ["Renderer", "RenderOutput"]


@dataclass
class RenderOutput:
    """Everything one render produces, channel-first like torch images.

    Attributes:
        image: [B,3,H,W] shaded albedo over the background.
        mask: [B,1,H,W] 1 where the mesh covers the pixel.
        albedo: [B,3,H,W] texture colour (0 on background).
        normals: [B,3,H,W] unit view-space normals (OpenGL convention; 0 on background).
        shading: [B,3,H,W] SH irradiance (0 on background).
        depth: [B,1,H,W] ndc depth, smaller is nearer (0 on background).
        triangle_ids: [B,H,W] int64 face index, -1 on background.
        rast: [B,H,W,4] raw rasterizer output, for further interpolation.
    """

    image: torch.Tensor
    mask: torch.Tensor
    albedo: torch.Tensor
    normals: torch.Tensor
    shading: torch.Tensor
    depth: torch.Tensor
    triangle_ids: torch.Tensor
    rast: torch.Tensor

    def detach(self) -> RenderOutput:
        return RenderOutput(**{f.name: getattr(self, f.name).detach() for f in fields(self)})


def _channels_first(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


class Renderer(torch.nn.Module):
    """Renders a mesh with a UV albedo map under second-order SH lighting.

    Args:
        faces: [F,3] vertex indices (counter-clockwise seen from outside).
        uvs: [T,2] texture coordinates in [0,1], v up (OBJ convention).
        uv_faces: [F,3] indices into ``uvs`` (differs from ``faces`` along UV seams).
        image_size: (H, W) of the output.
        backend: a registered backend name (``"flamekit"``, ``"torch"``, ...) or instance.

    The albedo map is [B,3,Ht,Wt] with row 0 at the top of the texture image (v = 1),
    sampled bilinearly.
    """

    def __init__(
        self,
        faces: torch.Tensor,
        uvs: torch.Tensor,
        uv_faces: torch.Tensor,
        image_size: tuple[int, int] = (224, 224),
        backend: str | RasterBackend = "flamekit",
    ):
        super().__init__()
        if faces.shape != uv_faces.shape or faces.dim() != 2 or faces.shape[1] != 3:
            raise ValueError(
                f"faces {tuple(faces.shape)} and uv_faces {tuple(uv_faces.shape)} must both "
                "be [F,3] with the same F"
            )
        if uvs.dim() != 2 or uvs.shape[1] != 2:
            raise ValueError(f"uvs must be [T,2], got {tuple(uvs.shape)}")
        self.register_buffer("faces", faces.to(torch.int32).contiguous(), persistent=False)
        self.register_buffer("uv_faces", uv_faces.to(torch.int32).contiguous(), persistent=False)
        # grid_sample coordinates: x = 2u - 1, y = 1 - 2v (row 0 is v = 1).
        grid_uv = torch.stack([uvs[:, 0] * 2 - 1, 1 - uvs[:, 1] * 2], dim=-1)
        self.register_buffer("grid_uvs", grid_uv.float().contiguous(), persistent=False)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.backend = get_backend(backend)

    def forward(
        self,
        vertices: torch.Tensor,
        albedo_map: torch.Tensor,
        sh: torch.Tensor,
        camera,
        background: torch.Tensor | None = None,
    ) -> RenderOutput:
        """Render.

        Args:
            vertices: [B,V,3] posed vertices in model space.
            albedo_map: [B,3,Ht,Wt] (or [1,3,Ht,Wt], broadcast) RGB albedo in UV space.
            sh: [B,9,3] or [B,9,1] SH lighting coefficients (see ``ops.sh_shade``).
            camera: an object with ``to_clip([B,V,3]) -> [B,V,4]`` and
                ``view_normals([B,V,3]) -> [B,V,3]`` (see :mod:`flamekit.render.camera`).
            background: optional [B,3,H,W] image behind the mesh (default black).
        """
        backend = self.backend
        batch = vertices.shape[0]
        clip = camera.to_clip(vertices).contiguous()
        rast = backend.rasterize(clip, self.faces, self.image_size)
        mask = (rast[..., 3:4] > 0).to(vertices.dtype)

        grid = backend.interpolate(self.grid_uvs.to(vertices.dtype), rast, self.uv_faces)
        if albedo_map.shape[0] != batch:
            albedo_map = albedo_map.expand(batch, -1, -1, -1)
        albedo = F.grid_sample(
            albedo_map.to(vertices.dtype),
            grid,
            mode="bilinear",
            padding_mode="border",
            align_corners=False,
        )
        albedo = albedo.permute(0, 2, 3, 1) * mask

        normals = camera.view_normals(vertex_normals(vertices, self.faces))
        normals = backend.interpolate(normals.contiguous(), rast, self.faces)
        normals = F.normalize(normals, dim=-1, eps=1e-12)

        image, shading = backend.sh_shade(albedo, normals, sh.to(vertices.dtype), True)
        image = _channels_first(image)
        mask_cf = _channels_first(mask)
        if background is not None:
            image = image + background * (1 - mask_cf)
        return RenderOutput(
            image=image,
            mask=mask_cf,
            albedo=_channels_first(albedo),
            normals=_channels_first(normals),
            shading=_channels_first(shading * mask),
            depth=_channels_first(rast[..., 2:3]),
            triangle_ids=rast[..., 3].long() - 1,
            rast=rast,
        )
