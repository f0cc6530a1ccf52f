"""Fitting synthetic images whose true parameters are known (CPU, small render, both cameras).

The demo head renders a face with a known identity, expression, pose, camera, lighting and
texture; the fitter starts from a neutral head and must recover landmarks, appearance and
head rotation (global and neck pose combined: together they are the head's rotation).
"""

from __future__ import annotations

import math

import pytest
import torch

from flamekit.assets.demo_head import demo_head
from flamekit.fitting.config import load_config
from flamekit.fitting.fitter import Fitter
from flamekit.fitting.parameters import (
    FitParameters,
    matrix_to_axis_angle,
    rotation_angle_degrees,
)
from flamekit.model import FlameModel
from flamekit.model.lbs import axis_angle_to_matrix
from tests.conftest import requires_extension

R = 128


def _scene(camera_type: str, seed: int = 0):
    config = load_config(
        None,
        [
            f"camera.type={camera_type}",
            f"render_size={R}",
            "model.num_identity=20",
            "model.num_expression=10",
            "texture.offset_resolution=64",
        ],
    )
    demo = demo_head()
    fitter = Fitter(FlameModel(demo.data, demo.landmarks), config)
    torch.manual_seed(seed)
    truth = FitParameters(1, 20, 10, 0, camera_type, R, offset_resolution=64)
    with torch.no_grad():
        truth.identity.normal_(0, 0.7)
        truth.expression.normal_(0, 0.5)
        truth.global_pose.copy_(torch.tensor([[0.1, 0.35, -0.05]]))
        truth.jaw_pose.copy_(torch.tensor([[0.12, 0.0, 0.0]]))
        if camera_type == "orthographic":
            truth.cam_scale.fill_(6.0)
            truth.cam_translation.copy_(torch.tensor([[0.01, -0.02]]))
        else:
            truth.cam_translation.copy_(torch.tensor([[0.01, 0.02, 0.9]]))
        truth.lighting[:, 1:] = 0.3 * torch.randn(1, 8, 3)
        texture = torch.from_numpy(demo.texture).permute(2, 0, 1)[None]
        tone = torch.tensor(config.texture.skin_tone).view(1, 3, 1, 1)
        truth.texture_offset.copy_(
            torch.nn.functional.interpolate(texture, size=(64, 64), mode="area") - tone
        )
        out, camera, landmarks = fitter._forward(truth)
        rendered = fitter.renderer(out.vertices, fitter._albedo_map(truth), truth.lighting, camera)
    return fitter, truth, rendered.image, landmarks, rendered.mask


def _head_rotation(params) -> torch.Tensor:
    rotation = axis_angle_to_matrix(params.global_pose.detach()) @ axis_angle_to_matrix(
        params.neck_pose.detach()
    )
    return matrix_to_axis_angle(rotation)


@requires_extension
@pytest.mark.slow
@pytest.mark.parametrize("camera_type", ["orthographic", "perspective"])
def test_fit_recovers_a_synthetic_head(camera_type):
    torch.set_num_threads(2)
    fitter, truth, image, landmarks, mask = _scene(camera_type)
    result = fitter.fit(image, landmarks, mask)
    landmark_error = (result.landmarks2d - landmarks).norm(dim=-1).mean().item()
    both = mask * result.render_mask
    mse = (((result.render - image) ** 2) * both).sum() / (both.sum() * 3)
    psnr = 10 * math.log10(1 / mse.item())
    rotation_error = rotation_angle_degrees(
        _head_rotation(result.parameters), truth.global_pose
    ).item()
    assert landmark_error < 0.5, landmark_error
    assert psnr >= 30.0, psnr
    assert rotation_error < 2.0, rotation_error
    assert [log.name for log in result.logs] == ["rigid", "full"]
    assert result.logs[-1].total[-1] < result.logs[-1].total[0]


def test_rotation_conversions_round_trip():
    torch.manual_seed(0)
    for scale in (1e-8, 0.3, 2.0, math.pi - 1e-4):
        aa = torch.nn.functional.normalize(torch.randn(8, 3, dtype=torch.float64), dim=-1) * scale
        back = matrix_to_axis_angle(axis_angle_to_matrix(aa))
        assert rotation_angle_degrees(back, aa).max() < 1e-3


@requires_extension
def test_closed_form_start_finds_the_head_rotation():
    fitter, truth, _, landmarks, _ = _scene("orthographic")
    params = FitParameters(1, 20, 10, 0, "orthographic", R, offset_resolution=64)
    with torch.no_grad():
        rest = fitter._forward(params)[0]
        params.initialize_rotation(rest.landmarks[:, 17:], landmarks[:, 17:])
    # From the mean shape, before any optimization: within a few degrees of the truth.
    assert rotation_angle_degrees(params.global_pose, truth.global_pose).item() < 8.0


@requires_extension
def test_batch_fit_equals_single_fits():
    fitter, _, image, landmarks, mask = _scene("orthographic")
    fitter.config.stages[0].iterations = 20
    fitter.config.stages[1].iterations = 20
    flipped = image.flip(-1)
    flipped_lmk = landmarks.clone()
    flipped_lmk[..., 0] = R - 1 - flipped_lmk[..., 0]
    flipped_lmk = flipped_lmk[:, _MIRROR]
    batch = fitter.fit(
        torch.cat([image, flipped]), torch.cat([landmarks, flipped_lmk]), torch.cat([mask] * 2)
    )
    single = fitter.fit(flipped, flipped_lmk, mask)
    torch.testing.assert_close(batch.landmarks2d[1:], single.landmarks2d, atol=1e-3, rtol=0)
    torch.testing.assert_close(
        batch.parameters.identity[1:], single.parameters.identity, atol=1e-4, rtol=0
    )


# iBUG 68 left-right mirror permutation.
_MIRROR = (
    list(range(16, -1, -1))
    + list(range(26, 16, -1))
    + [27, 28, 29, 30]
    + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46]
    + [39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48]
    + [59, 58, 57, 56, 55]
    + [64, 63, 62, 61, 60]
    + [67, 66, 65]
)


@requires_extension
def test_exposure_prior_gets_its_target_and_a_render():
    """The fitter passes the start light's shading as the target, and renders for a stage
    whose only image-reading loss reads the shading."""
    _, _, image, landmarks, mask = _scene("orthographic")
    overrides = [
        f"render_size={R}",
        "model.num_identity=20",
        "model.num_expression=10",
        "lighting.init_ambient=2.5",
        "stages.rigid.iterations=0",
        "stages.full.iterations=3",
    ]
    config = load_config(None, overrides)
    config.stages[1].losses = {"landmark": 1.0, "exposure-prior": 1.0}
    demo = demo_head()
    fitter = Fitter(FlameModel(demo.data, demo.landmarks), config)
    assert fitter._loss("exposure-prior").target == pytest.approx(0.28209479 * 2.5)
    result = fitter.fit(image, landmarks, mask)
    assert result.terms["exposure-prior"].shape == (1,)
    assert torch.isfinite(result.terms["exposure-prior"]).all()
