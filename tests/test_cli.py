"""The command line: render-demo writes a real picture, info reports the build."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from flamekit_cli.main import app
from tests.conftest import requires_extension

runner = CliRunner()


@pytest.mark.parametrize("backend", [pytest.param("flamekit", marks=requires_extension), "torch"])
def test_render_demo_writes_a_shaded_textured_head(tmp_path, backend):
    out = tmp_path / "demo.png"
    result = runner.invoke(
        app, ["render-demo", "--out", str(out), "--size", "64", "--backend", backend]
    )
    assert result.exit_code == 0, result.output
    image = np.asarray(Image.open(out))
    assert image.shape == (64, 192, 3)
    background = np.array([237, 240, 245])
    head = np.abs(image.astype(int) - background).sum(-1) > 30
    assert 0.2 < head.mean() < 0.8, "the head should fill a good part of each view"
    assert len(np.unique(image[head].reshape(-1, 3), axis=0)) > 100, "shaded and textured"


def test_render_demo_reports_unknown_backend(tmp_path):
    result = runner.invoke(
        app, ["render-demo", "--out", str(tmp_path / "x.png"), "--backend", "nope"]
    )
    assert result.exit_code == 2
    assert "unknown renderer backend 'nope'" in result.output


def test_info_lists_backends():
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0
    assert "renderer backend flamekit" in result.output
    assert "renderer backend torch: usable" in result.output


def test_render_demo_explains_a_missing_cuda_device(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = runner.invoke(
        app, ["render-demo", "--out", str(tmp_path / "x.png"), "--device", "cuda"]
    )
    assert result.exit_code == 2
    assert "no CUDA device" in result.output


def test_render_demo_reports_an_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = runner.invoke(
        app, ["render-demo", "--out", str(blocker / "x.png"), "--size", "16", "--backend", "torch"]
    )
    assert result.exit_code == 1
    assert "cannot write" in result.output


def test_render_demo_with_a_missing_model_says_where_to_get_it(tmp_path):
    result = runner.invoke(
        app,
        ["render-demo", "--out", str(tmp_path / "x.png"), "--model", str(tmp_path / "m.pkl")],
    )
    assert result.exit_code == 2
    assert "m.pkl" in result.output and "flame.is.tue.mpg.de" in result.output
    assert not (tmp_path / "x.png").exists()


def test_render_demo_renders_a_flame_model_file(tmp_path, shared_data):
    model = shared_data / "flame_test_model" / "flame2023_open_test.pkl"
    landmarks = shared_data / "flame_topology" / "landmark_embedding.npz"
    out = tmp_path / "flame.png"
    result = runner.invoke(
        app,
        [
            "render-demo",
            "--out",
            str(out),
            "--size",
            "48",
            "--backend",
            "torch",
            "--model",
            str(model),
        ],
        env={"FLAMEKIT_HOME": str(tmp_path / "home"), "FLAMEKIT_LANDMARKS": str(landmarks)},
    )
    assert result.exit_code == 0, result.output
    image = np.asarray(Image.open(out))
    head = np.abs(image.astype(int) - np.array([237, 240, 245])).sum(-1) > 30
    assert image.shape == (48, 144, 3) and 0.2 < head.mean() < 0.8
