"""The built-in loss plugins: values worked out by hand, [B] shapes, gradients, empty masks."""

from __future__ import annotations

import math
import re

import pytest
import torch

from flamekit import hookspecs
from flamekit_plugins import losses
from flamekit_plugins.losses import LOSSES


def _loss(name: str, **options):
    return LOSSES[name](**options)


def _landmarks():
    """Batch 0: residuals (3,4), (0,0), (1,0) -> squared 25, 0, 1. Batch 1: all zero."""
    target = torch.zeros(2, 3, 2, dtype=torch.float64)
    pred = target.clone()
    pred[0, 0] = torch.tensor([3.0, 4.0])
    pred[0, 2] = torch.tensor([1.0, 0.0])
    return pred.requires_grad_(), target


def test_the_hook_registers_every_loss_under_its_name():
    registered = {}
    losses.register_losses(lambda name, factory: registered.setdefault(name, factory))
    assert registered == LOSSES
    assert set(registered) == {
        "landmark",
        "landmark-robust",
        "photometric",
        "identity-reg",
        "expression-reg",
        "pose-reg",
        "texture-reg",
        "lighting-reg",
        "exposure-prior",
        "offset-magnitude",
        "offset-smoothness",
    }


def test_every_input_is_a_documented_standard_tensor():
    documented = set(re.findall(r"^``(\w+)``\s+\[", hookspecs.__doc__, flags=re.M))
    assert {"landmarks2d", "mask", "uv_mask", "lighting", "shading"} <= documented
    for cls in LOSSES.values():
        assert set(cls.inputs) | set(cls.optional_inputs) <= documented, cls.name


def test_exposure_prior_measures_the_mean_shading_on_the_face():
    shading = torch.zeros(3, 3, 4, 4)
    shading[0] = 0.85  # at the target
    shading[1, :, :2] = 1.05  # 0.2 too bright where the mask is; the rest is ignored
    shading.requires_grad_()
    mask = torch.zeros(3, 1, 4, 4)
    mask[:2, :, :2] = 1.0  # image 2: no face pixel
    value = _loss("exposure-prior")({"shading": shading, "mask": mask})
    assert value.tolist() == pytest.approx([0.0, 0.04, 0.0])
    assert _loss("exposure-prior", target=1.05)(
        {"shading": shading, "mask": mask}
    ).tolist() == pytest.approx([0.04, 0.0, 0.0])
    value.sum().backward()
    # d/ds of (mean - t)^2 = 2 * 0.2 / (8 pixels * 3 channels) inside the mask, 0 outside.
    assert shading.grad[1, :, :2].flatten().tolist() == pytest.approx([0.4 / 24] * 24)
    assert shading.grad[1, :, 2:].abs().sum() == 0 and shading.grad[2].abs().sum() == 0
    with pytest.raises(ValueError, match="share H,W"):
        _loss("exposure-prior")({"shading": shading, "mask": mask[:, :, :2]})
    with pytest.raises(KeyError, match="shading"):
        _loss("exposure-prior")({"mask": mask})


def test_landmark_is_the_mean_squared_distance():
    pred, target = _landmarks()
    value = _loss("landmark")({"landmarks2d": pred, "target_landmarks": target})
    assert value.shape == (2,)
    assert value.tolist() == pytest.approx([26 / 3, 0.0])
    value[0].backward()
    assert pred.grad[0, 0].tolist() == pytest.approx([2 * 3 / 3, 2 * 4 / 3])
    assert pred.grad[1].abs().sum() == 0


def test_landmark_weights_and_scale():
    pred, target = _landmarks()
    weights = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    values = {"landmarks2d": pred, "target_landmarks": target, "landmark_weights": weights}
    assert _loss("landmark")(values).tolist() == pytest.approx([26 / 2, 0.0])
    values["landmark_weights"] = torch.zeros(2, 3, dtype=torch.float64)
    assert _loss("landmark")(values).tolist() == [0.0, 0.0]  # every point dropped: 0, not NaN
    del values["landmark_weights"]
    assert _loss("landmark", scale=5)(values).tolist() == pytest.approx([(1 + 0 + 1 / 25) / 3, 0])
    with pytest.raises(ValueError, match="scale"):
        _loss("landmark", scale=0)


