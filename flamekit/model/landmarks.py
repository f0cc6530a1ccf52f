"""Landmark embeddings: FLAME's 68-point layout (51 static + 17 yaw-dependent contour points)
and the 105-point MediaPipe embedding, read from each file layout users have.

Layouts read:

* ``landmark_embedding.npy`` (DECA / photometric fitting): a numpy-saved pickle whose dynamic
  entries are torch tensors. Read with the restricted unpickler (tensors weights-only).
* ``landmark_embedding.npz``: the same keys as plain arrays.
* RingNet's pair ``flame_static_embedding.pkl`` (``lmk_face_idx``, ``lmk_b_coords``) +
  ``flame_dynamic_embedding.npy`` (same keys, per yaw bin), found side by side.
* ``mediapipe_landmark_embedding.npz`` (``lmk_face_idx``, ``lmk_b_coords``,
  ``landmark_indices``).
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from flamekit.model.data import FlameFileError, LandmarkEmbedding, MediapipeEmbedding
from flamekit.model.safe_pickle import UnsafePickleError, restricted_load, to_plain

__all__ = [
    "MAX_CONTOUR_YAW_DEGREES",
    "contour_bins",
    "load_landmark_embedding",
    "load_mediapipe_embedding",
    "neck_yaw_degrees",
]

MAX_CONTOUR_YAW_DEGREES = 39
_HINT = (
    "The 68-landmark embedding is 'landmark_embedding.npy' from the DECA or photometric_"
    "optimization releases, or RingNet's 'flame_static_embedding.pkl' + "
    "'flame_dynamic_embedding.npy'; register it with `flamekit models add PATH`."
)


def _plain(value: object) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _read_npy_pickle(path: Path, allow_torch: bool) -> object:
    """Read a .npy file; object arrays go through the restricted unpickler, never np.load."""
    with path.open("rb") as handle:
        try:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                _, _, dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                _, _, dtype = np.lib.format.read_array_header_2_0(handle)
        except ValueError as error:
            raise FlameFileError(f"{path} is not a .npy file ({error})") from None
        if dtype.hasobject:
            try:
                return to_plain(restricted_load(handle, allow_torch=allow_torch))
            except UnsafePickleError as error:
                raise FlameFileError(f"{path}: {error}") from None
            except Exception as error:  # truncated or garbled pickle payload
                raise FlameFileError(
                    f"{path} is not a readable landmark embedding ({type(error).__name__}: {error})"
                ) from None
    return np.load(path, allow_pickle=False)


def _read_any(path: Path) -> dict:
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        if suffix == ".npy":
            raw = _read_npy_pickle(path, allow_torch=True)
        elif suffix == ".pkl":
            raw = to_plain(restricted_load(path))
        else:
            raise FlameFileError(f"{path}: unknown landmark file type '{suffix}'. {_HINT}")
    except UnsafePickleError as error:
        raise FlameFileError(f"{path}: {error}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        if isinstance(error, FlameFileError):
            raise
        raise FlameFileError(f"{path} is not a readable landmark file ({error})") from None
    if not isinstance(raw, dict):
        raise FlameFileError(f"{path} holds a {type(raw).__name__}, not a dict of arrays. {_HINT}")
    return {k: _plain(v) for k, v in raw.items()}


def _faces(value: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(value, dtype=np.int64)


def _bary(value: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(value, dtype=np.float32)


def _validate(emb: LandmarkEmbedding, source: str) -> LandmarkEmbedding:
    problems = []
    if emb.static_faces.shape != (51,) or emb.static_bary.shape != (51, 3):
        problems.append(
            f"static: faces {emb.static_faces.shape}, bary {emb.static_bary.shape} "
            "(expected (51,), (51,3))"
        )
    y = emb.dynamic_faces.shape[0] if emb.dynamic_faces.ndim == 2 else -1
    if emb.dynamic_faces.shape != (y, 17) or emb.dynamic_bary.shape != (y, 17, 3) or y < 1:
        problems.append(
            f"dynamic: faces {emb.dynamic_faces.shape}, bary {emb.dynamic_bary.shape} "
            "(expected (Y,17), (Y,17,3))"
        )
    if emb.full_faces is not None and (
        emb.full_faces.shape != (68,) or emb.full_bary.shape != (68, 3)
    ):
        problems.append(f"full: faces {emb.full_faces.shape} (expected (68,))")
    if problems:
        raise FlameFileError(f"{source}: wrong landmark embedding shapes: {'; '.join(problems)}")
    return emb


def load_landmark_embedding(
    path: str | os.PathLike, dynamic_path: str | os.PathLike | None = None
) -> LandmarkEmbedding:
    """Load the 68-point embedding from any of the layouts in the module docstring.

    Args:
        path: ``landmark_embedding.npy``/``.npz``, or ``flame_static_embedding.pkl``.
        dynamic_path: RingNet's ``flame_dynamic_embedding.npy``; by default looked for beside
            ``path`` when ``path`` is the static half.

    Raises:
        FlameFileError: missing or unreadable file, unknown keys, wrong shapes.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FlameFileError(f"landmark embedding not found: {path}. {_HINT}")
    raw = _read_any(path)
    source = str(path)
    if "static_lmk_faces_idx" in raw:
        full_faces = raw.get("full_lmk_faces_idx")
        full_bary = raw.get("full_lmk_bary_coords")
        emb = LandmarkEmbedding(
            static_faces=_faces(raw["static_lmk_faces_idx"]).reshape(-1),
            static_bary=_bary(raw["static_lmk_bary_coords"]).reshape(-1, 3),
            dynamic_faces=_faces(raw["dynamic_lmk_faces_idx"]),
            dynamic_bary=_bary(raw["dynamic_lmk_bary_coords"]),
            full_faces=None if full_faces is None else _faces(full_faces).reshape(-1),
            full_bary=None if full_bary is None else _bary(full_bary).reshape(-1, 3),
            source=source,
        )
        return _validate(emb, source)
    if "lmk_face_idx" in raw and "lmk_b_coords" in raw:
        static_faces = _faces(raw["lmk_face_idx"]).reshape(-1)
        if static_faces.shape == (105,) or "landmark_indices" in raw:
            raise FlameFileError(
                f"{source} is the MediaPipe embedding; load it with load_mediapipe_embedding"
            )
        dynamic = (
            Path(dynamic_path) if dynamic_path else path.with_name("flame_dynamic_embedding.npy")
        )
        if not dynamic.is_file():
            raise FlameFileError(
                f"{source} is RingNet's static embedding; its contour half "
                f"'flame_dynamic_embedding.npy' was not found at {dynamic}. {_HINT}"
            )
        dyn = _read_any(dynamic)
        if "lmk_face_idx" not in dyn or "lmk_b_coords" not in dyn:
            raise FlameFileError(
                f"{dynamic}: expected keys lmk_face_idx, lmk_b_coords; found {', '.join(dyn)}"
            )
        emb = LandmarkEmbedding(
            static_faces=static_faces,
            static_bary=_bary(raw["lmk_b_coords"]).reshape(-1, 3),
            dynamic_faces=_faces(dyn["lmk_face_idx"]),
            dynamic_bary=_bary(dyn["lmk_b_coords"]),
            source=source,
        )
        return _validate(emb, source)
    raise FlameFileError(f"{source} is not a landmark embedding (keys: {', '.join(raw)}). {_HINT}")


