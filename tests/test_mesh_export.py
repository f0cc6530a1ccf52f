"""Mesh export: OBJ/MTL/PNG and PLY files that read back exactly."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from flamekit.io.mesh_export import save_obj, save_ply, vertex_colors_from_texture
from flamekit.io.obj import load_obj


@pytest.fixture
def quad():
    """Two triangles of a unit square in z = 0, with a UV seam: vertex 0 has two UVs."""
    vertices = torch.tensor(
        [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]]
    ) * torch.tensor([0.123456789, 0.1, 1.0])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    uvs = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.1, 0.1]])
    uv_faces = torch.tensor([[0, 1, 2], [4, 2, 3]])
    return vertices, faces, uvs, uv_faces


def _texture() -> torch.Tensor:
    """[3,4,6]: top half (v > 0.5) red, bottom half blue."""
    tex = torch.zeros(3, 4, 6)
    tex[0, :2] = 1.0
    tex[2, 2:] = 1.0
    return tex


def _no_temp_files(folder: Path) -> None:
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".") or "tmp" in p.name]
    assert not leftovers, leftovers


def test_obj_round_trip_with_texture(tmp_path, quad):
    vertices, faces, uvs, uv_faces = quad
    paths = save_obj(tmp_path / "mesh.obj", vertices, faces, uvs, uv_faces, texture=_texture())
    assert [p.name for p in paths] == ["mesh.obj", "mesh.mtl", "mesh.png"]
    assert all(p.is_file() for p in paths)
    _no_temp_files(tmp_path)

    mesh = load_obj(paths[0])
    assert torch.equal(mesh.vertices, vertices)
    assert torch.equal(mesh.faces, faces)
    assert torch.equal(mesh.uvs, uvs)
    assert torch.equal(mesh.uv_faces, uv_faces)

    text = paths[0].read_text().splitlines()
    assert "mtllib mesh.mtl" in text and "usemtl flamekit_albedo" in text
    assert sum(line.startswith("vn ") for line in text) == 4
    face_lines = [line for line in text if line.startswith("f ")]
    assert face_lines[1] == "f 1/5/1 3/3/3 4/4/4"
    normals = np.array([[float(x) for x in ln.split()[1:]] for ln in text if ln.startswith("vn ")])
    np.testing.assert_allclose(normals, np.tile([0.0, 0.0, 1.0], (4, 1)), atol=1e-6)

    mtl = paths[1].read_text().splitlines()
    assert "newmtl flamekit_albedo" in mtl and "map_Kd mesh.png" in mtl
    assert any(line.startswith("Kd ") for line in mtl) and any(
        line.startswith("illum") for line in mtl
    )

    with Image.open(paths[2]) as image:
        assert image.size == (6, 4) and image.mode == "RGB"
        pixels = np.asarray(image)
    assert (pixels[:2] == [255, 0, 0]).all() and (pixels[2:] == [0, 0, 255]).all()


def test_obj_variants(tmp_path, quad):
    vertices, faces, uvs, uv_faces = quad
    plain = save_obj(tmp_path / "plain.obj", vertices.numpy(), faces.numpy(), normals=False)
    assert plain == [tmp_path / "plain.obj"]
    text = plain[0].read_text()
    assert "vn " not in text and "mtllib" not in text and "f 1 2 3" in text
    assert load_obj(plain[0]).uvs is None

    normals_only = save_obj(tmp_path / "n.obj", vertices, faces)[0].read_text()
    assert "f 1//1 2//2 3//3" in normals_only

    uv_only = save_obj(tmp_path / "uv.obj", vertices, faces, uvs, uv_faces, normals=False)
    assert "f 1/1 2/2 3/3" in uv_only[0].read_text()

    hwc = np.zeros((4, 6, 3), dtype=np.uint8)
    hwc[..., 1] = 200
    paths = save_obj(tmp_path / "u8.obj", vertices, faces, uvs, uv_faces, texture=hwc)
    with Image.open(paths[2]) as image:
        assert (np.asarray(image) == [0, 200, 0]).all()

    with pytest.raises(ValueError, match="spaces"):
        save_obj(tmp_path / "my mesh.obj", vertices, faces)
    with pytest.raises(ValueError, match="spaces"):
        save_obj(
            tmp_path / "m.obj", vertices, faces, uvs, uv_faces, _texture(), material_name="a b"
        )
    with pytest.raises(ValueError, match="needs uvs"):
        save_obj(tmp_path / "t.obj", vertices, faces, texture=_texture())
    with pytest.raises(ValueError, match="faces index"):
        save_obj(tmp_path / "bad.obj", vertices, faces + 10)
    assert not (tmp_path / "bad.obj").exists() and not (tmp_path / "t.obj").exists()
    _no_temp_files(tmp_path)


def test_failed_write_leaves_no_partial_file(tmp_path, quad, monkeypatch):
    vertices, faces, _, _ = quad
    target = save_obj(tmp_path / "mesh.obj", vertices, faces)[0]
    before = target.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("flamekit.io.mesh_export.os.fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        save_obj(target, vertices * 2, faces)
    with pytest.raises(OSError, match="disk full"):
        save_ply(tmp_path / "mesh.ply", vertices, faces)
    assert target.read_bytes() == before  # the old file is untouched
    assert not (tmp_path / "mesh.ply").exists()
    _no_temp_files(tmp_path)


# --- a small PLY reader, independent of flamekit --------------------------------------------


def _read_ply(path: Path):
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    assert header[0] == "ply" and header[-1] == "end_header"
    fmt = header[1].split()[1]
    counts, props = {}, {}
    current = None
    for line in header:
        parts = line.split()
        if parts[0] == "element":
            current = parts[1]
            counts[current] = int(parts[2])
            props[current] = []
        elif parts[0] == "property":
            props[current].append(parts[1:])
    assert props["face"] == [["list", "uchar", "int", "vertex_indices"]]
    names = [p[-1] for p in props["vertex"]]
    types = [p[0] for p in props["vertex"]]
    nv, nf = counts["vertex"], counts["face"]
    if fmt == "ascii":
        lines = data[end:].decode("ascii").split("\n")
        verts = [[float(x) for x in ln.split()] for ln in lines[:nv]]
        faces = []
        for ln in lines[nv : nv + nf]:
            parts = [int(x) for x in ln.split()]
            assert parts[0] == 3
            faces.append(parts[1:])
        assert all(not ln.strip() for ln in lines[nv + nf :])
    else:
        assert fmt == "binary_little_endian"
        codes = {"float": "f", "uchar": "B"}
        record = "<" + "".join(codes[t] for t in types)
        size = struct.calcsize(record)
        offset = end
        verts = []
        for _ in range(nv):
            verts.append(list(struct.unpack_from(record, data, offset)))
            offset += size
        faces = []
        for _ in range(nf):
            (n,) = struct.unpack_from("<B", data, offset)
            assert n == 3
            faces.append(list(struct.unpack_from("<3i", data, offset + 1)))
            offset += 13
        assert offset == len(data)
    table = np.array(verts, dtype=np.float64)
    return names, types, table, np.array(faces, dtype=np.int64)


@pytest.mark.parametrize("binary", [True, False])
def test_ply_round_trip(tmp_path, quad, binary):
    vertices, faces, _, _ = quad
    colors = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.5, 2.0, -1.0]])
    path = save_ply(tmp_path / "mesh.ply", vertices, faces, colors, binary=binary)
    _no_temp_files(tmp_path)
    names, types, table, read_faces = _read_ply(path)
    assert names == ["x", "y", "z", "red", "green", "blue"]
    assert types == ["float"] * 3 + ["uchar"] * 3
    assert table.shape == (4, 6)
    np.testing.assert_array_equal(table[:, :3].astype(np.float32), vertices.numpy())
    expected = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 255, 0]]  # clamped, rounded
    np.testing.assert_array_equal(table[:, 3:], expected)
    np.testing.assert_array_equal(read_faces, faces.numpy())


def test_ply_without_colors_and_uint8(tmp_path, quad):
    vertices, faces, _, _ = quad
    names, _, table, _ = _read_ply(save_ply(tmp_path / "a.ply", vertices, faces))
    assert names == ["x", "y", "z"] and table.shape == (4, 3)
    u8 = np.full((4, 3), 7, dtype=np.uint8)
    _, _, table, _ = _read_ply(save_ply(tmp_path / "b.ply", vertices, faces, u8, binary=False))
    assert (table[:, 3:] == 7).all()
    with pytest.raises(ValueError, match="vertex_colors"):
        save_ply(tmp_path / "c.ply", vertices, faces, np.zeros((3, 3)))


def test_vertex_colors_from_texture(quad):
    vertices, faces, uvs, uv_faces = quad
    tex = _texture()  # v > 0.5 red, v < 0.5 blue
    colors = vertex_colors_from_texture(tex, uvs, uv_faces, faces, num_vertices=5)
    assert colors.shape == (5, 3) and colors.dtype == torch.float32
    red, blue = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 1.0])
    torch.testing.assert_close(colors[1], blue)  # uv (1, 0)
    torch.testing.assert_close(colors[2], red)  # uv (1, 1)
    torch.testing.assert_close(colors[3], red)  # uv (0, 1)
    torch.testing.assert_close(colors[0], blue)  # seam: (0, 0) and (0.1, 0.1), both blue
    torch.testing.assert_close(colors[4], torch.zeros(3))  # unused vertex

    # seam averaging: vertex 0's two UVs sample red and blue -> purple, each UV counted once
    seam_uvs = uvs.clone()
    seam_uvs[4] = torch.tensor([0.0, 1.0])
    colors = vertex_colors_from_texture(tex, seam_uvs, uv_faces, faces, num_vertices=4)
    torch.testing.assert_close(colors[0], torch.tensor([0.5, 0.0, 0.5]))

    # bilinear: a 1x2 texture (black | white) sampled half way between texel centres -> grey
    ramp = np.zeros((1, 2, 3), dtype=np.uint8)
    ramp[0, 1] = 255
    mid = vertex_colors_from_texture(
        ramp, torch.tensor([[0.5, 0.5], [0.25, 0.5], [0.75, 0.5]]), [[0, 1, 2]], [[0, 1, 2]], 3
    )
    torch.testing.assert_close(mid, torch.tensor([[0.5] * 3, [0.0] * 3, [1.0] * 3]))


def test_flame_topology_round_trip(tmp_path, flame_topology):
    """The real FLAME mesh (5023 vertices, 5118 UVs with seams) survives OBJ and PLY export."""
    mesh = flame_topology
    texture = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    paths = save_obj(
        tmp_path / "head.obj", mesh.vertices, mesh.faces, mesh.uvs, mesh.uv_faces, texture
    )
    back = load_obj(paths[0])
    assert torch.equal(back.vertices, mesh.vertices) and torch.equal(back.faces, mesh.faces)
    assert torch.equal(back.uvs, mesh.uvs) and torch.equal(back.uv_faces, mesh.uv_faces)
    colors = vertex_colors_from_texture(
        texture, mesh.uvs, mesh.uv_faces, mesh.faces, mesh.vertices.shape[0]
    )
    assert colors.shape == (mesh.vertices.shape[0], 3)
    assert 0 <= colors.min() and colors.max() <= 1
    _, _, table, faces = _read_ply(
        save_ply(tmp_path / "head.ply", mesh.vertices, mesh.faces, colors)
    )
    assert table.shape == (mesh.vertices.shape[0], 6)
    np.testing.assert_array_equal(faces, mesh.faces.numpy())
