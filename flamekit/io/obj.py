"""Wavefront OBJ reading: vertices, triangles and texture coordinates with seams."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["ObjMesh", "load_obj"]


@dataclass
class ObjMesh:
    """A triangle mesh read from an OBJ file.

    Attributes:
        vertices: [V,3] float32.
        faces: [F,3] int64 vertex indices.
        uvs: [T,2] float32 texture coordinates, or None.
        uv_faces: [F,3] int64 indices into ``uvs``, or None.
    """

    vertices: torch.Tensor
    faces: torch.Tensor
    uvs: torch.Tensor | None
    uv_faces: torch.Tensor | None


def _index(token: str, count: int, path: Path, line_no: int) -> int:
    value = int(token)
    index = value - 1 if value > 0 else count + value  # OBJ allows negative (relative) indices
    if not 0 <= index < count:
        raise ValueError(f"{path}:{line_no}: index {value} is out of range (1..{count})")
    return index


def load_obj(path: str | Path) -> ObjMesh:
    """Read ``v``, ``vt`` and ``f`` records; polygons are fan-triangulated.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: malformed records, with the file and line number.
    """
    path = Path(path)
    vertices: list[list[float]] = []
    uvs: list[list[float]] = []
    faces: list[list[int]] = []
    uv_faces: list[list[int]] = []
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for line_no, line in enumerate(handle, start=1):
            parts = line.split()
            if not parts:
                continue
            try:
                if parts[0] == "v":
                    vertices.append([float(p) for p in parts[1:4]])
                elif parts[0] == "vt":
                    uvs.append([float(p) for p in parts[1:3]])
                elif parts[0] == "f":
                    corners = [p.split("/") for p in parts[1:]]
                    if len(corners) < 3:
                        raise ValueError("a face needs at least 3 corners")
                    v_idx = [_index(c[0], len(vertices), path, line_no) for c in corners]
                    has_uv = all(len(c) > 1 and c[1] for c in corners)
                    t_idx = (
                        [_index(c[1], len(uvs), path, line_no) for c in corners] if has_uv else None
                    )
                    for k in range(1, len(corners) - 1):
                        faces.append([v_idx[0], v_idx[k], v_idx[k + 1]])
                        if t_idx is not None:
                            uv_faces.append([t_idx[0], t_idx[k], t_idx[k + 1]])
            except (ValueError, IndexError) as exc:
                raise ValueError(f"{path}:{line_no}: cannot parse {line.strip()!r}: {exc}") from exc
    if not vertices or not faces:
        raise ValueError(f"{path}: no vertices or faces found; is this an OBJ mesh?")
    has_uvs = bool(uv_faces) and len(uv_faces) == len(faces)
    return ObjMesh(
        vertices=torch.tensor(vertices, dtype=torch.float32),
        faces=torch.tensor(faces, dtype=torch.int64),
        uvs=torch.tensor(uvs, dtype=torch.float32) if has_uvs else None,
        uv_faces=torch.tensor(uv_faces, dtype=torch.int64) if has_uvs else None,
    )
