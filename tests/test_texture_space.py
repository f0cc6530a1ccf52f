"""Texture spaces: every file format gives the same RGB albedo for the same coefficients."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from flamekit.model import texture_space as ts
from flamekit.model.data import FlameFileError
from flamekit.model.texture_space import (
    TextureSpace,
    export_flame_texture_npz,
    load_texture_space,
    save_texture_space,
)

H = W = 8
K = 3


@pytest.fixture(scope="module")
def truth():
    """RGB ground truth: mean [3,H,W] in 0.2..0.8, components [K,3,H,W], plus a UV layout."""
    rng = np.random.default_rng(0)
    mean = rng.uniform(0.2, 0.8, size=(3, H, W))
    comps = rng.normal(0.0, 0.05, size=(K, 3, H, W))
    vt = rng.uniform(0, 1, size=(6, 2)).astype(np.float32)
    ft = np.array([[0, 1, 2], [3, 4, 5]], dtype=np.int64)
    return mean, comps, vt, ft


def _to_hwc_bgr(mean: np.ndarray, comps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RGB channel-first -> the original files' (H,W,3) BGR mean and (H,W,3,K) basis."""
    return mean[::-1].transpose(1, 2, 0), comps[:, ::-1].transpose(2, 3, 1, 0)


def write_flame(path, mean, comps, vt=None, ft=None, compressed=False):
    m, d = _to_hwc_bgr(mean, comps)
    extra = {} if vt is None else {"vt": vt, "ft": ft}
    saver = np.savez_compressed if compressed else np.savez
    saver(path, mean=m * 255.0, tex_dir=d * 255.0, **extra)
    return path


def write_bfm(path, mean, comps):
    m, d = _to_hwc_bgr(mean, comps)
    np.savez(path, MU=m.reshape(1, -1), PC=d.reshape(-1, comps.shape[0]))
    return path


def write_flamekit(path, mean, comps, vt, ft, version=1):
    np.savez(
        path,
        format=np.array("flamekit-texture-space"),
        version=np.array(version),
        mean=mean.astype(np.float32),
        components=comps.astype(np.float32),
        std=np.array([3.0, 2.0, 1.0], dtype=np.float32),
        vt=vt,
        ft=ft,
        provenance=np.array(json.dumps({"images": 12, "built_by": "test"})),
    )
    return path


def expected(mean, comps, coeffs: torch.Tensor) -> torch.Tensor:
    m = torch.from_numpy(mean).float()
    c = torch.from_numpy(comps).float()
    k = coeffs.shape[1]
    return m[None] + torch.einsum("bk,kchw->bchw", coeffs, c[:k])


def test_all_formats_agree(tmp_path, truth):
    mean, comps, vt, ft = truth
    files = {
        "FLAME_texture": write_flame(tmp_path / "a.npz", mean, comps, vt, ft),
        "FLAME_albedo_from_BFM": write_bfm(tmp_path / "b.npz", mean, comps),
        "flamekit-texture-space": write_flamekit(tmp_path / "c.npz", mean, comps, vt, ft),
    }
    coeffs = torch.tensor([[0.5, -1.0, 2.0], [0.0, 0.3, -0.7]])
    want = expected(mean, comps, coeffs)
    for fmt, path in files.items():
        space = load_texture_space(path)
        assert space.format == fmt
        assert space.num_components == K
        assert space.resolution == (H, W)
        assert space.source == str(path)
        out = space(coeffs)
        assert out.shape == (2, 3, H, W)
        torch.testing.assert_close(out, want, atol=1e-6, rtol=0)
        mean_map = torch.from_numpy(mean).float().expand(2, -1, -1, -1)
        torch.testing.assert_close(space.mean_map(2), mean_map, atol=1e-6, rtol=0)
    assert load_texture_space(files["FLAME_albedo_from_BFM"]).uvs is None
    flame = load_texture_space(files["FLAME_texture"])
    assert flame.uvs.dtype == torch.float32 and flame.uv_faces.dtype == torch.int64
    np.testing.assert_array_equal(flame.uv_faces.numpy(), ft)
    assert flame.std is None


