"""Plain-array containers for a FLAME-format model and its landmark embeddings.

Every loader (FLAME pickles of each release, flamekit's ``.npz``, the built-in demo head)
produces these, so the rest of flamekit never sees a file format. Arrays are numpy,
float32 and int64, C-contiguous; :func:`validate_flame_data` says exactly what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "FLAME_FACES",
    "FLAME_JOINT_NAMES",
    "FLAME_UV_COUNT",
    "FLAME_VERTICES",
    "FlameData",
    "FlameFileError",
    "LandmarkEmbedding",
    "MediapipeEmbedding",
    "validate_flame_data",
]

FLAME_VERTICES = 5023
FLAME_FACES = 9976
FLAME_UV_COUNT = 5118
FLAME_JOINT_NAMES = ("global", "neck", "jaw", "left_eye", "right_eye")


class FlameFileError(ValueError):
    """A model, embedding or texture file is missing, unreadable or has the wrong layout.

    The message names the file, what is wrong and how to fix it.
    """


@dataclass
class FlameData:
    """A FLAME-format head model as plain arrays (V vertices, F faces, J joints).

    Attributes:
        v_template: (V,3) float32 template vertices in metres.
        faces: (F,3) int64 triangle vertex indices.
        shapedirs: (V,3,K) float32 blendshapes: the first ``num_identity`` are identity
            (shape) components, the rest expression components.
        num_identity: how many of the K components are identity components.
        posedirs: (V,3,9*(J-1)) float32 pose-corrective blendshapes, driven by the
            flattened (R - I) of every joint but the root.
        j_regressor: (J,V) float32 dense joint regressor.
        lbs_weights: (V,J) float32 skinning weights; rows sum to 1.
        parents: (J,) int64 kinematic parent of each joint, -1 for the root.
        release: human-readable release, e.g. "FLAME 2020 (generic)".
        source: where the data came from (a path, or "built-in").
        uvs: (T,2) float32 texture coordinates (OBJ convention, v up), or None.
        uv_faces: (F,3) int64 indices into ``uvs``, or None.
        is_flame: False for models that are not the licensed FLAME (the demo head).
    """

    v_template: np.ndarray
    faces: np.ndarray
    shapedirs: np.ndarray
    num_identity: int
    posedirs: np.ndarray
    j_regressor: np.ndarray
    lbs_weights: np.ndarray
    parents: np.ndarray
    release: str = "FLAME (unknown release)"
    source: str = ""
    uvs: np.ndarray | None = None
    uv_faces: np.ndarray | None = None
    is_flame: bool = True
    joint_names: tuple[str, ...] = field(default=FLAME_JOINT_NAMES)

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    @property
    def num_joints(self) -> int:
        return int(self.parents.shape[0])

    @property
    def num_expression(self) -> int:
        return int(self.shapedirs.shape[2]) - self.num_identity


@dataclass
class LandmarkEmbedding:
    """The 68-point (iBUG) landmark embedding: 51 static points + 17 yaw-dependent contour points.

    Attributes:
        static_faces: (51,) int64 face index of iBUG points 17..67.
        static_bary: (51,3) float32 barycentric coordinates in those faces.
        dynamic_faces: (Y,17) int64 face index of contour points 0..16 for each yaw bin
            (Y = 79 for FLAME: bins 0..39 for a head rotated 0..+39 degrees about +y,
            40..78 for -1..-39 degrees).
        dynamic_bary: (Y,17,3) float32.
        full_faces: (68,) int64 face indices of all 68 points at zero pose, or None.
        full_bary: (68,3) float32, or None.
    """

    static_faces: np.ndarray
    static_bary: np.ndarray
    dynamic_faces: np.ndarray
    dynamic_bary: np.ndarray
    full_faces: np.ndarray | None = None
    full_bary: np.ndarray | None = None
    source: str = ""


@dataclass
class MediapipeEmbedding:
    """FLAME's 105-point MediaPipe embedding.

    Attributes:
        faces: (N,) int64 face indices; bary: (N,3) float32 barycentric coordinates;
        landmark_indices: (N,) int64 index of each point in MediaPipe's 478-point mesh.
    """

    faces: np.ndarray
    bary: np.ndarray
    landmark_indices: np.ndarray
    source: str = ""


def _shape_error(source: str, key: str, expected: str, got: tuple[int, ...]) -> FlameFileError:
    return FlameFileError(
        f"{source or 'model'}: '{key}' has shape {tuple(got)}, expected {expected}. "
        "The file is not a FLAME model or is damaged; download it again from "
        "https://flame.is.tue.mpg.de (after accepting the FLAME license)."
    )


def validate_flame_data(data: FlameData) -> FlameData:
    """Check that every array has a consistent shape; FLAME releases must have FLAME's counts.

    Raises:
        FlameFileError: naming the key, its shape and the expected one.
    """
    src = data.source
    v = data.v_template
    if v.ndim != 2 or v.shape[1] != 3:
        raise _shape_error(src, "v_template", "(V,3)", v.shape)
    nv = v.shape[0]
    if data.is_flame and nv != FLAME_VERTICES:
        raise _shape_error(src, "v_template", f"({FLAME_VERTICES},3)", v.shape)
    f = data.faces
    if f.ndim != 2 or f.shape[1] != 3:
        raise _shape_error(src, "f", "(F,3)", f.shape)
    if data.is_flame and f.shape[0] != FLAME_FACES:
        raise _shape_error(src, "f", f"({FLAME_FACES},3)", f.shape)
    if f.size and (f.min() < 0 or f.max() >= nv):
        raise FlameFileError(
            f"{src or 'model'}: 'f' indexes vertices {int(f.min())}..{int(f.max())} "
            f"but the model has {nv} vertices"
        )
    sd = data.shapedirs
    if sd.ndim != 3 or sd.shape[:2] != (nv, 3):
        raise _shape_error(src, "shapedirs", f"({nv},3,K)", sd.shape)
    if not 0 <= data.num_identity <= sd.shape[2]:
        raise FlameFileError(
            f"{src or 'model'}: num_identity={data.num_identity} but shapedirs has "
            f"{sd.shape[2]} components"
        )
    nj = data.parents.shape[0] if data.parents.ndim == 1 else -1
    if nj < 1:
        raise _shape_error(src, "kintree_table", "(2,J)", data.parents.shape)
    if data.parents[0] != -1 or any(
        not 0 <= int(p) < i for i, p in enumerate(data.parents[1:], start=1)
    ):
        raise FlameFileError(
            f"{src or 'model'}: 'kintree_table' must list the root first (parent -1) and every "
            f"other joint after its parent; got parents {data.parents.tolist()}"
        )
    if data.posedirs.shape != (nv, 3, 9 * (nj - 1)):
        raise _shape_error(src, "posedirs", f"({nv},3,{9 * (nj - 1)})", data.posedirs.shape)
    if data.j_regressor.shape != (nj, nv):
        raise _shape_error(src, "J_regressor", f"({nj},{nv})", data.j_regressor.shape)
    if data.lbs_weights.shape != (nv, nj):
        raise _shape_error(src, "weights", f"({nv},{nj})", data.lbs_weights.shape)
    if (data.uvs is None) != (data.uv_faces is None):
        raise FlameFileError(f"{src or 'model'}: 'vt' and 'ft' must be given together")
    if data.uvs is not None:
        if data.uvs.ndim != 2 or data.uvs.shape[1] != 2:
            raise _shape_error(src, "vt", "(T,2)", data.uvs.shape)
        if data.uv_faces.shape != f.shape:
            raise _shape_error(src, "ft", f"{tuple(f.shape)}", data.uv_faces.shape)
        if data.uv_faces.size and (
            data.uv_faces.min() < 0 or data.uv_faces.max() >= data.uvs.shape[0]
        ):
            raise FlameFileError(f"{src or 'model'}: 'ft' indexes past the end of 'vt'")
    for name in ("v_template", "shapedirs", "posedirs", "j_regressor", "lbs_weights"):
        if not np.all(np.isfinite(getattr(data, name))):
            raise FlameFileError(f"{src or 'model'}: '{name}' contains NaN or infinite values")
    return data
