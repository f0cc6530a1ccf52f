"""What a photometric fit optimizes, per image of the batch, grouped as the config names them.

Groups: ``identity``, ``expression``, ``global_pose``, ``neck_pose``, ``jaw_pose``, ``eye_pose``,
``camera``, ``texture``, ``lighting``, ``texture_offset``. Every tensor is batch-first and each
image's values only ever meet that image's loss, so a batch fit equals per-image fits.
"""

from __future__ import annotations

import math

import torch

from flamekit.fitting.config import PARAMETER_GROUPS
from flamekit.render import OrthographicCamera, PerspectiveCamera

__all__ = ["GROUPS", "FitParameters"]

GROUPS = PARAMETER_GROUPS

# OpenCV camera looking at the model's face: model +z (towards the viewer) is camera -z.
_FACING = torch.tensor([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])


class FitParameters(torch.nn.Module):
    """The optimized values of a batch of B images.

    Args:
        batch: B.
        num_identity, num_expression, num_texture: coefficient counts.
        camera_type: "orthographic" (scale, tx, ty as the original code) or "perspective"
            (focal length, translation; the head rotation is the global pose).
        render_size: R, the square render the camera projects to.
        init_scale: orthographic ndc units per metre at the start.
        focal_length: perspective focal length in units of R/2.
        init_distance: perspective camera distance at the start (metres).
        lighting_channels: 3 (per colour channel) or 1 (shared).
        init_ambient: the lighting's DC coefficient at the start.
        offset_resolution: T of the [B,3,T,T] texture offset map (0: no offset).
    """

    def __init__(
        self,
        batch: int,
        num_identity: int,
        num_expression: int,
        num_texture: int,
        camera_type: str,
        render_size: int,
        init_scale: float = 5.0,
        focal_length: float = 5.0,
        init_distance: float = 1.0,
        lighting_channels: int = 3,
        init_ambient: float = 3.0,
        offset_resolution: int = 128,
    ) -> None:
        super().__init__()
        if camera_type not in ("orthographic", "perspective"):
            raise ValueError(
                f"camera type must be orthographic or perspective, not {camera_type!r}"
            )
        self.camera_type = camera_type
        self.render_size = int(render_size)

        def zeros(*shape: int) -> torch.nn.Parameter:
            return torch.nn.Parameter(torch.zeros(batch, *shape))

        self.identity = zeros(num_identity)
        self.expression = zeros(num_expression)
        self.global_pose = zeros(3)
        self.neck_pose = zeros(3)
        self.jaw_pose = zeros(3)
        self.eye_pose = zeros(6)
        self.texture = zeros(num_texture)
        lighting = torch.zeros(batch, 9, lighting_channels)
        lighting[:, 0] = init_ambient
        self.lighting = torch.nn.Parameter(lighting)
        self.texture_offset = (
            zeros(3, offset_resolution, offset_resolution) if offset_resolution else None
        )
        if camera_type == "orthographic":
            self.cam_scale = torch.nn.Parameter(torch.full((batch, 1), float(init_scale)))
            self.cam_translation = zeros(2)
        else:
            self.cam_focal = torch.nn.Parameter(torch.full((batch, 1), float(focal_length)))
            translation = torch.zeros(batch, 3)
            translation[:, 2] = init_distance
            self.cam_translation = torch.nn.Parameter(translation)

    def group(self, name: str) -> list[torch.nn.Parameter]:
        """The tensors of one parameter group (see the module docstring)."""
        if name == "camera":
            if self.camera_type == "orthographic":
                return [self.cam_scale, self.cam_translation]
            return [self.cam_translation]
        if name == "focal":
            return [] if self.camera_type == "orthographic" else [self.cam_focal]
        if name == "texture_offset":
            return [] if self.texture_offset is None else [self.texture_offset]
        if name not in GROUPS:
            raise ValueError(f"unknown parameter group {name!r}; groups: {', '.join(GROUPS)}")
        value = getattr(self, name)
        return [value] if value.numel() else []

    def pose(self) -> torch.Tensor:
        """[B,15]: global, neck, jaw, eyes."""
        return torch.cat([self.global_pose, self.neck_pose, self.jaw_pose, self.eye_pose], 1)

    def camera(self):
        """The camera of the current values (differentiable)."""
        if self.camera_type == "orthographic":
            return OrthographicCamera(scale=self.cam_scale, translation=self.cam_translation)
        batch = self.cam_translation.shape[0]
        r = self.render_size
        focal = self.cam_focal * (r / 2)
        return PerspectiveCamera(
            focal=focal.expand(batch, 2),
            principal_point=torch.full((batch, 2), r / 2, device=focal.device, dtype=focal.dtype),
            rotation=_FACING.to(focal).expand(batch, 3, 3),
            translation=self.cam_translation,
            image_size=(r, r),
        )

    @torch.no_grad()
    def initialize_rotation(self, model_points: torch.Tensor, target: torch.Tensor) -> None:
        """Closed-form head rotation from an affine camera fit (a weak-perspective start).

        Solves the 2x3 affine map from the model's landmarks ([B,N,3], rest pose, model
        space) to the targets ([B,N,2], render pixels) by least squares, keeps its nearest
        scaled rotation (SVD), and sets ``global_pose``. Adam alone turns a head slowly out
        of a frontal start, because rotation and translation fight at first.
        """
        r = self.render_size
        ndc = torch.stack(
            [(target[..., 0] + 0.5) * 2 / r - 1, 1 - (target[..., 1] + 0.5) * 2 / r], -1
        ).double()
        x = model_points.double()
        x = x - x.mean(1, keepdim=True)
        y = ndc - ndc.mean(1, keepdim=True)
        gram = x.transpose(1, 2) @ x + 1e-9 * torch.eye(3, dtype=x.dtype, device=x.device)
        affine = (y.transpose(1, 2) @ x) @ torch.linalg.inv(gram)  # [B,2,3]
        u, _, vt = torch.linalg.svd(affine, full_matrices=False)
        rows = u @ vt  # [B,2,3], orthonormal rows
        third = torch.cross(rows[:, 0], rows[:, 1], dim=-1)
        rotation = torch.cat([rows, third[:, None]], 1)
        self.global_pose.copy_(matrix_to_axis_angle(rotation).to(self.global_pose))

    @torch.no_grad()
    def initialize_camera(self, model_points: torch.Tensor, target: torch.Tensor) -> None:
        """Closed-form start: match the centroid and spread of the model's landmarks
        ([B,N,3], model space) to the targets ([B,N,2], render pixels)."""
        r = self.render_size
        # Render pixels (centre of top-left pixel at 0) -> ndc (x right, y up).
        ndc = torch.stack(
            [(target[..., 0] + 0.5) * 2 / r - 1, 1 - (target[..., 1] + 0.5) * 2 / r], -1
        )
        xy = model_points[..., :2]
        spread_model = (xy - xy.mean(1, keepdim=True)).norm(dim=-1).mean(1).clamp_min(1e-6)
        spread_target = (ndc - ndc.mean(1, keepdim=True)).norm(dim=-1).mean(1).clamp_min(1e-6)
        scale = spread_target / spread_model  # ndc per metre
        if self.camera_type == "orthographic":
            self.cam_scale.copy_(scale[:, None])
            self.cam_translation.copy_(ndc.mean(1) / scale[:, None] - xy.mean(1))
        else:
            focal = self.cam_focal[:, 0]
            depth = focal / scale  # ndc = focal * x / depth
            centre = model_points.mean(1)
            # camera x = model x + tx; camera y = -model y + ty; camera z = -model z + tz
            tz = depth + centre[:, 2]
            tx = ndc.mean(1)[:, 0] * depth / focal - centre[:, 0]
            ty = -ndc.mean(1)[:, 1] * depth / focal + centre[:, 1]
            self.cam_translation.copy_(torch.stack([tx, ty, tz], 1))

    def as_numpy(self) -> dict:
        """Every value as numpy arrays (for params.npz), camera included."""
        out = {
            name: getattr(self, name).detach().cpu().numpy()
            for name in GROUPS
            if name not in ("camera", "texture_offset")
        }
        if self.texture_offset is not None:
            out["texture_offset"] = self.texture_offset.detach().cpu().numpy()
        if self.camera_type == "orthographic":
            out["camera_scale"] = self.cam_scale.detach().cpu().numpy()
            out["camera_translation"] = self.cam_translation.detach().cpu().numpy()
        else:
            out["camera_focal"] = (self.cam_focal * self.render_size / 2).detach().cpu().numpy()
            out["camera_translation"] = self.cam_translation.detach().cpu().numpy()
        return out