def test_robust_landmark_saturates_and_matches_l2_for_small_residuals():
    pred, target = _landmarks()
    values = {"landmarks2d": pred, "target_landmarks": target}
    gm = _loss("landmark-robust", sigma=5)(values)
    assert gm.tolist() == pytest.approx([(25 * 25 / 50 + 0 + 25 / 26) / 3, 0.0])
    charbonnier = _loss("landmark-robust", sigma=5, function="charbonnier")(values)
    expected = (2 * 25 * (math.sqrt(2) - 1) + 0 + 2 * 25 * (math.sqrt(1 + 1 / 25) - 1)) / 3
    assert charbonnier.tolist() == pytest.approx([expected, 0.0])
    far = {"landmarks2d": pred * 1000, "target_landmarks": target}
    assert _loss("landmark-robust", sigma=5)(far)[0] < 25  # bounded by sigma^2
    near = {"landmarks2d": pred * 1e-3, "target_landmarks": target}
    for function in ("geman-mcclure", "charbonnier"):
        robust = _loss("landmark-robust", sigma=5, function=function)(near)
        assert robust[0].item() == pytest.approx(_loss("landmark")(near)[0].item(), rel=1e-4)
    gm.sum().backward()
    assert torch.isfinite(pred.grad).all() and pred.grad[0, 0].abs().sum() > 0
    with pytest.raises(ValueError, match="charbonnier"):
        _loss("landmark-robust", function="huber")


def test_photometric_is_l1_normalized_by_mask_area_and_safe_when_empty():
    rendered = torch.ones(2, 3, 2, 2, dtype=torch.float64)
    rendered[0, :, 0, 0] = torch.tensor([0.3, 0.6, 0.9])  # channel mean 0.6
    rendered[0, :, 0, 1] = 0.2
    rendered.requires_grad_()
    image = torch.zeros(2, 3, 2, 2, dtype=torch.float64)
    mask = torch.zeros(2, 1, 2, 2)
    mask[0, 0, 0, :] = 1  # image 1's mask is empty
    value = _loss("photometric")({"rendered": rendered, "image": image, "mask": mask})
    assert value.shape == (2,)
    assert value.tolist() == pytest.approx([(0.6 + 0.2) / 2, 0.0])
    value.sum().backward()
    assert rendered.grad[0, :, 0, 0].tolist() == pytest.approx([1 / 6] * 3)  # 1 / (3 ch * 2 px)
    assert rendered.grad[0, :, 1].abs().sum() == 0  # outside the mask
    assert rendered.grad[1].abs().sum() == 0 and torch.isfinite(rendered.grad).all()
    equal = _loss("photometric")({"rendered": image, "image": image, "mask": torch.ones_like(mask)})
    assert equal.tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="mask must be"):
        _loss("photometric")({"rendered": rendered, "image": image, "mask": mask[:, :, :1]})


@pytest.mark.parametrize(
    "name, key",
    [("identity-reg", "identity"), ("expression-reg", "expression"), ("texture-reg", "texture")],
)
def test_coefficient_regularizers_are_sums_of_squares(name, key):
    coefficients = torch.tensor([[1.0, 2.0, -2.0], [0.0, 0.0, 0.0]], requires_grad=True)
    value = _loss(name)({key: coefficients})
    assert value.tolist() == [9.0, 0.0]
    value.sum().backward()
    assert coefficients.grad.tolist() == [[2.0, 4.0, -4.0], [0.0, 0.0, 0.0]]


def test_pose_reg_penalizes_neck_jaw_and_eyes_but_not_the_global_rotation():
    pose = torch.zeros(2, 15)
    pose[:, 0:3] = 10.0  # global rotation: free
    pose[0, 3] = 1.0  # neck
    pose[0, 7] = 2.0  # jaw
    pose[0, 11] = 1.0  # left eye
    pose[0, 12] = 1.0  # right eye
    pose.requires_grad_()
    value = _loss("pose-reg")({"pose": pose})
    assert value.tolist() == [1 + 4 + 2, 0.0]
    assert _loss("pose-reg", jaw=0)({"pose": pose}).tolist() == [3.0, 0.0]
    value.sum().backward()
    assert pose.grad[:, 0:3].abs().sum() == 0 and pose.grad[0, 7] == 4.0
    with pytest.raises(ValueError, match=r"\[B,15\]"):
        _loss("pose-reg")({"pose": torch.zeros(2, 6)})


