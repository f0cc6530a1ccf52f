"""FlameModel: FLAME as a batched, differentiable torch module with its landmarks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from flamekit.model.data import FlameData, LandmarkEmbedding, MediapipeEmbedding
from flamekit.model.landmarks import contour_bins, neck_yaw_degrees
from flamekit.model.lbs import axis_angle_to_matrix, barycentric_points, lbs

__all__ = ["FlameModel", "FlameOutput"]


@dataclass
class FlameOutput:
    """What :class:`FlameModel` returns (B = batch, V = vertices, J = joints).

    Attributes:
        vertices: [B,V,3] posed vertices in metres.
        joints: [B,J,3] posed joints (global, neck, jaw, left eye, right eye for FLAME).
        landmarks: [B,68,3] iBUG 68 landmarks (17 contour points chosen by head yaw, then the
            51 static points), or None without a landmark embedding.
        mediapipe_landmarks: [B,105,3], or None without the MediaPipe embedding.
        contour_bins: [B] the dynamic-embedding bin used for each item, or None.
    """

    vertices: torch.Tensor
    joints: torch.Tensor
    landmarks: torch.Tensor | None = None
    mediapipe_landmarks: torch.Tensor | None = None
    contour_bins: torch.Tensor | None = None


def _tensor(array: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(array)).to(dtype)


class FlameModel(torch.nn.Module):
    """FLAME: identity and expression blendshapes, pose correctives, linear blend skinning.

    Pose is axis-angle (radians) per joint: global (3), neck (3), jaw (3), eyes (6: left eye
    then right eye). Move it with ``.to(device)``; ``.double()`` works for gradient checks.

    Args:
        data: the model arrays (:func:`flamekit.model.load_flame` or the demo head).
        landmarks: the 68-point embedding, or None.
        mediapipe: the 105-point MediaPipe embedding, or None.
        num_identity: identity components to use (default: all the model has, 300 for FLAME).
        num_expression: expression components to use (default: all, 100 for FLAME).
    """

    def __init__(
        self,
        data: FlameData,
        landmarks: LandmarkEmbedding | None = None,
        mediapipe: MediapipeEmbedding | None = None,
        num_identity: int | None = None,
        num_expression: int | None = None,
    ) -> None:
        super().__init__()
        n_id = data.num_identity if num_identity is None else int(num_identity)
        n_exp = data.num_expression if num_expression is None else int(num_expression)
        if not 0 <= n_id <= data.num_identity:
            raise ValueError(
                f"num_identity={n_id}: {data.release} has {data.num_identity} identity components"
            )
        if not 0 <= n_exp <= data.num_expression:
            raise ValueError(
                f"num_expression={n_exp}: {data.release} has {data.num_expression} "
                "expression components"
            )
        self.data_release = data.release
        self.is_flame = data.is_flame
        self.num_identity = n_id
        self.num_expression = n_exp
        self.joint_names = tuple(data.joint_names)
        self.parents = [int(p) for p in data.parents]
        num_vertices = data.num_vertices
        num_joints = data.num_joints

        columns = np.concatenate([np.arange(n_id), data.num_identity + np.arange(n_exp)]).astype(
            np.int64
        )
        shapedirs = data.shapedirs[:, :, columns]  # [V,3,K]
        j_shapedirs = np.einsum("jv,vck->jck", data.j_regressor, shapedirs)
        self.register_buffer("v_template", _tensor(data.v_template))
        self.register_buffer("shapedirs", _tensor(shapedirs.reshape(num_vertices * 3, -1)))
        self.register_buffer(
            "posedirs", _tensor(data.posedirs.reshape(num_vertices * 3, -1).T.copy())
        )
        self.register_buffer("j_template", _tensor(data.j_regressor @ data.v_template))
        self.register_buffer("j_shapedirs", _tensor(j_shapedirs.reshape(num_joints * 3, -1)))
        self.register_buffer("lbs_weights", _tensor(data.lbs_weights))
        self.register_buffer("faces", _tensor(data.faces, torch.int64))
        self.uvs: torch.Tensor | None
        self.uv_faces: torch.Tensor | None
        if data.uvs is not None:
            self.register_buffer("uvs", _tensor(data.uvs))
            self.register_buffer("uv_faces", _tensor(data.uv_faces, torch.int64))
        else:
            self.uvs = None
            self.uv_faces = None

        self.has_landmarks = landmarks is not None
        if landmarks is not None:
            for name in ("static_faces", "dynamic_faces"):
                faces = getattr(landmarks, name)
                if faces.size and (faces.min() < 0 or faces.max() >= data.num_faces):
                    raise ValueError(
                        f"landmark embedding {landmarks.source}: {name} indexes faces up to "
                        f"{int(faces.max())} but {data.release} has {data.num_faces} faces; "
                        "the embedding belongs to another mesh"
                    )
            self.register_buffer("lmk_static_faces", _tensor(landmarks.static_faces, torch.int64))
            self.register_buffer("lmk_static_bary", _tensor(landmarks.static_bary))
            self.register_buffer("lmk_dynamic_faces", _tensor(landmarks.dynamic_faces, torch.int64))
            self.register_buffer("lmk_dynamic_bary", _tensor(landmarks.dynamic_bary))
        self.has_mediapipe = mediapipe is not None
        if mediapipe is not None:
            if mediapipe.faces.max() >= data.num_faces:
                raise ValueError(
                    f"MediaPipe embedding {mediapipe.source} indexes faces past the mesh's "
                    f"{data.num_faces}"
                )
            self.register_buffer("mp_faces", _tensor(mediapipe.faces, torch.int64))
            self.register_buffer("mp_bary", _tensor(mediapipe.bary))
            self.mediapipe_indices = mediapipe.landmark_indices.copy()

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def num_joints(self) -> int:
        return len(self.parents)

    def set_uv_layout(self, uvs: torch.Tensor, uv_faces: torch.Tensor) -> None:
        """Attach a UV layout ([T,2], [F,3]) read from a template OBJ or a texture space."""
        if uv_faces.shape != self.faces.shape:
            raise ValueError(
                f"UV faces {tuple(uv_faces.shape)} do not match the mesh faces "
                f"{tuple(self.faces.shape)}"
            )
        device = self.v_template.device
        self.uvs = uvs.to(device=device, dtype=self.v_template.dtype)
        self.uv_faces = uv_faces.to(device=device, dtype=torch.int64)

    def _coefficients(
        self, identity: torch.Tensor | None, expression: torch.Tensor | None, batch: int
    ) -> torch.Tensor:
        parts = []
        for name, value, count in (
            ("identity", identity, self.num_identity),
            ("expression", expression, self.num_expression),
        ):
            part = self.v_template.new_zeros(batch, count)
            if value is not None:
                if value.dim() != 2 or value.shape[0] != batch or value.shape[1] > count:
                    raise ValueError(
                        f"{name} must be [B,<= {count}] with B={batch}; got {tuple(value.shape)}"
                    )
                if value.shape[1] == count:
                    part = value.to(self.v_template.dtype)
                else:  # fewer components given: the rest are zero
                    part = torch.cat(
                        [value.to(self.v_template.dtype), part[:, value.shape[1] :]], dim=1
                    )
            parts.append(part)
        return torch.cat(parts, dim=1)

    def _pose(self, value: torch.Tensor | None, batch: int, size: int, name: str) -> torch.Tensor:
        if value is None:
            return self.v_template.new_zeros(batch, size)
        if value.shape != (batch, size):
            raise ValueError(f"{name} must be [{batch},{size}]; got {tuple(value.shape)}")
        return value.to(self.v_template.dtype)

    def forward(
        self,
        identity: torch.Tensor | None = None,
        expression: torch.Tensor | None = None,
        global_pose: torch.Tensor | None = None,
        neck_pose: torch.Tensor | None = None,
        jaw_pose: torch.Tensor | None = None,
        eye_pose: torch.Tensor | None = None,
        translation: torch.Tensor | None = None,
        batch_size: int | None = None,
    ) -> FlameOutput:
        """Pose the head. Every argument is optional (zeros), batch-first.

        Args:
            identity: [B,<=num_identity]; expression: [B,<=num_expression] (missing trailing
                components are zero); global_pose, neck_pose, jaw_pose: [B,3] axis-angle;
                eye_pose: [B,6] (left eye, right eye); translation: [B,3] metres.
            batch_size: B when no tensor is given.
        """
        given = [
            t
            for t in (identity, expression, global_pose, neck_pose, jaw_pose, eye_pose, translation)
            if t is not None
        ]
        batch = given[0].shape[0] if given else int(batch_size or 1)
        coefficients = self._coefficients(identity, expression, batch)
        eyes = self._pose(eye_pose, batch, 6, "eye_pose")
        pose = torch.cat(
            [
                self._pose(global_pose, batch, 3, "global_pose"),
                self._pose(neck_pose, batch, 3, "neck_pose"),
                self._pose(jaw_pose, batch, 3, "jaw_pose"),
                eyes,
            ],
            dim=1,
        ).view(batch, -1, 3)
        if pose.shape[1] != self.num_joints:
            raise ValueError(
                f"the model has {self.num_joints} joints; FlameModel poses FLAME's 5 "
                "(global, neck, jaw, left eye, right eye)"
            )
        vertices, joints = lbs(
            coefficients,
            pose,
            self.v_template,
            self.shapedirs,
            self.posedirs,
            self.j_template,
            self.j_shapedirs,
            self.parents,
            self.lbs_weights,
        )
        out = FlameOutput(vertices=vertices, joints=joints)
        if self.has_landmarks:
            rotations = axis_angle_to_matrix(pose[:, :2])
            bins = contour_bins(
                neck_yaw_degrees(rotations[:, 0], rotations[:, 1]),
                num_bins=self.lmk_dynamic_faces.shape[0],
            )
            faces_idx = torch.cat(
                [self.lmk_dynamic_faces[bins], self.lmk_static_faces.expand(batch, -1)], dim=1
            )
            bary = torch.cat(
                [self.lmk_dynamic_bary[bins], self.lmk_static_bary.expand(batch, -1, -1)], dim=1
            )
            out.landmarks = barycentric_points(vertices, self.faces, faces_idx, bary)
            out.contour_bins = bins
        if self.has_mediapipe:
            out.mediapipe_landmarks = barycentric_points(
                vertices, self.faces, self.mp_faces, self.mp_bary
            )
        if translation is not None:
            shift = self._pose(translation, batch, 3, "translation")[:, None]
            out.vertices = out.vertices + shift
            out.joints = out.joints + shift
            if out.landmarks is not None:
                out.landmarks = out.landmarks + shift
            if out.mediapipe_landmarks is not None:
                out.mediapipe_landmarks = out.mediapipe_landmarks + shift
        return out

    def vertex_normals(self, vertices: torch.Tensor) -> torch.Tensor:
        """Area-weighted unit vertex normals [B,V,3] of posed ``vertices`` [B,V,3]."""
        from flamekit.render.geometry import vertex_normals

        return vertex_normals(vertices, self.faces)
