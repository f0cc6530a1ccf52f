"""``flamekit init-space``: coloured meshes (PLY, OBJ, BFM .h5) -> an initial texture space."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flamekit.texture.init_space import (
    MeshReadError,
    closest_points_on_mesh,
    init_space,
    read_colored_mesh,
    read_colored_obj,
    read_ply,
    vertex_colors_to_uv,
)
from tests.conftest import requires_extension

# --------------------------------------------------------------------------- writers


def write_ply(path, vertices, faces, colors, binary=False, float_colors=False):
    """A minimal PLY writer (ascii or binary little-endian; uchar or float colours)."""
    ctype = "float" if float_colors else "uchar"
    header = [
        "ply",
        f"format {'binary_little_endian' if binary else 'ascii'} 1.0",
        "comment made by test_init_space",
        f"element vertex {len(vertices)}",
        "property float x",
        "property float y",
        "property float z",
        f"property {ctype} red",
        f"property {ctype} green",
        f"property {ctype} blue",
        f"element face {len(faces)}",
        "property list uchar int vertex_indices",
        "end_header",
    ]
    cols = colors if float_colors else np.round(colors * 255).astype(np.uint8)
    with open(path, "wb") as handle:
        handle.write(("\n".join(header) + "\n").encode("ascii"))
        if binary:
            vdt = np.dtype([("p", "<f4", 3), ("c", "<f4" if float_colors else "u1", 3)])
            rec = np.empty(len(vertices), vdt)
            rec["p"], rec["c"] = vertices, cols
            handle.write(rec.tobytes())
            fdt = np.dtype([("n", "u1"), ("i", "<i4", 3)])
            frec = np.empty(len(faces), fdt)
            frec["n"], frec["i"] = 3, faces
            handle.write(frec.tobytes())
        else:
            lines = [
                " ".join(map(str, [*v, *c]))
                for v, c in zip(vertices.tolist(), cols.tolist(), strict=True)
            ]
            lines += [f"3 {a} {b} {c}" for a, b, c in faces.tolist()]
            handle.write(("\n".join(lines) + "\n").encode("ascii"))


def write_colored_obj(path, vertices, faces, colors):
    with open(path, "w") as handle:
        for v, c in zip(vertices.tolist(), colors.tolist(), strict=True):
            handle.write("v {:.7f} {:.7f} {:.7f} {:.6f} {:.6f} {:.6f}\n".format(*v, *c))
        for a, b, c in (faces + 1).tolist():
            handle.write(f"f {a} {b} {c}\n")


def smooth_colors(points, centre):
    """Known smooth RGB colours (0.1..0.9) as a function of position (metres)."""
    p = (points - centre) * 10.0
    return np.stack(
        [
            0.5 + 0.4 * np.sin(p[:, 0]),
            0.5 + 0.4 * np.cos(0.8 * p[:, 1]),
            0.5 + 0.4 * np.sin(0.6 * (p[:, 0] + p[:, 2])),
        ],
        axis=1,
    )


# --------------------------------------------------------------------------- readers


def _quad_mesh():
    vertices = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=np.float64)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    colors = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], dtype=np.float64)
    return vertices, faces, colors


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("float_colors", [False, True])
def test_read_ply(tmp_path, binary, float_colors):
    vertices, faces, colors = _quad_mesh()
    path = tmp_path / "quad.ply"
    write_ply(path, vertices, faces, colors, binary=binary, float_colors=float_colors)
    mesh = read_ply(path)
    np.testing.assert_allclose(mesh.vertices, vertices)
    np.testing.assert_array_equal(mesh.faces, faces)
    np.testing.assert_allclose(mesh.colors, colors, atol=1e-6)


def test_read_ply_polygon_and_errors(tmp_path):
    path = tmp_path / "quad.ply"
    path.write_text(
        "ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\n"
        "property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\n"
        "element face 1\nproperty list uchar int vertex_index\nend_header\n"
        "0 0 0 255 0 0\n1 0 0 0 255 0\n1 1 0 0 0 255\n0 1 0 255 255 255\n4 0 1 2 3\n"
    )
    mesh = read_ply(path)
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3]])
    (tmp_path / "nocolor.ply").write_text(
        "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
        "property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n"
        "0 0 0\n1 0 0\n1 1 0\n3 0 1 2\n"
    )
    with pytest.raises(MeshReadError, match="nocolor.ply.*no per-vertex colours"):
        read_ply(tmp_path / "nocolor.ply")
    (tmp_path / "bad.ply").write_text("not a ply\n")
    with pytest.raises(MeshReadError, match="bad.ply"):
        read_colored_mesh(tmp_path / "bad.ply")
    with pytest.raises(MeshReadError, match="missing.obj"):
        read_colored_mesh(tmp_path / "missing.obj")


def test_read_colored_obj(tmp_path):
    vertices, faces, colors = _quad_mesh()
    path = tmp_path / "quad.obj"
    write_colored_obj(path, vertices, faces, colors)
    mesh = read_colored_obj(path)
    np.testing.assert_allclose(mesh.vertices, vertices)
    np.testing.assert_array_equal(mesh.faces, faces)
    np.testing.assert_allclose(mesh.colors, colors, atol=1e-6)
    # f v/vt/vn records and quads; a mesh without colours is rejected
    path.write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\nf 1/1 2/1 3/1 4/1\n")
    with pytest.raises(MeshReadError, match="quad.obj.*no per-vertex colours"):
        read_colored_obj(path)


def test_closest_points_on_mesh():
    vertices, faces, _ = _quad_mesh()
    queries = np.array([[0.25, 0.5, 0.3], [2.0, 0.5, 0.0], [-1.0, -1.0, 1.0]])
    points, _, bary, dist = closest_points_on_mesh(queries, vertices, faces, k=4)
    np.testing.assert_allclose(points, [[0.25, 0.5, 0], [1, 0.5, 0], [0, 0, 0]], atol=1e-12)
    np.testing.assert_allclose(dist, [0.3, 1.0, np.sqrt(3)], atol=1e-12)
    np.testing.assert_allclose(bary.sum(1), 1.0)


def test_bfm_h5(tmp_path):
    h5py = pytest.importorskip("h5py")
    vertices, faces, colors = _quad_mesh()
    basis = np.linalg.qr(np.random.default_rng(0).normal(size=(12, 2)))[0]
    path = tmp_path / "bfm.h5"
    with h5py.File(path, "w") as f:
        f["shape/model/mean"] = vertices.ravel().astype(np.float32)
        f["shape/representer/cells"] = faces.T.astype(np.uint32)
        f["color/model/mean"] = colors.ravel().astype(np.float32)
        f["color/model/pcaBasis"] = basis.astype(np.float32)
        f["color/model/pcaVariance"] = np.array([0.04, 0.01], dtype=np.float32)
    mesh = read_colored_mesh(path)
    np.testing.assert_array_equal(mesh.faces, faces)
    np.testing.assert_allclose(mesh.colors, colors, atol=1e-6)
    assert mesh.color_basis.shape == (2, 4, 3)
    np.testing.assert_allclose(mesh.color_basis[1].ravel(), basis[:, 1], atol=1e-6)


def test_h5_without_h5py_names_the_fix(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "h5py":
            raise ImportError("no h5py")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    path = tmp_path / "model.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n")
    with pytest.raises(MeshReadError, match="model.h5.*pip install h5py"):
        read_colored_mesh(path)


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def flame_with_uvs(shared_data):
    from flamekit.model import FlameModel, load_flame, load_landmark_embedding
    from flamekit.model.uv import load_uv_layout

    template = shared_data / "flame_topology" / "head_template_mesh.obj"
    data = load_flame(shared_data / "flame_test_model" / "flame2023_open_test.pkl")
    embedding = load_landmark_embedding(shared_data / "flame_topology" / "landmark_embedding.npz")
    layout = load_uv_layout(template)
    model = FlameModel(data, embedding)
    model.set_uv_layout(layout.uvs, layout.uv_faces)
    return model


@pytest.fixture(scope="module")
def template(shared_data):
    from flamekit.io.obj import load_obj

    mesh = load_obj(shared_data / "flame_topology" / "head_template_mesh.obj")
    vertices = mesh.vertices.double().numpy()
    return vertices, mesh.faces.numpy(), vertices.mean(0)


def _expected_map(model, colors, size):
    maps, mask = vertex_colors_to_uv(
        torch.from_numpy(colors).float(), model.faces, model.uvs, model.uv_faces, size
    )
    return maps, mask


@requires_extension
@pytest.mark.parametrize("fmt", ["ply", "obj"])
def test_flame_topology_direct(tmp_path, flame_with_uvs, template, fmt):
    from flamekit.model import load_texture_space

    vertices, faces, centre = template
    colors = smooth_colors(vertices, centre)
    path = tmp_path / f"head.{fmt}"
    if fmt == "ply":
        write_ply(path, vertices, faces, colors, binary=True, float_colors=True)
    else:
        write_colored_obj(path, vertices, faces, colors)
    result = init_space(
        path, tmp_path / "space.npz", model=flame_with_uvs, texture_size=256, progress=False
    )
    assert result.correspondence == "direct"
    expected, mask = _expected_map(flame_with_uvs, colors, 256)
    err = (result.space.mean - expected).abs()[:, mask].mean().item()
    assert err < 0.02, err
    space = load_texture_space(result.path)
    assert space.num_components == 0 and space.resolution == (256, 256)
    assert space.provenance["source_file"].endswith(f"head.{fmt}")
    assert space.uv_faces is not None
    # texels outside the atlas were filled (no black border)
    assert space.mean[:, ~mask].min() > 0.05


def _subdivide(vertices, faces):
    """Split every triangle in four (edge midpoints): same surface, different topology."""
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    unique, inverse = np.unique(edges, axis=0, return_inverse=True)
    mid = len(vertices) + inverse.reshape(-1, 3)
    new_vertices = np.concatenate([vertices, vertices[unique].mean(1)])
    a, b, c = faces.T
    ab, bc, ca = mid.T
    new_faces = np.concatenate(
        [np.stack(t, 1) for t in ((a, ab, ca), (ab, b, bc), (ca, bc, c), (ab, bc, ca))]
    )
    return new_vertices, new_faces


@requires_extension
def test_other_topology_fit(tmp_path, flame_with_uvs, template):
    vertices, faces, centre = template
    sub_v, sub_f = _subdivide(vertices, faces)
    path = tmp_path / "scan.ply"
    write_ply(path, sub_v, sub_f, smooth_colors(sub_v, centre), binary=True, float_colors=True)
    result = init_space(
        path,
        tmp_path / "space.npz",
        model=flame_with_uvs,
        texture_size=256,
        progress=False,
        steps=120,
    )
    assert result.correspondence == "fit"
    expected, mask = _expected_map(flame_with_uvs, smooth_colors(vertices, centre), 256)
    err = (result.space.mean - expected).abs()[:, mask].mean().item()
    print(f"fit residual {result.fit_residual_mm:.2f} mm, UV mean abs error {err:.4f}")
    assert result.fit_residual_mm < 3.0
    assert err < 0.02, err


# --------------------------------------------------------------------------- CLI


def _cli():
    import typer

    from flamekit_cli.init_space_cmd import init_space_command

    app = typer.Typer()
    app.command("init-space")(init_space_command)
    app.command("unused")(lambda: None)  # two commands: the first is addressed by name
    return app


def test_cli_bad_input_exits_2(tmp_path):
    from typer.testing import CliRunner

    bad = tmp_path / "broken.ply"
    bad.write_text("ply\nformat ascii 1.0\nend_header\n")
    runner = CliRunner()
    for path in (bad, tmp_path / "absent.obj"):
        result = runner.invoke(_cli(), ["init-space", str(path), "--out", str(tmp_path / "s.npz")])
        assert result.exit_code == 2, result.output
        assert path.name in result.output


@requires_extension
def test_cli_demo_head(tmp_path, monkeypatch):
    """No FLAME registered: the demo head's own coloured mesh maps vertex to vertex."""
    from typer.testing import CliRunner

    from flamekit.model import load_texture_space
    from flamekit.model.registry import DemoHeadWarning, load_head

    monkeypatch.setenv("FLAMEKIT_HOME", str(tmp_path / "home"))
    for name in ("FLAMEKIT_MODEL", "FLAMEKIT_LANDMARKS", "FLAMEKIT_TEXTURE_SPACE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.warns(DemoHeadWarning):
        head = load_head()
    vertices = head.v_template.double().numpy()
    faces = head.faces.numpy()
    colors = smooth_colors(vertices, vertices.mean(0))
    path = tmp_path / "demo.obj"
    write_colored_obj(path, vertices, faces, colors)
    out = tmp_path / "space.npz"
    with pytest.warns(DemoHeadWarning):
        result = CliRunner().invoke(
            _cli(), ["init-space", str(path), "-o", str(out), "--texture-size", "128", "-q"]
        )
    assert result.exit_code == 0, result.output
    assert "correspondence direct" in result.output
    space = load_texture_space(out)
    expected, mask = _expected_map(head, colors, 128)
    assert (space.mean - expected).abs()[:, mask].mean().item() < 0.02