def test_lighting_reg_keeps_light_white_and_ambient():
    light = torch.zeros(1, 9, 3)
    light[0, 0] = 1.0
    assert _loss("lighting-reg")({"lighting": light}).tolist() == [0.0]  # white ambient: free
    light[0, 0] = torch.tensor([1.0, 2.0, 3.0])  # coloured: deviations 1, 0, 1 from grey
    assert _loss("lighting-reg")({"lighting": light}).tolist() == pytest.approx([2.0])
    light[0, 1] = 0.5  # a grey directional band: 3 * 0.25
    light.requires_grad_()
    value = _loss("lighting-reg")({"lighting": light})
    assert value.tolist() == pytest.approx([2.75])
    assert _loss("lighting-reg", color=0)({"lighting": light}).tolist() == pytest.approx([0.75])
    flat = _loss("lighting-reg")({"lighting": light.detach().reshape(1, 27)})
    assert flat.tolist() == pytest.approx([2.75])
    grey = _loss("lighting-reg")({"lighting": light.detach()[:, :, :1]})
    assert grey.tolist() == pytest.approx([0.25])
    value.backward()
    assert light.grad[0, 1].tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_offset_magnitude_is_the_mean_square_inside_the_uv_mask():
    offset = torch.zeros(2, 3, 2, 2, dtype=torch.float64)
    offset[0, :, 0, 0] = 1.0  # 1
    offset[0, 2, 0, 1] = 3.0  # 9 / 3 channels = 3
    offset[:, :, 1, 1] = 100.0  # outside the mask
    offset.requires_grad_()
    uv_mask = torch.tensor([[[[1.0, 1.0], [1.0, 0.0]]]])  # [1,1,H,W], shared by the batch
    value = _loss("offset-magnitude")({"texture_offset": offset, "uv_mask": uv_mask})
    assert value.tolist() == pytest.approx([(1 + 3 + 0) / 3, 0.0])
    value.sum().backward()
    assert offset.grad[:, :, 1, 1].abs().sum() == 0
    empty = {"texture_offset": offset, "uv_mask": torch.zeros_like(uv_mask)}
    assert _loss("offset-magnitude")(empty).tolist() == [0.0, 0.0]


def test_offset_smoothness_penalizes_differences_between_masked_neighbours():
    pattern = torch.tensor([[0.0, 1.0], [0.0, 3.0]], dtype=torch.float64)
    offset = pattern.expand(1, 3, 2, 2).clone().requires_grad_()
    full = torch.ones(1, 1, 2, 2)
    values = {"texture_offset": offset, "uv_mask": full}
    # horizontal pairs: 1, 3; vertical pairs: 0, 2
    squared = _loss("offset-smoothness")(values)
    assert squared.tolist() == pytest.approx([(1 + 9 + 0 + 4) / 4])
    assert _loss("offset-smoothness", p=1)(values).tolist() == pytest.approx([(1 + 3 + 0 + 2) / 4])
    partial = {"texture_offset": offset, "uv_mask": torch.tensor([[[[1.0, 1.0], [1.0, 0.0]]]])}
    assert _loss("offset-smoothness")(partial).tolist() == pytest.approx([(1 + 0) / 2])
    constant = {"texture_offset": torch.full((2, 3, 4, 4), 0.3), "uv_mask": torch.ones(1, 1, 4, 4)}
    assert _loss("offset-smoothness")(constant).tolist() == [0.0, 0.0]
    empty = {"texture_offset": offset, "uv_mask": torch.zeros(1, 1, 2, 2)}
    assert _loss("offset-smoothness")(empty).tolist() == [0.0]
    squared.backward()
    assert offset.grad[0, 0, 1, 1].item() == pytest.approx((2 * 3 + 2 * 2) / 3 / 4)
    with pytest.raises(ValueError, match="p must be"):
        _loss("offset-smoothness", p=3)


def _random_values(batch: int = 2) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.rand(*shape, generator=generator, dtype=torch.float64)

    return {
        "landmarks2d": rand(batch, 68, 2) * 20,
        "target_landmarks": rand(batch, 68, 2) * 20,
        "landmark_weights": rand(batch, 68),
        "rendered": rand(batch, 3, 5, 4),
        "image": rand(batch, 3, 5, 4),
        "mask": (rand(batch, 1, 5, 4) > 0.3).double(),
        "shading": rand(batch, 3, 5, 4) + 0.5,
        "identity": rand(batch, 6) - 0.5,
        "expression": rand(batch, 4) - 0.5,
        "pose": rand(batch, 15) - 0.5,
        "texture": rand(batch, 5) - 0.5,
        "lighting": rand(batch, 9, 3),
        "texture_offset": rand(batch, 3, 4, 5) - 0.5,
        "uv_mask": (rand(1, 1, 4, 5) > 0.3).double(),
    }


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_returns_b_values_with_correct_gradients(name):
    loss = _loss(name)
    values = _random_values()
    out = loss(values)
    assert out.shape == (2,) and out.dtype == torch.float64 and torch.isfinite(out).all()
    assert (out >= 0).all()
    for key in loss.inputs:
        if values[key].dtype.is_floating_point and key not in ("mask", "uv_mask"):

            def function(tensor, key=key):
                return loss({**values, key: tensor})

            assert torch.autograd.gradcheck(function, (values[key].clone().requires_grad_(),))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_a_missing_input_names_the_loss_and_the_tensor(name):
    loss = _loss(name)
    values = _random_values()
    del values[loss.inputs[0]]
    with pytest.raises(KeyError, match=f"{name}.*{loss.inputs[0]}"):
        loss(values)
