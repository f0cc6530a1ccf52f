"""`flamekit fit` end to end: real photos, outputs in original pixels, CLI behaviour, demo."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from flamekit.fitting.config import load_config
from flamekit.fitting.pipeline import fit_images
from flamekit_cli.main import app
from tests.conftest import requires_extension

runner = CliRunner()
FAST = [
    "-s",
    "stages.rigid.iterations=30",
    "-s",
    "stages.full.iterations=30",
    "-s",
    "render_size=96",
    "-s",
    "crop_size=128",
]


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("FLAMEKIT_HOME", str(tmp_path / "home"))  # nothing registered
    for name in ("FLAMEKIT_MODEL", "FLAMEKIT_LANDMARKS", "FLAMEKIT_TEXTURE_SPACE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "home"


@requires_extension
@pytest.mark.slow
def test_real_photos_with_the_shared_model(shared_data, tmp_path):
    """Ten FFHQ photos, stored landmarks and masks, the FLAME-format test model."""
    from flamekit.model import FlameModel, load_flame, load_landmark_embedding
    from flamekit.model.uv import load_uv_layout

    data = load_flame(shared_data / "flame_test_model" / "flame2023_open_test.pkl")
    layout = load_uv_layout(shared_data / "flame_topology" / "head_template_mesh.obj")
    data.uvs, data.uv_faces = layout.uvs_numpy(), layout.uv_faces_numpy()
    embedding = load_landmark_embedding(shared_data / "flame_topology" / "landmark_embedding.npz")
    head = FlameModel(data, embedding, num_identity=100, num_expression=50)
    faces = shared_data / "faces"
    photos = sorted(str(p) for p in faces.glob("ffhq_?????.png"))
    assert len(photos) == 10
    summary = fit_images(
        photos,
        load_config(),
        tmp_path,
        landmarks=faces,
        masks=faces,
        batch_size=10,
        progress=False,
        head=head,
    )
    assert summary.ok, summary.format()
    landmark = [r.metrics["landmark_error_px"] for r in summary.results.values()]
    photometric = [r.metrics["photometric_error"] for r in summary.results.values()]
    assert np.mean(landmark) < 3.2, landmark
    assert np.mean(photometric) < 0.05, photometric


def _off_centre_photo(shared_data, tmp_path):
    """A 400x300 canvas with a shared face pasted off-centre at half size, with its files."""
    face = Image.open(shared_data / "faces" / "ffhq_00002.png").convert("RGB")
    landmarks = np.load(shared_data / "faces" / "ffhq_00002_lmk68.npy")
    skin = Image.open(shared_data / "faces" / "ffhq_00002_skin.png").convert("L")
    canvas = Image.new("RGB", (400, 300), (40, 60, 90))
    mask = Image.new("L", (400, 300), 0)
    size, x0, y0 = 180, 200, 30
    canvas.paste(face.resize((size, size), Image.BILINEAR), (x0, y0))
    mask.paste(skin.resize((size, size), Image.NEAREST), (x0, y0))
    scale = size / 256
    moved = (landmarks + 0.5) * scale - 0.5 + np.array([x0, y0])
    canvas.save(tmp_path / "wide.png")
    mask.save(tmp_path / "wide_skin.png")
    np.save(tmp_path / "wide_lmk68.npy", moved.astype(np.float32))
    return tmp_path / "wide.png", moved


@requires_extension
def test_outputs_are_in_original_image_pixels(shared_data, tmp_path, home):
    photo, landmarks = _off_centre_photo(shared_data, tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "fit",
            str(photo),
            "--out",
            str(out),
            "--landmarks",
            str(tmp_path),
            "--mask",
            str(tmp_path),
            "-q",
            "--texture-size",
            "64",
            "-s",
            "stages.full.iterations=150",
            "-s",
            "render_size=128",
        ],
    )
    assert result.exit_code == 0, result.output
    folder = out / "wide"
    fitted = np.load(folder / "landmarks2d.npy")
    assert fitted.dtype == np.float32 and fitted.shape == (68, 2)
    # The demo head fitted briefly lands near the real landmarks in the canvas's pixels.
    assert np.linalg.norm(fitted - landmarks, axis=1).mean() < 8.0
    render = np.asarray(Image.open(folder / "render.png"))
    mask = np.asarray(Image.open(folder / "mask.png"))
    assert render.shape == (300, 400, 3) and mask.shape == (300, 400)
    ys, xs = np.nonzero(mask == 255)
    assert xs.min() > 150 and ys.max() < 280  # the head is where the face was pasted
    assert set(np.unique(mask)) <= {0, 255}
    texture = np.asarray(Image.open(folder / "texture.png"))
    assert texture.shape == (64, 64, 3)
    mtl = (folder / "mesh.mtl").read_text()
    assert "map_Kd texture.png" in mtl
    params = json.loads((folder / "params.json").read_text())
    assert params["camera"]["type"] == "orthographic"
    with np.load(folder / "params.npz") as npz:
        assert npz["identity"].ndim == 1 and npz["global_pose"].shape == (3,)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["iterations"] == {"rigid": 200, "full": 150}
    assert metrics["device"] == "cpu" and metrics["seconds"] > 0
    assert Image.open(folder / "vis.jpg").size[1] > 100


@requires_extension
def test_a_bad_image_does_not_stop_the_others(shared_data, tmp_path, home):
    faces = shared_data / "faces"
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    result = runner.invoke(
        app,
        [
            "fit",
            str(faces / "ffhq_00003.png"),
            str(corrupt),
            "--out",
            str(tmp_path / "o"),
            "--landmarks",
            str(faces),
            "--mask",
            str(faces),
            "-q",
            *FAST,
        ],
    )
    assert result.exit_code == 1
    assert "broken.png" in result.output and "1 image(s) failed" in result.output
    assert (tmp_path / "o" / "ffhq_00003" / "params.npz").is_file()


def test_usage_errors_exit_2(tmp_path, home):
    assert runner.invoke(app, ["fit"]).exit_code == 2
    bad = runner.invoke(app, ["fit", "x.png", "-s", "stages.full.iteratons=3"])
    assert bad.exit_code == 2 and "did you mean 'iterations'" in bad.output
    cuda = runner.invoke(app, ["fit", "x.png", "--device", "cuda:0"])
    import torch

    if not torch.cuda.is_available():
        assert cuda.exit_code == 2 and "no CUDA device" in cuda.output


@pytest.mark.parametrize("fmt", ["yaml", "toml"])
def test_print_config_round_trips_and_files_override(tmp_path, fmt):
    result = runner.invoke(
        app, ["fit", "--print-config", "--format", fmt, "-s", "stages.full.iterations=123"]
    )
    assert result.exit_code == 0, result.output
    path = tmp_path / f"fit.{fmt}"
    path.write_text(result.output)
    config = load_config(path)
    assert config.stages[1].iterations == 123
    assert config == load_config(None, ["stages.full.iterations=123"])


@requires_extension
def test_config_file_overrides_reach_the_fit(shared_data, tmp_path, home):
    faces = shared_data / "faces"
    config = tmp_path / "fit.yaml"
    config.write_text(
        "render_size: 96\ncrop_size: 128\nstages:\n  rigid: {iterations: 7}\n"
        "  full: {iterations: 9}\n"
    )
    result = runner.invoke(
        app,
        [
            "fit",
            str(faces / "ffhq_00004.png"),
            "--out",
            str(tmp_path / "o"),
            "-c",
            str(config),
            "--landmarks",
            str(faces),
            "--mask",
            str(faces),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "o" / "ffhq_00004" / "metrics.json").read_text())
    assert metrics["iterations"] == {"rigid": 7, "full": 9}


@requires_extension
def test_demo_fits_the_astronaut(tmp_path, home):
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "-q", *FAST])
    assert result.exit_code == 0, result.output
    assert "astronaut" in result.output
    folder = tmp_path / "astronaut"
    for name in (
        "params.npz",
        "params.json",
        "landmarks2d.npy",
        "render.png",
        "mask.png",
        "mesh.obj",
        "vis.jpg",
        "metrics.json",
    ):
        assert (folder / name).is_file(), name
    assert np.asarray(Image.open(folder / "render.png")).shape == (512, 512, 3)


def _demo_texture_space(path):
    """A small texture space for the demo head: its painted texture as the mean."""
    import torch

    from flamekit.assets.demo_head import demo_head
    from flamekit.model.texture_space import TextureSpace, save_texture_space

    demo = demo_head()
    mean = torch.nn.functional.interpolate(
        torch.from_numpy(demo.texture).permute(2, 0, 1)[None], size=(64, 64), mode="area"
    )[0]
    components = 0.05 * torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    space = TextureSpace(
        mean,
        components,
        std=torch.ones(3),
        uvs=torch.from_numpy(demo.data.uvs),
        uv_faces=torch.from_numpy(demo.data.uv_faces),
        provenance={"test": True},
    )
    return save_texture_space(space, path)


@requires_extension
def test_fit_with_a_texture_space(shared_data, tmp_path, home):
    faces = shared_data / "faces"
    space = _demo_texture_space(tmp_path / "space.npz")
    result = runner.invoke(
        app,
        [
            "fit",
            str(faces / "ffhq_00005.png"),
            "--out",
            str(tmp_path / "o"),
            "--texture-space",
            str(space),
            "--landmarks",
            str(faces),
            "--mask",
            str(faces),
            "-q",
            "-s",
            "model.num_texture=3",
            *FAST,
        ],
    )
    assert result.exit_code == 0, result.output
    folder = tmp_path / "o" / "ffhq_00005"
    with np.load(folder / "params.npz") as npz:
        assert npz["texture"].shape == (3,) and np.abs(npz["texture"]).sum() > 0
    params = json.loads((folder / "params.json").read_text())
    assert str(space) in json.dumps(params)


@requires_extension
def test_ctrl_c_keeps_finished_images(shared_data, tmp_path, home, monkeypatch):
    from flamekit.fitting import fitter as fitter_module

    faces = shared_data / "faces"
    real_fit = fitter_module.Fitter.fit
    calls = {"n": 0}

    def interrupted_fit(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(fitter_module.Fitter, "fit", interrupted_fit)
    result = runner.invoke(
        app,
        [
            "fit",
            str(faces / "ffhq_00006.png"),
            str(faces / "ffhq_00007.png"),
            "--out",
            str(tmp_path / "o"),
            "--batch-size",
            "1",
            "--landmarks",
            str(faces),
            "--mask",
            str(faces),
            "-q",
            *FAST,
        ],
    )
    assert result.exit_code == 130
    assert "interrupted" in result.output
    assert (tmp_path / "o" / "ffhq_00006" / "metrics.json").is_file()
    assert not (tmp_path / "o" / "ffhq_00007").exists()


@requires_extension
def test_early_stop_on_convergence(shared_data, tmp_path, home):
    faces = shared_data / "faces"
    result = runner.invoke(
        app,
        [
            "fit",
            str(faces / "ffhq_00008.png"),
            "--out",
            str(tmp_path / "o"),
            "--landmarks",
            str(faces),
            "--mask",
            str(faces),
            "-q",
            *FAST,
            "-s",
            "stages.full.iterations=400",
            "-s",
            "stages.full.early_stop=true",
            "-s",
            "stages.full.patience=10",
            "-s",
            "stages.full.rel_tol=0.5",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "o" / "ffhq_00008" / "metrics.json").read_text())
    assert metrics["stopped_early"]["full"] is True
    assert metrics["iterations"]["full"] < 400


@requires_extension
def test_a_flame_model_without_uvs_fits_without_the_offset(
    shared_data, tmp_path, home, monkeypatch
):
    faces = shared_data / "faces"
    model = shared_data / "flame_test_model" / "flame2023_open_test.pkl"
    monkeypatch.setenv(
        "FLAMEKIT_LANDMARKS", str(shared_data / "flame_topology" / "landmark_embedding.npz")
    )
    result = runner.invoke(
        app,
        [
            "fit",
            str(faces / "ffhq_00009.png"),
            "--out",
            str(tmp_path / "o"),
            "--model",
            str(model),
            "--landmarks",
            str(faces),
            "--mask",
            str(faces),
            *FAST,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "no UV layout" in result.output
    folder = tmp_path / "o" / "ffhq_00009"
    assert (folder / "mesh.obj").is_file() and not (folder / "texture.png").exists()
    params = json.loads((folder / "params.json").read_text())
    assert "FLAME 2023 Open" in json.dumps(params)


def test_an_unknown_loss_name_is_a_usage_error(tmp_path, home):
    result = runner.invoke(
        app,
        ["fit", "x.png", "--out", str(tmp_path), "-s", "stages.full.losses.photometrc=8"],
    )
    assert result.exit_code == 2 and "photometrc" in result.output
