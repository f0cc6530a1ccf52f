"""`flamekit fit-texture`: the full UV texture fitted after the geometric fit.

A real photo (stored landmarks and skin mask, ../shared) and a synthetic one (the demo head
rendered with its own painted texture): the optimized texture must explain the photo better
than the fit's smooth albedo, and every promised file must be there at the right size.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

from flamekit.fitting.config import load_config
from flamekit.plugin_types import ImageError
from flamekit.texture.fit_texture import fit_texture
from flamekit_cli.fit_texture_cmd import fit_texture_command
from tests.conftest import requires_extension

FAST = [
    "stages.rigid.iterations=30",
    "stages.full.iterations=30",
    "render_size=96",
    "crop_size=128",
    "texture.offset_resolution=32",
]
SMALL = {"texture_size": 64, "iterations": 40, "render_size": 128, "progress": False}

app = typer.Typer()
app.command()(fit_texture_command)
runner = CliRunner()


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """No registered FLAME: the built-in demo head."""
    monkeypatch.setenv("FLAMEKIT_HOME", str(tmp_path / "home"))
    for name in ("FLAMEKIT_MODEL", "FLAMEKIT_LANDMARKS", "FLAMEKIT_TEXTURE_SPACE"):
        monkeypatch.delenv(name, raising=False)
    torch.set_num_threads(2)


@requires_extension
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_real_photo_texture_beats_the_fit_albedo(shared_data, tmp_path):
    faces = shared_data / "faces"
    photo = faces / "ffhq_00000.png"
    result = fit_texture(
        photo, tmp_path, load_config(None, FAST), landmarks=faces, mask=faces, **SMALL
    )
    folder = tmp_path / "ffhq_00000"
    assert result.folder == folder
    assert result.error_after < 0.8 * result.error_before, (
        result.error_before,
        result.error_after,
    )
    assert result.texture.shape == (64, 64, 3)
    texture = np.asarray(Image.open(folder / "texture.png"))
    assert texture.shape == (64, 64, 3) and texture.dtype == np.uint8
    assert "map_Kd texture.png" in (folder / "mesh.mtl").read_text()
    assert "mtllib mesh.mtl" in (folder / "mesh.obj").read_text()
    height, width = np.asarray(Image.open(photo)).shape[:2]
    assert np.asarray(Image.open(folder / "render.png")).shape == (height, width, 3)
    compare = Image.open(folder / "compare.jpg")
    assert compare.size[1] == 256 and compare.size[0] > 3 * 256
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["photometric_error_after"] < metrics["photometric_error_before"]
    assert metrics["texture_size"] == 64 and metrics["texture_render_size"] == 128
    assert metrics["seconds"] > metrics["texture_seconds"] > 0
    assert not list(folder.glob(".*.tmp"))  # atomic writes leave nothing behind


@requires_extension
def test_cli_writes_outputs_and_exit_codes(shared_data, tmp_path):
    faces = shared_data / "faces"
    args = ["--landmarks", str(faces), "--mask", str(faces), "-q"]
    args += ["--texture-size", "32", "--iterations", "5", "--render-size", "96"]
    for override in FAST:
        args += ["-s", override]
    done = runner.invoke(app, [str(faces / "ffhq_00001.png"), "-o", str(tmp_path), *args])
    assert done.exit_code == 0, done.output
    assert np.asarray(Image.open(tmp_path / "ffhq_00001" / "texture.png")).shape == (32, 32, 3)

    missing = tmp_path / "nope.png"
    done = runner.invoke(app, [str(missing), "-o", str(tmp_path), *args])
    assert done.exit_code == 2 and "nope.png" in done.output
    junk = tmp_path / "junk.png"
    junk.write_text("not an image")
    done = runner.invoke(app, [str(junk), "-o", str(tmp_path), *args])
    assert done.exit_code == 2 and "junk.png" in done.output
    done = runner.invoke(app, [str(junk), "-s", "no.such.key=1"])
    assert done.exit_code == 2


def _synthetic_photo(folder):
    """The demo head with its painted texture at 128 px, its projected landmarks and mask."""
    from flamekit.assets.demo_head import demo_head
    from flamekit.fitting.fitter import Fitter
    from flamekit.fitting.parameters import FitParameters
    from flamekit.model import FlameModel

    size = 128
    config = load_config(None, [f"render_size={size}", "texture.offset=false"])
    demo = demo_head()
    fitter = Fitter(FlameModel(demo.data, demo.landmarks), config)
    truth = FitParameters(1, 20, 10, 0, "orthographic", size, offset_resolution=0)
    with torch.no_grad():
        truth.global_pose.copy_(torch.tensor([[0.05, 0.25, 0.0]]))
        truth.cam_scale.fill_(6.0)
        truth.lighting[:, 1:3] = 0.3
        texture = torch.from_numpy(demo.texture).permute(2, 0, 1)[None].float()
        out, camera, landmarks = fitter._forward(truth)
        rendered = fitter.renderer(out.vertices, texture, truth.lighting, camera)
    background = torch.tensor([0.3, 0.35, 0.4]).view(1, 3, 1, 1)
    image = rendered.image + (1 - rendered.mask) * background
    pixels = (image[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(pixels).save(folder / "synth.png")
    np.save(folder / "synth_lmk68.npy", landmarks[0].numpy().astype(np.float32))
    mask = (rendered.mask[0, 0].numpy() > 0.5).astype(np.uint8) * 255
    Image.fromarray(mask).save(folder / "synth_skin.png")
    return folder / "synth.png"


@requires_extension
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_synthetic_head_texture_error_drops(tmp_path):
    photo = _synthetic_photo(tmp_path)
    config = load_config(None, FAST)
    result = fit_texture(
        photo, tmp_path / "out", config, landmarks=tmp_path, mask=tmp_path, **SMALL
    )
    assert result.error_after < 0.8 * result.error_before, (
        result.error_before,
        result.error_after,
    )
    assert result.losses[-1] < result.losses[0]
    assert (tmp_path / "out" / "synth" / "metrics.json").is_file()


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(ImageError, match="missing.png"):
        fit_texture(tmp_path / "missing.png", tmp_path, progress=False)
    with pytest.raises(ValueError, match="texture_size"):
        fit_texture(tmp_path / "missing.png", tmp_path, texture_size=0, progress=False)