def load_mediapipe_embedding(path: str | os.PathLike) -> MediapipeEmbedding:
    """Load FLAME's ``mediapipe_landmark_embedding.npz`` (105 points)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FlameFileError(
            f"MediaPipe embedding not found: {path}. It ships with FLAME 2023 "
            "('mediapipe_landmark_embedding.npz'); register it with `flamekit models add PATH`."
        )
    raw = _read_any(path)
    missing = {"lmk_face_idx", "lmk_b_coords", "landmark_indices"} - set(raw)
    if missing:
        raise FlameFileError(
            f"{path}: missing {', '.join(sorted(missing))} (found {', '.join(raw)})"
        )
    faces = _faces(raw["lmk_face_idx"]).reshape(-1)
    bary = _bary(raw["lmk_b_coords"]).reshape(-1, 3)
    indices = _faces(raw["landmark_indices"]).reshape(-1)
    if not faces.shape[0] == bary.shape[0] == indices.shape[0]:
        raise FlameFileError(
            f"{path}: {faces.shape[0]} faces, {bary.shape[0]} barycentrics and "
            f"{indices.shape[0]} indices do not match"
        )
    return MediapipeEmbedding(faces, bary, indices, str(path))


def neck_yaw_degrees(global_rotation: torch.Tensor, neck_rotation: torch.Tensor) -> torch.Tensor:
    """Head yaw used to pick contour landmarks: the y Euler angle of R_global @ R_neck.

    This is the convention of the 68-point embedding of the photometric fitting code: bin
    ``b`` in 0..39 is a head rotated by +b degrees about +y (its left side, +x, turning away
    from a camera on +z), and its contour points on that side move toward the face there,
    onto the silhouette. (Checked against the embedding's geometry in the tests.)

    Args:
        global_rotation, neck_rotation: [B,3,3].
    Returns:
        [B] degrees.
    """
    rel = global_rotation @ neck_rotation
    sy = torch.sqrt(rel[:, 0, 0] ** 2 + rel[:, 1, 0] ** 2)
    return torch.atan2(-rel[:, 2, 0], sy) * (180.0 / math.pi)


def contour_bins(yaw_degrees: torch.Tensor, num_bins: int = 79) -> torch.Tensor:
    """Map yaw (degrees, from :func:`neck_yaw_degrees`) to a dynamic-embedding bin.

    Yaw is rounded and clamped to +-39 degrees; 0..39 map to bins 0..39 and -1..-39 to bins
    40..78, the layout of FLAME's ``dynamic_lmk_faces_idx`` (79 bins).
    """
    half = (num_bins - 1) // 2
    yaw = torch.round(yaw_degrees.detach()).clamp(-half, half).long()
    return torch.where(yaw >= 0, yaw, half - yaw)
