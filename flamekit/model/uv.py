"""FLAME's UV layout (``vt`` (5118,2), ``ft`` (9976,3)) from a template OBJ or a texture-space file.

FLAME pickles carry no UVs; they come with the texture space (``FLAME_texture.npz`` has ``vt``
and ``ft``) or with FLAME's template OBJ (``head_template_mesh.obj``).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from flamekit.model.data import FlameFileError

__all__ = ["UVLayout", "load_uv_layout"]


@dataclass
class UVLayout:
    """Texture coordinates with their own face indices (seams split UVs, not vertices).

    Attributes:
        uvs: [T,2] float32, OBJ convention (u right, v up, (0,0) bottom-left).
        uv_faces: [F,3] int64 indices into ``uvs``, one row per mesh face.
        source: where the layout came from.
    """

    uvs: torch.Tensor
    uv_faces: torch.Tensor
    source: str = ""

    def uvs_numpy(self) -> np.ndarray:
        return self.uvs.detach().cpu().numpy().astype(np.float32)

    def uv_faces_numpy(self) -> np.ndarray:
        return self.uv_faces.detach().cpu().numpy().astype(np.int64)


def _check(uvs: np.ndarray, uv_faces: np.ndarray, source: str, num_faces: int | None) -> None:
    if uvs.ndim != 2 or uvs.shape[1] != 2:
        raise FlameFileError(f"{source}: 'vt' has shape {uvs.shape}, expected (T,2)")
    if uv_faces.ndim != 2 or uv_faces.shape[1] != 3:
        raise FlameFileError(f"{source}: 'ft' has shape {uv_faces.shape}, expected (F,3)")
    if num_faces is not None and uv_faces.shape[0] != num_faces:
        raise FlameFileError(
            f"{source}: 'ft' has {uv_faces.shape[0]} faces but the model has {num_faces}; "
            "the UV layout belongs to another mesh"
        )
    if uv_faces.size and (uv_faces.min() < 0 or uv_faces.max() >= uvs.shape[0]):
        raise FlameFileError(f"{source}: 'ft' indexes past the end of 'vt'")


def load_uv_layout(path: str | os.PathLike, num_faces: int | None = None) -> UVLayout:
    """Read ``vt``/``ft`` from an OBJ with ``f v/vt`` records or an ``.npz`` holding them.

    Args:
        num_faces: when given, the layout must have that many faces (FLAME: 9976).

    Raises:
        FlameFileError: missing file, no UVs in it, or inconsistent shapes.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FlameFileError(
            f"UV layout file not found: {path}. FLAME's UVs come with its texture space "
            "(FLAME_texture.npz) or template mesh (head_template_mesh.obj) from "
            "https://flame.is.tue.mpg.de"
        )
    source = str(path)
    if path.suffix.lower() == ".obj":
        from flamekit.io.obj import load_obj

        try:
            mesh = load_obj(path)
        except ValueError as error:
            raise FlameFileError(str(error)) from None
        if mesh.uvs is None or mesh.uv_faces is None:
            raise FlameFileError(f"{source} has no texture coordinates (no 'vt' / 'f v/vt')")
        uvs, uv_faces = mesh.uvs.numpy(), mesh.uv_faces.numpy()
    else:
        try:
            with np.load(path, allow_pickle=False) as npz:
                if "vt" not in npz.files or "ft" not in npz.files:
                    raise FlameFileError(
                        f"{source} has no UV layout (keys: {', '.join(npz.files)}; need vt, ft)"
                    )
                uvs, uv_faces = npz["vt"], npz["ft"]
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            if isinstance(error, FlameFileError):
                raise
            raise FlameFileError(f"{source} is not a readable .npz file ({error})") from None
    uvs = np.ascontiguousarray(uvs, dtype=np.float32)
    uv_faces = np.ascontiguousarray(uv_faces, dtype=np.int64)
    _check(uvs, uv_faces, source, num_faces)
    return UVLayout(torch.from_numpy(uvs), torch.from_numpy(uv_faces), source)
