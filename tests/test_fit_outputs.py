"""What a fit writes for one photo: every file, in the photo's own pixels, never half-written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from flamekit.fitting.crop import CropTransform
from flamekit.fitting.outputs import ImageFitOutput, fit_metrics, write_fit_outputs
from flamekit.io.mesh_export import save_obj
from flamekit.io.obj import load_obj

H, W = 200, 300  # non-square photo
R = 128  # render size, different from the crop size on purpose
PHOTO_RGB = np.array([100, 150, 200], np.uint8)
RENDER_RGB = np.array([0.8, 0.2, 0.1], np.float32)
MASK_ROWS, MASK_COLS = (30, 90), (20, 100)  # render pixels covered: rows 30..89, cols 20..99
SKIN_ROWS, SKIN_COLS = (40, 80), (30, 90)
OFFSET = np.array([1.5, -2.0])  # fitted - detected, original pixels: error 2.5 px


def _fit(textured: bool = True, **changes) -> ImageFitOutput:
    """A synthetic fit: face box off-centre and past the top/right borders of a 300x200 photo."""
    crop = CropTransform(x0=170.3, y0=-20.6, size=150.0, crop_size=256)
    render_crop = crop.resized(R)
    rng = np.random.default_rng(0)
    image = np.empty((H, W, 3), np.uint8)
    image[:] = PHOTO_RGB
    target = rng.uniform([190, 10], [290, 110], size=(68, 2)).astype(np.float32)
    landmarks2d = render_crop.to_crop(target.astype(np.float64) + OFFSET).astype(np.float32)

    mask = np.zeros((R, R), np.float32)
    mask[slice(*MASK_ROWS), slice(*MASK_COLS)] = 1.0
    skin = np.zeros((R, R), bool)
    skin[slice(*SKIN_ROWS), slice(*SKIN_COLS)] = True
    render = mask[..., None] * RENDER_RGB
    vertices = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)
    faces = np.array([[0, 1, 2], [0, 2, 3]], np.int64)
    uvs = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
    texture = np.zeros((8, 8, 3), np.float32)
    texture[:4, :, 0] = 1.0  # top half red
    fields = dict(
        name="photo_01",
        source="/photos/photo_01.jpg",
        image=image,
        crop=crop,
        render_size=R,
        params={
            "identity": rng.normal(size=(10,)).astype(np.float32),
            "expression": rng.normal(size=(5,)).astype(np.float32),
            "global_pose": np.array([0.1, -0.2, 0.05], np.float32),
            "jaw_pose": np.zeros(3, np.float32),
            "camera_scale": np.array([4.5], np.float32),
            "camera_translation": np.array([0.01, -0.02], np.float32),
            "lighting": rng.normal(size=(9, 3)).astype(np.float32),
            "texture_offset": rng.normal(size=(3, 4, 4)).astype(np.float32),
            "steps": np.array([3, 4], np.int64),
        },
        camera={"type": "orthographic", "scale": 4.5, "translation": [0.01, -0.02]},
        landmarks2d=landmarks2d,
        target_landmarks=target,
        render=render,
        render_mask=mask,
        albedo=np.full((R, R, 3), 0.5, np.float32) * mask[..., None],
        shading=np.full((R, R, 3), 1.6, np.float32) * mask[..., None],
        shape_render=np.full((R, R, 3), 0.7, np.float32) * mask[..., None],
        skin_mask=skin,
        vertices=vertices,
        faces=faces,
        uvs=uvs if textured else None,
        uv_faces=faces.copy() if textured else None,
        texture=texture if textured else None,
        metrics={"loss": 0.125, "iterations": 200, "diverged_term": float("nan")},
        meta={"model": "demo-head", "texture_space": "demo", "backend": "torch"},
    )
    fields.update(changes)
    return ImageFitOutput(**fields)


def _no_temp_files(folder: Path) -> None:
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".") or "tmp" in p.name]
    assert not leftovers, leftovers


def _covered_original(fit: ImageFitOutput) -> tuple[np.ndarray, np.ndarray]:
    """Analytic mask.png: the covered render rectangle mapped to photo pixels, and its edge band
    (pixels within one photo pixel of the rectangle's outline)."""
    render_crop = fit.render_transform
    corners = np.array(
        [[MASK_COLS[0] - 0.5, MASK_ROWS[0] - 0.5], [MASK_COLS[1] - 0.5, MASK_ROWS[1] - 0.5]]
    )
    (x0, y0), (x1, y1) = render_crop.to_original(corners)
    yy, xx = np.mgrid[0:H, 0:W]
    inside = (xx > x0) & (xx < x1) & (yy > y0) & (yy < y1)
    edge = (((np.abs(xx - x0) <= 1) | (np.abs(xx - x1) <= 1)) & (yy > y0 - 1) & (yy < y1 + 1)) | (
        ((np.abs(yy - y0) <= 1) | (np.abs(yy - y1) <= 1)) & (xx > x0 - 1) & (xx < x1 + 1)
    )
    return inside, edge


def test_writes_every_file(tmp_path):
    fit = _fit()
    paths = write_fit_outputs(fit, tmp_path)
    folder = tmp_path / "photo_01"
    expected = {
        "params_npz": "params.npz",
        "params_json": "params.json",
        "landmarks2d": "landmarks2d.npy",
        "render": "render.png",
        "mask": "mask.png",
        "mesh": "mesh.obj",
        "mtl": "mesh.mtl",
        "texture": "texture.png",
        "vis": "vis.jpg",
        "metrics": "metrics.json",
    }
    assert {key: path.name for key, path in paths.items()} == expected
    assert all(path.parent == folder and path.is_file() for path in paths.values())
    assert sorted(p.name for p in folder.iterdir()) == sorted(expected.values())
    _no_temp_files(folder)
    # One permission for all (the umask's, like any new file; not mkstemp's private 0600).
    assert len({path.stat().st_mode & 0o777 for path in paths.values()}) == 1


def test_params_npz_and_json(tmp_path):
    fit = _fit()
    paths = write_fit_outputs(fit, tmp_path)
    with np.load(paths["params_npz"], allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(fit.params)
        for key, value in fit.params.items():
            assert npz[key].dtype == value.dtype and np.array_equal(npz[key], value)

    data = json.loads(paths["params_json"].read_text())
    for key, value in fit.params.items():
        assert np.array_equal(np.asarray(data["params"][key], value.dtype), value), key
        assert data["shapes"][key] == list(value.shape)
    assert CropTransform.from_dict(data["crop"]) == fit.crop
    assert CropTransform.from_dict(data["render_transform"]) == fit.crop.resized(R)
    assert data["render_size"] == R and data["image_size"] == [H, W]
    assert data["camera"] == fit.camera and data["meta"] == fit.meta
    assert data["name"] == "photo_01" and data["source"] == "/photos/photo_01.jpg"


def test_landmarks_come_back_in_original_pixels(tmp_path):
    fit = _fit()
    paths = write_fit_outputs(fit, tmp_path)
    landmarks = np.load(paths["landmarks2d"])
    assert landmarks.dtype == np.float32 and landmarks.shape == (68, 2)
    expected = fit.target_landmarks.astype(np.float64) + OFFSET  # what the fit was built from
    np.testing.assert_allclose(landmarks, expected, atol=1e-3)
    # render px -> crop px -> original px is the same as render px -> original px.
    crop_px = (fit.landmarks2d.astype(np.float64) + 0.5) * fit.crop.crop_size / R - 0.5
    np.testing.assert_allclose(fit.crop.to_original(crop_px), expected, atol=1e-3)


def test_render_and_mask_at_original_resolution(tmp_path):
    fit = _fit()
    paths = write_fit_outputs(fit, tmp_path)
    with Image.open(paths["mask"]) as image:
        assert image.mode == "L" and image.size == (W, H)
        mask = np.asarray(image)
    assert set(np.unique(mask).tolist()) == {0, 255}
    inside, edge = _covered_original(fit)
    assert inside.sum() > 1000
    assert np.array_equal(mask[~edge] == 255, inside[~edge])

    with Image.open(paths["render"]) as image:
        assert image.mode == "RGB" and image.size == (W, H)
        render = np.asarray(image)
    colour = np.round(RENDER_RGB * 255).astype(np.uint8)
    assert (render[inside & ~edge] == colour).all()
    assert (render[~inside & ~edge] == PHOTO_RGB).all()


def test_mesh_obj_mtl_texture(tmp_path):
    fit = _fit()
    paths = write_fit_outputs(fit, tmp_path)
    mesh = load_obj(paths["mesh"])
    np.testing.assert_array_equal(mesh.vertices.numpy(), fit.vertices)
    np.testing.assert_array_equal(mesh.faces.numpy(), fit.faces)
    np.testing.assert_array_equal(mesh.uvs.numpy(), fit.uvs)
    assert "mtllib mesh.mtl" in paths["mesh"].read_text().splitlines()
    assert "map_Kd texture.png" in paths["mtl"].read_text().splitlines()
    with Image.open(paths["texture"]) as image:
        assert image.size == (8, 8)
        pixels = np.asarray(image)
    assert (pixels[:4] == [255, 0, 0]).all() and (pixels[4:] == 0).all()


def test_vis_and_metrics(tmp_path):
    fit = _fit()
    paths = write_fit_outputs(fit, tmp_path, jpeg_quality=80, vis_height=192)
    with Image.open(paths["vis"]) as image:
        assert image.format == "JPEG" and image.mode == "RGB"
        assert image.height == 192 and image.width >= 6 * 192
        vis = np.asarray(image).astype(int)
    # The landmarks panel shows the photo colour and both green and red dots.
    first = vis[:, :192]
    assert (np.abs(first - PHOTO_RGB).sum(axis=-1) < 20).mean() > 0.5
    assert ((first[..., 1] > 180) & (first[..., 0] < 80)).any()
    assert ((first[..., 0] > 200) & (first[..., 1] < 90)).any()

    metrics = json.loads(paths["metrics"].read_text())
    assert metrics["name"] == "photo_01"
    assert metrics["loss"] == 0.125 and metrics["iterations"] == 200
    assert metrics["diverged_term"] is None  # NaN is not JSON
    assert metrics["landmark_error_px"] == pytest.approx(2.5, abs=1e-3)
    assert metrics["landmark_error_max_px"] == pytest.approx(2.5, abs=1e-3)
    expected = float(np.abs(RENDER_RGB - PHOTO_RGB / 255.0).mean())
    assert metrics["photometric_error"] == pytest.approx(expected, abs=1e-3)
    skin_pixels = (SKIN_ROWS[1] - SKIN_ROWS[0]) * (SKIN_COLS[1] - SKIN_COLS[0])
    assert metrics["photometric_pixels"] == skin_pixels


def test_photometric_error_without_skin_mask_or_coverage():
    fit = _fit(skin_mask=None)
    covered = (MASK_ROWS[1] - MASK_ROWS[0]) * (MASK_COLS[1] - MASK_COLS[0])
    assert fit_metrics(fit)["photometric_pixels"] == covered
    empty = _fit(render_mask=np.zeros((R, R), np.float32))
    metrics = fit_metrics(empty)
    assert metrics["photometric_error"] is None and metrics["photometric_pixels"] == 0


def test_untextured_rewrite_replaces_the_textured_files(tmp_path):
    write_fit_outputs(_fit(), tmp_path)
    paths = write_fit_outputs(_fit(textured=False, skin_mask=None), tmp_path)
    folder = tmp_path / "photo_01"
    assert "mtl" not in paths and "texture" not in paths
    assert not (folder / "mesh.mtl").exists() and not (folder / "texture.png").exists()
    text = paths["mesh"].read_text()
    assert "mtllib" not in text and "vt " not in text
    assert load_obj(paths["mesh"]).uvs is None
    _no_temp_files(folder)


def test_interrupted_write_leaves_no_partial_file(tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np.lib.format, "write_array", interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_fit_outputs(_fit(), tmp_path)
    folder = tmp_path / "photo_01"
    assert list(folder.iterdir()) == []  # neither params.npz nor its temporary file

    # Interrupting a rewrite keeps the earlier complete files, but not its completion marker.
    monkeypatch.undo()
    write_fit_outputs(_fit(), tmp_path)
    monkeypatch.setattr(np.lib.format, "write_array", interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_fit_outputs(_fit(), tmp_path)
    assert not (folder / "metrics.json").exists()
    monkeypatch.undo()
    with np.load(folder / "params.npz") as npz:
        assert "identity" in npz.files
    _no_temp_files(folder)


def test_accepts_tensors_and_checks_shapes():
    fit = _fit(
        render=torch.zeros(R, R, 3),
        landmarks2d=torch.zeros(68, 2, requires_grad=True),
        params={"identity": torch.ones(3)},
    )
    assert isinstance(fit.render, np.ndarray) and isinstance(fit.params["identity"], np.ndarray)
    with pytest.raises(ValueError, match="render must be"):
        _fit(render=np.zeros((R, R + 1, 3), np.float32))
    with pytest.raises(ValueError, match="target_landmarks"):
        _fit(target_landmarks=np.zeros((5, 2), np.float32))
    with pytest.raises(ValueError, match="image"):
        _fit(image=np.zeros((H, W, 3), np.float32))
    with pytest.raises(ValueError, match="name"):
        _fit(name="../escape")
    with pytest.raises(ValueError, match="together"):
        _fit(uv_faces=None)


def test_save_obj_texture_name(tmp_path):
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    faces = np.array([[0, 1, 2]])
    uvs = np.array([[0, 0], [1, 0], [0, 1]], np.float32)
    texture = np.zeros((2, 2, 3), np.float32)
    default = save_obj(tmp_path / "a.obj", vertices, faces, uvs, texture=texture)
    assert [p.name for p in default] == ["a.obj", "a.mtl", "a.png"]  # unchanged default
    named = save_obj(
        tmp_path / "b.obj", vertices, faces, uvs, texture=texture, texture_name="t.png"
    )
    assert [p.name for p in named] == ["b.obj", "b.mtl", "t.png"]
    assert "map_Kd t.png" in named[1].read_text().splitlines()
    for bad in ("sub/t.png", "t.jpg", "my texture.png"):
        with pytest.raises(ValueError):
            save_obj(tmp_path / "c.obj", vertices, faces, uvs, texture=texture, texture_name=bad)
    assert not (tmp_path / "c.obj").exists()
