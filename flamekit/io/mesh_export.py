"""Mesh export: textured OBJ (+ MTL + PNG) and vertex-coloured PLY, written atomically.

Every file is written to a temporary file in the target folder and moved into place with
``os.replace``, so a crash never leaves a half-written mesh; the OBJ is written last, so it never
refers to a material or texture that is not there yet. References between files are relative
names in the same folder, which is what Blender and MeshLab resolve.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from flamekit.io.atomic import atomic_write

__all__ = ["save_obj", "save_ply", "vertex_colors_from_texture"]

ArrayLike = torch.Tensor | np.ndarray




def _array(value: ArrayLike) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _vertices(vertices: ArrayLike, name: str = "vertices") -> np.ndarray:
    v = _array(vertices)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"{name} must be [V,3], got {v.shape}")
    if v.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got {v.dtype}")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return v


def _faces(
    faces: ArrayLike, count: int, name: str = "faces", target: str = "vertices"
) -> np.ndarray:
    f = _array(faces)
    if f.ndim != 2 or f.shape[1] != 3 or f.dtype.kind not in "iu":
        raise ValueError(f"{name} must be an integer [F,3] array, got {f.dtype} {f.shape}")
    if f.size and (f.min() < 0 or f.max() >= count):
        raise ValueError(
            f"{name} index {target} {int(f.min())}..{int(f.max())} but there are only {count}"
        )
    return f.astype(np.int64, copy=False)


def _texture_hwc(texture: ArrayLike) -> np.ndarray:
    """[3,H,W] / [1,3,H,W] tensor or (H,W,3) array (float 0..1 or uint8) -> (H,W,3) float."""
    if isinstance(texture, torch.Tensor):
        t = texture.detach()
        if t.dim() == 4 and t.shape[0] == 1:
            t = t[0]
        if t.dim() != 3 or t.shape[0] != 3:
            raise ValueError(f"a texture tensor must be [3,H,W], got {tuple(texture.shape)}")
        array = t.permute(1, 2, 0).cpu().numpy()
    else:
        array = np.asarray(texture)
        if array.ndim != 3 or array.shape[2] != 3:
            raise ValueError(f"a texture array must be (H,W,3), got {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255.0)
    if array.dtype.kind != "f":
        raise ValueError(f"texture must be float 0..1 or uint8, got {array.dtype}")
    return array


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """Float 0..1 (clamped) or uint8 -> uint8."""
    if values.dtype == np.uint8:
        return values
    if values.dtype.kind != "f":
        raise ValueError(f"colours must be float 0..1 or uint8, got {values.dtype}")
    return np.round(np.clip(np.nan_to_num(values), 0.0, 1.0) * 255.0).astype(np.uint8)


def _check_name(name: str, what: str) -> None:
    if not name or any(c.isspace() for c in name) or "#" in name:
        raise ValueError(
            f"{what} {name!r} must be non-empty without spaces or '#': OBJ/MTL references are "
            "whitespace-separated, so Blender and MeshLab would not find it"
        )


def _format_rows(prefix: str, rows: np.ndarray, fmt: str) -> str:
    if rows.shape[0] == 0:
        return ""
    line = prefix + " " + " ".join([fmt] * rows.shape[1])
    return "\n".join(line % tuple(r) for r in rows.tolist()) + "\n"


def save_obj(
    path: str | os.PathLike,
    vertices: ArrayLike,
    faces: ArrayLike,
    uvs: ArrayLike | None = None,
    uv_faces: ArrayLike | None = None,
    texture: ArrayLike | None = None,
    normals: bool = True,
    material_name: str = "flamekit_albedo",
    texture_name: str | None = None,
) -> list[Path]:
    """Write a (textured) triangle mesh as OBJ, with ``<stem>.mtl`` and a PNG next to it.

    Args:
        path: the ``.obj`` file (``.obj`` is appended when missing); its name must not contain
            spaces, since the MTL and PNG are referenced by bare names derived from it.
        vertices: [V,3]; faces: [F,3] 0-based vertex indices.
        uvs: [T,2] texture coordinates (v up); uv_faces: [F,3] indices into ``uvs`` (may be
            omitted when ``uvs`` has one row per vertex).
        texture: albedo map, [3,H,W] tensor (or [1,3,H,W]) in 0..1, or an (H,W,3) float 0..1 /
            uint8 array; image row 0 is v = 1. Needs UVs. Writes the MTL and PNG.
        normals: also write area-weighted vertex normals (``vn``) and ``v/vt/vn`` corners.
        material_name: the MTL material name (no spaces).
        texture_name: file name of the PNG in the OBJ's folder (a bare ``.png`` name without
            spaces), for layouts with a fixed name such as ``texture.png``; default
            ``<stem>.png``.

    Returns:
        The written paths: the OBJ, then the MTL and PNG when a texture was given.
    """
    from flamekit.render.geometry import vertex_normals

    path = Path(path)
    if path.suffix.lower() != ".obj":
        path = path.with_name(path.name + ".obj")
    _check_name(path.name, "the OBJ file name")
    _check_name(material_name, "the material name")
    v = _vertices(vertices)
    f = _faces(faces, v.shape[0])
    if uvs is not None:
        vt = _array(uvs)
        if vt.ndim != 2 or vt.shape[1] != 2 or vt.dtype.kind != "f" or not np.isfinite(vt).all():
            raise ValueError(f"uvs must be a finite float [T,2] array, got {vt.dtype} {vt.shape}")
        if uv_faces is None:
            if vt.shape[0] != v.shape[0]:
                raise ValueError(
                    f"uv_faces is needed: uvs has {vt.shape[0]} rows, not one per vertex "
                    f"({v.shape[0]})"
                )
            ft = f
        else:
            ft = _faces(uv_faces, vt.shape[0], "uv_faces", "uvs")
            if ft.shape != f.shape:
                raise ValueError(f"uv_faces {ft.shape} must match faces {f.shape}")
    elif uv_faces is not None:
        raise ValueError("uv_faces was given without uvs")
    else:
        vt = ft = None
    if texture is not None and vt is None:
        raise ValueError("a texture needs uvs (and uv_faces) to be mapped onto the mesh")

    material_files: list[Path] = []
    mtl_path = path.with_suffix(".mtl")
    png_path = path.with_suffix(".png")
    if texture_name is not None:
        _check_name(texture_name, "the texture file name")
        if Path(texture_name).name != texture_name or texture_name in (".", ".."):
            raise ValueError(
                f"texture_name {texture_name!r} must be a bare file name: the MTL refers to it "
                "relative to the OBJ's folder"
            )
        if Path(texture_name).suffix.lower() != ".png":
            raise ValueError(f"texture_name {texture_name!r} must end in .png (it is a PNG)")
        png_path = path.with_name(texture_name)
    if texture is not None:
        from PIL import Image

        pixels = _to_uint8(_texture_hwc(texture))
        image = Image.fromarray(np.ascontiguousarray(pixels))
        png_written = atomic_write(png_path, lambda h: image.save(h, format="PNG"))
        mtl = (
            "# written by flamekit\n"
            f"newmtl {material_name}\n"
            "Ka 0.000000 0.000000 0.000000\n"
            "Kd 1.000000 1.000000 1.000000\n"
            "Ks 0.000000 0.000000 0.000000\n"
            "Ns 0.000000\n"
            "d 1.000000\n"
            "illum 1\n"
            f"map_Kd {png_path.name}\n"
        )
        mtl_written = atomic_write(mtl_path, lambda h: h.write(mtl.encode("utf-8")))
        material_files = [mtl_written, png_written]

    parts = ["# written by flamekit\n"]
    if texture is not None:
        parts.append(f"mtllib {mtl_path.name}\n")
    parts.append(_format_rows("v", v.astype(np.float64), "%.9g"))
    if vt is not None:
        parts.append(_format_rows("vt", vt.astype(np.float64), "%.9g"))
    if normals:
        vn = vertex_normals(torch.from_numpy(v.astype(np.float32))[None], torch.from_numpy(f))[0]
        parts.append(_format_rows("vn", vn.double().numpy(), "%.6f"))
    if texture is not None:
        parts.append(f"usemtl {material_name}\n")
    corners = [f + 1]
    if vt is not None:
        corners.append(ft + 1)
    if normals:
        corners.append(f + 1)
    if len(corners) == 1:
        corner_fmt = "%d"
    elif len(corners) == 3:
        corner_fmt = "%d/%d/%d"
    elif vt is not None:
        corner_fmt = "%d/%d"
    else:
        corner_fmt = "%d//%d"
    table = np.stack(corners, axis=-1).reshape(f.shape[0], -1)  # per face: corner-major
    line = "f " + " ".join([corner_fmt] * 3)
    parts.append("".join(line % tuple(r) + "\n" for r in table.tolist()))
    text = "".join(parts)
    return [atomic_write(path, lambda h: h.write(text.encode("utf-8"))), *material_files]


def save_ply(
    path: str | os.PathLike,
    vertices: ArrayLike,
    faces: ArrayLike,
    vertex_colors: ArrayLike | None = None,
    binary: bool = True,
) -> Path:
    """Write a triangle mesh as PLY, optionally with per-vertex ``uchar red/green/blue`` colours.

    Args:
        vertices: [V,3] (stored as float32); faces: [F,3] 0-based indices (``list uchar int``).
        vertex_colors: [V,3] float 0..1 (clamped) or uint8.
        binary: binary little-endian (default, compact and fast) or ASCII.

    Returns:
        The written path.
    """
    path = Path(path)
    v = _vertices(vertices).astype(np.float32)
    f = _faces(faces, v.shape[0]).astype(np.int32)
    colors = None
    if vertex_colors is not None:
        colors = _array(vertex_colors)
        if colors.shape != v.shape:
            raise ValueError(f"vertex_colors must be [V,3] = {v.shape}, got {colors.shape}")
        colors = _to_uint8(colors)

    header = [
        "ply",
        f"format {'binary_little_endian' if binary else 'ascii'} 1.0",
        "comment written by flamekit",
        f"element vertex {v.shape[0]}",
        "property float x",
        "property float y",
        "property float z",
    ]
    if colors is not None:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    header += [f"element face {f.shape[0]}", "property list uchar int vertex_indices", "end_header"]
    head = ("\n".join(header) + "\n").encode("ascii")

    if binary:
        fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
        if colors is not None:
            fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
        vert = np.empty(v.shape[0], dtype=fields)
        vert["x"], vert["y"], vert["z"] = v[:, 0], v[:, 1], v[:, 2]
        if colors is not None:
            vert["red"], vert["green"], vert["blue"] = colors[:, 0], colors[:, 1], colors[:, 2]
        face = np.empty(f.shape[0], dtype=[("n", "u1"), ("idx", "<i4", (3,))])
        face["n"] = 3
        face["idx"] = f
        body = vert.tobytes() + face.tobytes()
    else:
        if colors is not None:
            rows = (
                f"{x:.9g} {y:.9g} {z:.9g} {r} {g} {b}"
                for (x, y, z), (r, g, b) in zip(v.tolist(), colors.tolist(), strict=True)
            )
        else:
            rows = (f"{x:.9g} {y:.9g} {z:.9g}" for x, y, z in v.tolist())
        lines = list(rows) + [f"3 {a} {b} {c}" for a, b, c in f.tolist()]
        body = ("\n".join(lines) + "\n").encode("ascii") if lines else b""
    return atomic_write(path, lambda h: h.write(head + body))


def vertex_colors_from_texture(
    texture: ArrayLike,
    uvs: ArrayLike,
    uv_faces: ArrayLike,
    faces: ArrayLike,
    num_vertices: int,
) -> torch.Tensor:
    """Per-vertex colours sampled from a texture map, e.g. for :func:`save_ply`.

    Each UV is sampled bilinearly (texel centres, border clamp; row 0 is v = 1, as in the
    renderer). A vertex on a UV seam has several UVs; their colours are averaged (each distinct
    UV counts once). Vertices used by no face get colour 0.

    Args:
        texture: [3,H,W] (or [1,3,H,W]) tensor in 0..1, or an (H,W,3) float / uint8 array.
        uvs: [T,2]; uv_faces: [F,3] into ``uvs``; faces: [F,3] into the vertices.
        num_vertices: V.

    Returns:
        [V,3] float colours (the texture's float dtype; float32 for arrays).
    """
    if isinstance(texture, torch.Tensor) and texture.is_floating_point():
        tex = texture.detach()
        tex = tex[0] if tex.dim() == 4 and tex.shape[0] == 1 else tex
        if tex.dim() != 3 or tex.shape[0] != 3:
            raise ValueError(f"a texture tensor must be [3,H,W], got {tuple(texture.shape)}")
    else:
        tex = torch.from_numpy(np.ascontiguousarray(_texture_hwc(texture))).permute(2, 0, 1)
    tex = tex.float() if tex.dtype not in (torch.float32, torch.float64) else tex
    uv = torch.as_tensor(_array(uvs), dtype=tex.dtype, device=tex.device)
    if uv.dim() != 2 or uv.shape[1] != 2:
        raise ValueError(f"uvs must be [T,2], got {tuple(uv.shape)}")
    f = torch.from_numpy(_faces(faces, num_vertices)).to(tex.device)
    ft = torch.from_numpy(_faces(uv_faces, uv.shape[0], "uv_faces", "uvs")).to(tex.device)
    if ft.shape != f.shape:
        raise ValueError(f"uv_faces {tuple(ft.shape)} must match faces {tuple(f.shape)}")

    grid = torch.stack([uv[:, 0] * 2 - 1, 1 - uv[:, 1] * 2], dim=-1).view(1, 1, -1, 2)
    sampled = F.grid_sample(
        tex[None], grid, mode="bilinear", padding_mode="border", align_corners=False
    )[0, :, 0].T  # [T,3]
    pairs = torch.unique(torch.stack([f.reshape(-1), ft.reshape(-1)], dim=1), dim=0)
    sums = torch.zeros(num_vertices, 3, dtype=tex.dtype, device=tex.device)
    sums.index_add_(0, pairs[:, 0], sampled[pairs[:, 1]])
    counts = torch.zeros(num_vertices, dtype=tex.dtype, device=tex.device)
    counts.index_add_(
        0, pairs[:, 0], torch.ones(pairs.shape[0], dtype=tex.dtype, device=tex.device)
    )
    return sums / counts.clamp_min(1)[:, None]
