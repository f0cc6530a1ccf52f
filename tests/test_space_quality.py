"""Texture-space quality measures against analytic values, and the sample picture and CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from flamekit.model.texture_space import TextureSpace, save_texture_space
from flamekit.texture import (
    compactness,
    evaluate_space,
    format_quality,
    generalization,
    sample_space_picture,
    specificity,
)
from flamekit.texture.sampling import grid_shape
from flamekit_cli.main import app

SIDE = 16
STD = torch.tensor([3.0, 2.0, 1.0, 0.5], dtype=torch.float64)
BACKGROUND = np.array([237, 240, 245])


def _smooth_basis(k: int, side: int, seed: int) -> torch.Tensor:
    """[k,3,side,side] orthonormal (as flat vectors) low-frequency patterns."""
    y, x = torch.meshgrid(torch.linspace(0, 1, side), torch.linspace(0, 1, side), indexing="ij")
    g = torch.Generator().manual_seed(seed)
    patterns = []
    for i in range(k + 2):
        fx, fy = (i % 3) + 1, (i // 3) + 1
        wave = torch.cos(math.pi * fx * x + i) * torch.cos(math.pi * fy * y)
        colour = torch.rand(3, 1, 1, generator=g) + 0.2
        patterns.append((colour * wave).reshape(-1))
    q, _ = torch.linalg.qr(torch.stack(patterns, 1).double())
    return q[:, :k].T.reshape(k, 3, side, side)


def _space(seed: int = 0, mean_value: float = 0.5, std=STD, **uv) -> TextureSpace:
    comps = _smooth_basis(len(std), SIDE, seed)
    mean = torch.full((3, SIDE, SIDE), mean_value, dtype=torch.float64)
    return TextureSpace(mean, comps, std.clone(), **uv)


def _samples(space: TextureSpace, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coeffs = torch.randn(n, space.num_components, generator=g, dtype=torch.float64) * space.std
    return space(coeffs)


def test_compactness_equals_the_analytic_variance_fractions():
    space = _space()
    expected = torch.cumsum(STD**2, 0) / (STD**2).sum()
    assert torch.allclose(compactness(space), expected, atol=1e-9)
    assert torch.allclose(compactness(space, 2), expected[:2], atol=1e-9)
    # The data variant approaches the model's on many samples of the model.
    data = compactness(space, maps=_samples(space, 2000, 1))
    assert torch.allclose(data, expected, atol=0.03)
    assert data[-1] == pytest.approx(1.0, abs=1e-9)


def test_generalization_decreases_with_k_and_vanishes_in_the_span():
    space = _space()
    errors = generalization(space, _samples(space, 20, 2), k_values=[0, 1, 2, 3, 4])
    values = [errors[k] for k in range(5)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False)), values
    assert values[-1] < 1e-9
    # Non-orthonormal components (scaled and mixed) span the same space: same best fit.
    mix = torch.tensor([[2.0, 1.0, 0, 0], [0, 0.5, 0, 0], [0, 0, 1, 3.0], [0, 0, 0, 1.0]])
    comps = torch.einsum("ij,jchw->ichw", mix.double(), space.components)
    skewed = TextureSpace(space.mean, comps)
    assert generalization(skewed, _samples(space, 5, 3), k_values=[4])[4] < 1e-9


def test_generalization_respects_the_mask():
    space = _space()
    maps = _samples(space, 4, 4)
    maps[..., : SIDE // 2] = 5.0  # garbage outside the region
    mask = torch.zeros(1, 1, SIDE, SIDE)
    mask[..., SIDE // 2 :] = 1
    assert generalization(space, maps, mask, k_values=[4])[4] < 1e-9
    assert generalization(space, maps, None, k_values=[4])[4] > 0.1


def test_specificity_is_small_for_the_right_space_and_larger_for_a_wrong_one():
    space = _space()
    train = _samples(space, 300, 5)
    right = specificity(space, train, num_samples=50, seed=1)
    wrong = specificity(_space(seed=7, mean_value=0.6), train, num_samples=50, seed=1)
    assert right < 0.5 * wrong, (right, wrong)


def test_evaluate_space_report_and_table():
    space = _space()
    report = evaluate_space(space, _samples(space, 30, 6), num_samples=20)
    assert report["num_train"] == 24 and report["num_held_out"] == 6
    assert report["k_values"] == [0, 1, 2, 3, 4]
    assert report["generalization"][4] < 1e-9
    text = format_quality(json.loads(json.dumps(report)))  # survives a JSON round trip
    assert "generalization MAE" in text and "specificity" in text
    assert "compactness" in format_quality(evaluate_space(space))


@pytest.fixture(scope="module")
def demo():
    from flamekit.assets.demo_head import demo_head

    return demo_head()


def _demo_space(demo, side: int = 32) -> TextureSpace:
    texture = torch.from_numpy(demo.texture).permute(2, 0, 1)[None]
    mean = F.interpolate(texture, size=(side, side), mode="bilinear", antialias=True)[0]
    comps = _smooth_basis(3, side, 0).float()
    uvs, uv_faces = torch.from_numpy(demo.data.uvs), torch.from_numpy(demo.data.uv_faces)
    return TextureSpace(mean, comps, torch.tensor([3.0, 2.0, 1.0]), uvs, uv_faces)


def test_sample_space_picture_on_the_demo_head(demo):
    from flamekit.model.flame import FlameModel

    head = FlameModel(demo.data, demo.landmarks)
    space = _demo_space(demo)
    picture = sample_space_picture(
        space, head, num_components=2, num_random=3, size=32, sigmas=(-2, 0, 2)
    )
    rows, cols = grid_shape(2, 3, 3)
    assert (rows, cols) == (5, 2)
    assert picture.shape == (rows * 32, cols * 32, 3) and picture.dtype == np.uint8
    head_pixels = np.abs(picture.astype(int) - BACKGROUND).sum(-1) > 30
    assert 0.15 < head_pixels.mean() < 0.9
    # The +2 sd and -2 sd views of component 1 differ: the component is visible.
    assert np.abs(picture[:32, :32].astype(int) - picture[64:96, :32]).mean() > 1

    bad = TextureSpace(space.mean, space.components, None, space.uvs[:-1], space.uv_faces)
    with pytest.raises(ValueError, match="texture coordinates"):
        sample_space_picture(bad, head, size=32)


def test_cli_sample_space_and_eval_space(tmp_path, monkeypatch, demo):
    for name in ("FLAMEKIT_MODEL", "FLAMEKIT_LANDMARKS", "FLAMEKIT_TEXTURE_SPACE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLAMEKIT_HOME", str(tmp_path / "home"))
    space = _demo_space(demo)
    space_path = save_texture_space(space, tmp_path / "space.npz")
    runner = CliRunner()

    out = tmp_path / "grid.png"
    args = ["sample-space", str(space_path), "--out", str(out), "--components", "2"]
    result = runner.invoke(app, [*args, "--random", "2", "--size", "32"])
    assert result.exit_code == 0, result.output
    with Image.open(out) as image:
        assert image.size == (2 * 32, 6 * 32)

    g = torch.Generator().manual_seed(0)
    maps = space(torch.randn(10, 3, generator=g) * space.std).clamp(0, 1)
    npz = tmp_path / "maps.npz"
    np.savez(npz, maps=maps.numpy())
    report = tmp_path / "report.json"
    args = ["eval-space", str(space_path), "--images", str(npz), "--json", str(report)]
    result = runner.invoke(app, [*args, "--samples", "10"])
    assert result.exit_code == 0, result.output
    assert "generalization MAE" in result.output and "specificity" in result.output
    assert json.loads(report.read_text())["num_held_out"] == 2

    folder = tmp_path / "maps"
    folder.mkdir()
    for i, image in enumerate(maps[:3]):
        array = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(array).resize((64, 64)).save(folder / f"{i}.png")
    result = runner.invoke(app, ["eval-space", str(space_path), "--images", str(folder)])
    assert result.exit_code == 0, result.output
    assert "3 (2 reference, 1 held out)" in result.output