def test_bgr_pure_red(tmp_path):
    red = np.zeros((3, H, W))
    red[0] = 1.0
    path = write_flame(tmp_path / "red.npz", red, np.zeros((1, 3, H, W)))
    raw = np.load(path)["mean"]
    assert raw[..., 2].min() == 255 and raw[..., :2].max() == 0  # stored BGR
    space = load_texture_space(path)
    assert torch.equal(space.mean[0], torch.ones(H, W))
    assert torch.equal(space.mean[1:], torch.zeros(2, H, W))


def test_gradients_reach_coeffs_and_no_clamp(tmp_path, truth):
    mean, comps, vt, ft = truth
    space = load_texture_space(write_flame(tmp_path / "a.npz", mean, comps, vt, ft))
    coeffs = torch.full((1, K), 100.0, requires_grad=True)  # far outside 0..1
    out = space(coeffs)
    assert out.abs().max() > 1.0  # not clamped
    out.sum().backward()
    assert coeffs.grad is not None and coeffs.grad.abs().min() > 0


def test_fewer_coefficients_are_zero_padded(tmp_path, truth):
    mean, comps, vt, ft = truth
    space = load_texture_space(write_bfm(tmp_path / "b.npz", mean, comps))
    short = torch.tensor([[0.4]])
    padded = torch.tensor([[0.4, 0.0, 0.0]])
    torch.testing.assert_close(space(short), space(padded))
    torch.testing.assert_close(space(torch.zeros(2, 0)), space.mean_map(2))
    with pytest.raises(ValueError, match="only 3"):
        space(torch.zeros(1, K + 1))
    with pytest.raises(ValueError, match=r"\[B,K\]"):
        space(torch.zeros(K))


def test_num_components_and_resolution(tmp_path, truth):
    mean, comps, vt, ft = truth
    path = write_flame(tmp_path / "a.npz", mean, comps, vt, ft)
    two = load_texture_space(path, num_components=2)
    assert two.num_components == 2
    torch.testing.assert_close(
        two.components, torch.from_numpy(comps[:2]).float(), atol=1e-6, rtol=0
    )
    with pytest.raises(FlameFileError, match="only 3"):
        load_texture_space(path, num_components=4)

    small = load_texture_space(path, resolution=4)
    assert small.resolution == (4, 4) and small.components.shape == (K, 3, 4, 4)
    ref = F.interpolate(
        torch.from_numpy(mean).float()[None], size=(4, 4), mode="bilinear", antialias=True
    )
    torch.testing.assert_close(small.mean[None], ref, atol=1e-6, rtol=0)
    big = load_texture_space(path, resolution=16, dtype=torch.float64)
    assert big.resolution == (16, 16) and big.mean.dtype == torch.float64
    # resizing is linear: the resized map of coefficients is the resized full-res map
    c = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    full = load_texture_space(path, dtype=torch.float64)(c)
    torch.testing.assert_close(
        big(c), F.interpolate(full, size=(16, 16), mode="bilinear"), atol=1e-9, rtol=0
    )


def test_streaming_in_small_chunks(tmp_path, truth, monkeypatch):
    mean, comps, vt, ft = truth
    monkeypatch.setattr(ts, "_CHUNK_BYTES", 1)  # one image row / component per chunk
    coeffs = torch.tensor([[0.1, 0.2, -0.3]])
    for path in (
        write_flame(tmp_path / "a.npz", mean, comps, vt, ft, compressed=True),
        write_flamekit(tmp_path / "c.npz", mean, comps, vt, ft),
    ):
        space = load_texture_space(path, num_components=K)
        torch.testing.assert_close(space(coeffs), expected(mean, comps, coeffs), atol=1e-6, rtol=0)