def rotation_angle_degrees(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle between two batches of axis-angle rotations [B,3] -> [B] degrees."""
    from flamekit.model.lbs import axis_angle_to_matrix

    rel = axis_angle_to_matrix(a).transpose(1, 2) @ axis_angle_to_matrix(b)
    cos = ((rel.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)
    return torch.acos(cos) * (180 / math.pi)


def matrix_to_axis_angle(rotation: torch.Tensor) -> torch.Tensor:
    """[B,3,3] rotations -> [B,3] axis-angle (radians), stable near 0 and near pi."""
    trace = rotation.diagonal(dim1=1, dim2=2).sum(-1)
    cos = ((trace - 1) / 2).clamp(-1, 1)
    angle = torch.acos(cos)
    skew = torch.stack(
        [
            rotation[:, 2, 1] - rotation[:, 1, 2],
            rotation[:, 0, 2] - rotation[:, 2, 0],
            rotation[:, 1, 0] - rotation[:, 0, 1],
        ],
        -1,
    )
    sin = torch.sin(angle)
    small = sin.abs() < 1e-6
    axis = skew / (2 * torch.where(small, torch.ones_like(sin), sin))[:, None]
    result = axis * angle[:, None]
    # Near 0 the skew part is the rotation vector itself; near pi read the axis off R + I.
    near_zero = small & (cos > 0)
    result = torch.where(near_zero[:, None], skew / 2, result)
    near_pi = small & (cos < 0)
    if near_pi.any():
        sym = (rotation[near_pi] + torch.eye(3, dtype=rotation.dtype, device=rotation.device)) / 2
        column = sym.diagonal(dim1=1, dim2=2).argmax(-1)
        axis_pi = sym[torch.arange(sym.shape[0]), :, column]
        axis_pi = axis_pi / axis_pi.norm(dim=-1, keepdim=True)
        result[near_pi] = axis_pi * torch.pi
    return result
