"""Linear blend skinning with pose correctives, as FLAME and SMPL define it, batched in torch."""

from __future__ import annotations

import torch

__all__ = ["axis_angle_to_matrix", "barycentric_points", "lbs", "rigid_transforms"]


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula, smooth at zero (its gradient there is exact, not NaN).

    Args:
        axis_angle: [...,3] rotation vectors in radians.
    Returns:
        [...,3,3] rotation matrices.
    """
    theta2 = (axis_angle * axis_angle).sum(-1, keepdim=True)
    small = theta2 < 1e-8
    theta2_safe = torch.where(small, torch.ones_like(theta2), theta2)
    theta = theta2_safe.sqrt()
    # sin(t)/t and (1-cos t)/t^2, with their Taylor series near zero.
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / theta2_safe)
    x, y, z = axis_angle.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(
        *axis_angle.shape[:-1], 3, 3
    )
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + a[..., None] * k + b[..., None] * (k @ k)


def rigid_transforms(
    rotations: torch.Tensor, joints: torch.Tensor, parents: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Compose joint rotations along the kinematic tree.

    Args:
        rotations: [B,J,3,3] local rotations; joints: [B,J,3] rest joint positions;
        parents: J parent indices, -1 for the root, every parent before its children.
    Returns:
        posed joints [B,J,3] and the skinning transforms [B,J,4,4] that map rest-pose
        points to posed points (rest joint location already subtracted).
    """
    batch, num_joints = joints.shape[:2]
    rel = joints.clone()
    rel[:, 1:] = joints[:, 1:] - joints[:, parents[1:]]
    local = torch.zeros(batch, num_joints, 4, 4, dtype=joints.dtype, device=joints.device)
    local[..., :3, :3] = rotations
    local[..., :3, 3] = rel
    local[..., 3, 3] = 1.0
    chain = [local[:, 0]]
    for j in range(1, num_joints):
        chain.append(chain[parents[j]] @ local[:, j])
    world = torch.stack(chain, dim=1)
    posed_joints = world[..., :3, 3]
    # Subtract the rest position so the transform applies to rest-pose vertices directly.
    offset = (world[..., :3, :3] @ joints[..., None])[..., 0]
    skinning = world.clone()
    skinning[..., :3, 3] = world[..., :3, 3] - offset
    return posed_joints, skinning


def lbs(
    coefficients: torch.Tensor,
    pose: torch.Tensor,
    v_template: torch.Tensor,
    shapedirs: torch.Tensor,
    posedirs: torch.Tensor,
    j_template: torch.Tensor,
    j_shapedirs: torch.Tensor,
    parents: list[int],
    lbs_weights: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """FLAME's skinning: blendshapes, pose correctives, then linear blend skinning.

    The joint regressor is folded into ``j_template`` and ``j_shapedirs`` (joints are a
    linear function of the blendshape coefficients), which is exact and avoids a [J,V]
    product per call.

    Args:
        coefficients: [B,K] identity and expression coefficients, in ``shapedirs`` order.
        pose: [B,J,3] axis-angle per joint (radians).
        v_template: [V,3]; shapedirs: [V*3,K]; posedirs: [9*(J-1),V*3];
        j_template: [J,3]; j_shapedirs: [J*3,K]; lbs_weights: [V,J].
    Returns:
        vertices [B,V,3] and posed joints [B,J,3].
    """
    batch = coefficients.shape[0]
    num_vertices = v_template.shape[0]
    num_joints = j_template.shape[0]
    v_shaped = v_template + (coefficients @ shapedirs.T).view(batch, num_vertices, 3)
    joints = j_template + (coefficients @ j_shapedirs.T).view(batch, num_joints, 3)
    rotations = axis_angle_to_matrix(pose)
    eye = torch.eye(3, dtype=pose.dtype, device=pose.device)
    pose_feature = (rotations[:, 1:] - eye).reshape(batch, -1)
    v_posed = v_shaped + (pose_feature @ posedirs).view(batch, num_vertices, 3)
    posed_joints, transforms = rigid_transforms(rotations, joints, parents)
    blended = (lbs_weights @ transforms.view(batch, num_joints, 16)).view(batch, num_vertices, 4, 4)
    vertices = (blended[..., :3, :3] @ v_posed[..., None])[..., 0] + blended[..., :3, 3]
    return vertices, posed_joints


def barycentric_points(
    vertices: torch.Tensor, faces: torch.Tensor, face_index: torch.Tensor, bary: torch.Tensor
) -> torch.Tensor:
    """Points given by (face, barycentric) pairs on a batch of meshes.

    Args:
        vertices: [B,V,3]; faces: [F,3] int64; face_index: [N] or [B,N] int64;
        bary: [N,3] or [B,N,3].
    Returns:
        [B,N,3].
    """
    batch = vertices.shape[0]
    if face_index.dim() == 1:
        face_index = face_index.expand(batch, -1)
    if bary.dim() == 2:
        bary = bary.expand(batch, -1, -1)
    corner = faces[face_index]  # [B,N,3]
    gathered = torch.gather(vertices, 1, corner.reshape(batch, -1, 1).expand(-1, -1, 3)).view(
        batch, -1, 3, 3
    )
    return (gathered * bary[..., None].to(vertices.dtype)).sum(2)