def test_bad_files(tmp_path, truth):
    mean, comps, vt, ft = truth
    missing = tmp_path / "FLAME_texture.npz"
    with pytest.raises(FlameFileError, match="flame.is.tue.mpg.de") as info:
        load_texture_space(missing)
    assert str(missing) in str(info.value) and "flamekit models add" in str(info.value)

    unknown = tmp_path / "unknown.npz"
    np.savez(unknown, foo=np.zeros(3), bar=np.ones(2))
    with pytest.raises(FlameFileError) as info:
        load_texture_space(unknown)
    message = str(info.value)
    assert "unknown.npz" in message and "'foo'" in message and "tex_dir" in message

    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip file at all" * 10)
    with pytest.raises(FlameFileError, match="garbage.npz"):
        load_texture_space(garbage)

    good = write_flame(tmp_path / "good.npz", mean, comps)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(FlameFileError, match="truncated.npz"):
        load_texture_space(truncated)

    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(FlameFileError, match="single.npy"):
        load_texture_space(single)

    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, mean=np.array([{"a": 1}], dtype=object), tex_dir=np.zeros((4, 1)))
    with pytest.raises(FlameFileError, match="pickled.npz"):
        load_texture_space(pickled)

    not_square = tmp_path / "not_square.npz"
    np.savez(not_square, mean=np.zeros(3 * 8 * 6), tex_dir=np.zeros((3 * 8 * 6, 2)))
    with pytest.raises(FlameFileError, match="not_square.npz.*3\\*H\\*H"):
        load_texture_space(not_square)

    bad_basis = tmp_path / "bad_basis.npz"
    np.savez(bad_basis, MU=np.zeros(3 * 4 * 4), PC=np.zeros((3 * 4 * 4 + 1, 2)))
    with pytest.raises(FlameFileError, match="bad_basis.npz.*'PC'"):
        load_texture_space(bad_basis)

    future = write_flamekit(tmp_path / "future.npz", mean, comps, vt, ft, version=2)
    with pytest.raises(FlameFileError, match="future.npz.*newer flamekit"):
        load_texture_space(future)


def test_flamekit_round_trip(tmp_path, truth):
    mean, comps, vt, ft = truth
    space = TextureSpace(
        torch.from_numpy(mean).float(),
        torch.from_numpy(comps).float(),
        std=torch.tensor([3.0, 2.0, 1.0]),
        uvs=torch.from_numpy(vt),
        uv_faces=torch.from_numpy(ft),
        provenance={"method": "pca", "images": 7},
    )
    path = save_texture_space(space, tmp_path / "sub" / "space.npz")
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == ["space.npz"]
    back = load_texture_space(path)
    assert back.format == "flamekit-texture-space"
    for name in ("mean", "components", "std", "uvs", "uv_faces"):
        assert torch.equal(getattr(back, name), getattr(space, name)), name
    assert back.provenance["method"] == "pca" and back.provenance["images"] == 7
    assert "flamekit_version" in back.provenance and "saved_at" in back.provenance
    head = load_texture_space(path, num_components=1)
    assert head.std.tolist() == [3.0]

    no_std = TextureSpace(space.mean, space.components)
    again = load_texture_space(save_texture_space(no_std, tmp_path / "plain.npz"))
    assert again.std is None and again.uvs is None


def test_export_flame_layout_round_trip(tmp_path, truth):
    mean, comps, vt, ft = truth
    space = load_texture_space(write_flamekit(tmp_path / "c.npz", mean, comps, vt, ft))
    path = export_flame_texture_npz(space, tmp_path / "FLAME_texture_like.npz")
    with np.load(path) as data:
        assert set(data.files) == {"mean", "tex_dir", "vt", "ft"}
        assert data["mean"].shape == (H, W, 3) and data["tex_dir"].shape == (H, W, 3, K)
        assert data["mean"].max() > 1.0  # 0..255
        np.testing.assert_allclose(data["mean"][..., 2] / 255.0, mean[0], atol=1e-6)  # BGR
    back = load_texture_space(path)
    assert back.format == "FLAME_texture"
    coeffs = torch.tensor([[1.0, -0.5, 0.25]])
    torch.testing.assert_close(back(coeffs), space(coeffs), atol=1e-6, rtol=0)
    assert torch.equal(back.uv_faces, space.uv_faces)
