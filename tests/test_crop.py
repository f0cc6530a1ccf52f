"""Face crops: points and pixels land where the transform says, in both directions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from flamekit.fitting.crop import CropTransform, crop_from_landmarks

H, W = 200, 300  # non-square photos throughout

TRANSFORMS = [
    CropTransform(40.3, 20.7, 100.0, 256),  # enlarges, inside the image
    CropTransform(10.2, 5.1, 180.0, 64),  # shrinks (antialiasing path)
    CropTransform(-50.0, -30.0, 150.0, 128),  # past the top-left corner
    CropTransform(220.6, 120.4, 130.0, 200),  # past the bottom-right corner
]


def _grid(transform: CropTransform) -> np.ndarray:
    """Original-pixel positions of every crop pixel centre, (c,c,2)."""
    v, u = np.mgrid[0 : transform.crop_size, 0 : transform.crop_size]
    return transform.to_original(np.stack([u, v], axis=-1).astype(np.float64))


def _coordinate_image() -> np.ndarray:
    """Float image whose channels are the pixel's own x and y."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    return np.stack([xx, yy, np.zeros_like(xx)], axis=-1)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_points_round_trip_numpy_and_torch(transform):
    rng = np.random.default_rng(0)
    points = rng.uniform(-100, 400, size=(5, 68, 2))
    crop = transform.to_crop(points)
    assert crop.shape == points.shape and crop.dtype == np.float64
    np.testing.assert_allclose(transform.to_original(crop), points, atol=1e-9)
    # The matrices are the same maps.
    homogeneous = np.concatenate([points, np.ones((5, 68, 1))], axis=-1)
    np.testing.assert_allclose(homogeneous @ transform.matrix.T, crop, atol=1e-9)
    crop_h = np.concatenate([crop, np.ones((5, 68, 1))], axis=-1)
    np.testing.assert_allclose(crop_h @ transform.inverse_matrix.T, points, atol=1e-9)

    tensor = torch.tensor(points, dtype=torch.float32, requires_grad=True)
    mapped = transform.to_crop(tensor)
    assert isinstance(mapped, torch.Tensor) and mapped.dtype == torch.float32
    np.testing.assert_allclose(mapped.detach().numpy(), crop, rtol=1e-5, atol=1e-3)
    mapped.sum().backward()  # differentiable, for landmark losses in crop pixels
    np.testing.assert_allclose(tensor.grad.numpy(), transform.scale)
    back = transform.to_original(mapped.detach())
    np.testing.assert_allclose(back.numpy(), points, rtol=1e-5, atol=1e-3)
    assert transform.to_crop(np.array([[3, 4]])).dtype == np.float64  # ints become floats


def test_conventions_box_edges_and_resize():
    transform = CropTransform(10.0, 20.0, 50.0, 100)
    assert transform.scale == 2.0
    # The box edges are the crop's outer pixel edges; its centre is the crop's centre.
    np.testing.assert_allclose(transform.to_crop(np.array([10.0, 20.0])), [-0.5, -0.5])
    np.testing.assert_allclose(transform.to_crop(np.array([60.0, 70.0])), [99.5, 99.5])
    np.testing.assert_allclose(transform.to_crop(np.array([35.0, 45.0])), [49.5, 49.5])
    # Resizing the crop to R: r = (u + 0.5) * R / c - 0.5.
    render = transform.resized(224)
    u = np.array([[0.0, 0.0], [13.0, 57.5], [99.0, 99.0]])
    np.testing.assert_allclose(
        render.to_crop(transform.to_original(u)), (u + 0.5) * 224 / 100 - 0.5, atol=1e-9
    )
    # The whole square image is the box (-0.5, -0.5, W): the crop is the image itself.
    image = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert np.array_equal(CropTransform(-0.5, -0.5, 64, 64).crop_image(image), image)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_crop_pixels_land_where_the_transform_says(transform):
    crop = transform.crop_image(_coordinate_image())
    assert crop.shape == (transform.crop_size, transform.crop_size, 3)
    assert crop.dtype == np.float32
    where = _grid(transform)
    margin = 3 if transform.scale < 1 else 0.5  # the antialias blur replicates the border
    inside = (
        (where[..., 0] >= margin)
        & (where[..., 0] <= W - 1 - margin)
        & (where[..., 1] >= margin)
        & (where[..., 1] <= H - 1 - margin)
    )
    assert inside.sum() > 100
    np.testing.assert_allclose(crop[..., :2][inside], where[inside], atol=0.02)
    if transform.scale >= 1:
        # Outside the photo the border is replicated: the value of the nearest border pixel.
        clamped = np.stack([where[..., 0].clip(0, W - 1), where[..., 1].clip(0, H - 1)], -1)
        np.testing.assert_allclose(crop[..., :2], clamped, atol=0.02)


@pytest.mark.parametrize("scale", [3.0, 0.6])
def test_bright_spot_lands_where_the_transform_says(scale):
    px, py = 237.3, 41.6  # off-centre, near the top-right, between pixel centres
    yy, xx = np.mgrid[0:H, 0:W]
    spot = np.exp(-((xx - px) ** 2 + (yy - py) ** 2) / (2 * 3.0**2))
    image = np.repeat(spot[..., None], 3, axis=-1)
    size = 256 / scale
    transform = CropTransform(px - 0.3 * size, py - 0.6 * size, size, 256)
    crop = transform.crop_image(image)
    assert crop.shape == (256, 256, 3)
    weight = crop[..., 0].astype(np.float64)
    v, u = np.mgrid[0:256, 0:256]
    centroid = np.array([(u * weight).sum(), (v * weight).sum()]) / weight.sum()
    np.testing.assert_allclose(centroid, transform.to_crop(np.array([px, py])), atol=0.02)
    # The same spot in uint8 lands there too (uint8 stays uint8).
    crop8 = transform.crop_image((image * 255).round().astype(np.uint8))
    assert crop8.dtype == np.uint8
    weight = crop8[..., 0].astype(np.float64)
    centroid = np.array([(u * weight).sum(), (v * weight).sum()]) / weight.sum()
    np.testing.assert_allclose(centroid, transform.to_crop(np.array([px, py])), atol=0.1)


def test_shrinking_averages_instead_of_aliasing():
    checker = (np.indices((H, W)).sum(axis=0) % 2 * 255).astype(np.uint8)
    transform = CropTransform(20.0, 10.0, 160.0, 40)  # 4 photo pixels per crop pixel
    crop = transform.crop_image(np.repeat(checker[..., None], 3, axis=-1))
    assert abs(float(crop.mean()) - 127.5) < 3 and float(crop.std()) < 6


@pytest.mark.parametrize("transform", TRANSFORMS[:1] + TRANSFORMS[2:])
def test_uncrop_inverts_crop_inside_the_box(transform):
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    smooth = np.stack(
        [
            0.5 + 0.4 * np.sin(xx / 9),
            0.5 + 0.4 * np.cos(yy / 7),
            0.5 + 0.3 * np.sin((xx + yy) / 11),
        ],
        axis=-1,
    ).astype(np.float32)
    crop = transform.crop_image(smooth)
    back = transform.uncrop_image(crop, (H, W))
    assert back.shape == (H, W, 3) and back.dtype == np.float32
    x0, y0, x1, y1 = transform.box
    inner = (xx >= x0 + 1) & (xx <= x1 - 1) & (yy >= y0 + 1) & (yy <= y1 - 1)
    assert inner.sum() > 100
    assert np.abs(back - smooth)[inner].max() < 0.01
    outside = (xx < x0 - 0.5) | (xx > x1 + 0.5) | (yy < y0 - 0.5) | (yy > y1 + 0.5)
    assert outside.any() and (back[outside] == 0).all()
    # uint8 crops come back in 0..1.
    crop8 = transform.crop_image((smooth * 255).round().astype(np.uint8))
    back8 = transform.uncrop_image(crop8, (H, W))
    assert np.abs(back8 - smooth)[inner].max() < 0.015


def test_uncrop_region_matches_uncrop_image_and_checks_the_size():
    transform = TRANSFORMS[3]
    crop = np.random.default_rng(2).random((200, 200, 3)).astype(np.float32)
    rows, cols, values = transform.uncrop_region(crop, (H, W))
    full = transform.uncrop_image(crop, (H, W))
    assert np.array_equal(full[rows, cols], values)
    remainder = full.copy()
    remainder[rows, cols] = 0
    assert not remainder.any()
    with pytest.raises(ValueError, match="resized"):
        transform.uncrop_image(np.zeros((100, 100, 3), np.float32), (H, W))


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_masks(transform):
    mask = np.zeros((H, W), bool)
    mask[60:150, 200:290] = True  # rows 60..149, cols 200..289
    cropped = transform.crop_mask(mask)
    assert cropped.dtype == np.bool_ and cropped.shape == (transform.crop_size,) * 2
    where = _grid(transform)
    x, y = where[..., 0], where[..., 1]
    expected = (x > 199.5) & (x < 289.5) & (y > 59.5) & (y < 149.5)
    tolerance = 1.0 / transform.scale  # one crop pixel, in photo pixels
    near_edge = (
        (np.abs(x - 199.5) < tolerance)
        | (np.abs(x - 289.5) < tolerance)
        | (np.abs(y - 59.5) < tolerance)
        | (np.abs(y - 149.5) < tolerance)
    )
    assert np.array_equal(cropped[~near_edge], expected[~near_edge])
    # Outside the photo a mask is False, even next to a True border.
    everywhere = transform.crop_mask(np.ones((H, W), bool))
    in_photo = (x > -0.5) & (x < W - 0.5) & (y > -0.5) & (y < H - 0.5)
    away = (
        (np.abs(x + 0.5) > tolerance)
        & (np.abs(x - W + 0.5) > tolerance)
        & (np.abs(y + 0.5) > tolerance)
        & (np.abs(y - H + 0.5) > tolerance)
    )
    assert np.array_equal(everywhere[away], in_photo[away])

    back = transform.uncrop_mask(cropped, (H, W))
    assert back.shape == (H, W) and back.dtype == np.float32
    assert back.min() >= 0 and back.max() <= 1
    yy, xx = np.mgrid[0:H, 0:W]
    x0, y0, x1, y1 = transform.box
    edge = 1.5 + 1.0 / transform.scale
    inner = (xx > x0 + edge) & (xx < x1 - edge) & (yy > y0 + edge) & (yy < y1 - edge)
    original_edge = (
        (np.abs(xx - 199.5) < edge)
        | (np.abs(xx - 289.5) < edge)
        | (np.abs(yy - 59.5) < edge)
        | (np.abs(yy - 149.5) < edge)
    )
    check = inner & ~original_edge
    assert np.array_equal(back[check] >= 0.5, mask[check])
    # Bool and float crops give the same result.
    np.testing.assert_allclose(transform.uncrop_mask(cropped.astype(np.float32), (H, W)), back)


def test_crop_image_dtypes_and_shapes():
    transform = TRANSFORMS[0]
    gray = np.random.default_rng(3).random((H, W))
    assert transform.crop_image(gray).shape == (256, 256)
    assert transform.crop_image(gray).dtype == np.float32
    rgba = np.zeros((H, W, 1), np.uint8)
    assert transform.crop_image(rgba).shape == (256, 256, 1)
    with pytest.raises(ValueError, match="must be"):
        transform.crop_image(np.zeros((H, W, 5), np.uint8))
    with pytest.raises(ValueError, match="mask"):
        transform.crop_mask(np.zeros((H, W, 3), bool))


def test_dict_round_trip_and_validation():
    transform = CropTransform(-12.25, 33.5, 141.0, 224)
    data = json.loads(json.dumps(transform.to_dict()))
    assert CropTransform.from_dict(data) == transform
    np.testing.assert_allclose(data["matrix"], transform.matrix)
    assert data["scale"] == pytest.approx(224 / 141)
    with pytest.raises(ValueError, match="size"):
        CropTransform.from_dict({"x0": 0, "y0": 0, "crop_size": 10})
    with pytest.raises(ValueError, match="size"):
        CropTransform(0, 0, 0, 10)
    with pytest.raises(ValueError, match="crop_size"):
        CropTransform(0, 0, 10, 0)
    with pytest.raises(ValueError, match="finite"):
        CropTransform(float("nan"), 0, 10, 10)


def _face_landmarks(cx: float, cy: float, width: float, height: float) -> np.ndarray:
    """68 points filling the box [cx -+ width/2] x [cy -+ height/2] (corners included)."""
    rng = np.random.default_rng(4)
    points = rng.uniform([-0.5, -0.5], [0.5, 0.5], size=(68, 2))
    points[:4] = [[-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5], [0.5, 0.5]]
    return points * [width, height] + [cx, cy]


def test_crop_from_landmarks_centres_and_shifts_up():
    landmarks = _face_landmarks(150.0, 100.0, 80.0, 100.0)
    crop = crop_from_landmarks(landmarks, (H, W), scale=1.25, crop_size=256)
    assert crop.crop_size == 256
    assert crop.size == pytest.approx(1.25 * 100.0)
    x0, y0, x1, y1 = crop.box
    assert (x0 + x1) / 2 == pytest.approx(150.0)
    assert (y0 + y1) / 2 == pytest.approx(100.0 - 0.1 * 100.0)  # room for the forehead
    # Every landmark is inside the crop, with more room above the brows than below the chin.
    in_crop = crop.to_crop(landmarks)
    assert (in_crop > 0).all() and (in_crop < 255).all()
    assert in_crop[:, 1].min() + 0.5 > 255.5 - in_crop[:, 1].max()  # more room above
    no_shift = crop_from_landmarks(torch.tensor(landmarks), (H, W), shift_up=0.0)
    assert (no_shift.box[1] + no_shift.box[3]) / 2 == pytest.approx(100.0)


def test_crop_from_landmarks_off_centre_face_extends_past_the_border():
    landmarks = _face_landmarks(285.0, 20.0, 60.0, 70.0)  # top-right corner of 300x200
    crop = crop_from_landmarks(landmarks, (H, W), scale=1.5, crop_size=128)
    x0, y0, x1, y1 = crop.box
    assert x1 > W and y0 < 0  # the box keeps the face centred instead of clamping
    np.testing.assert_allclose(
        crop.to_crop(np.array([285.0, 20.0 - 0.1 * 70.0])), [63.5, 63.5], atol=1e-9
    )
    image = np.full((H, W, 3), 90, np.uint8)
    image[:, :, 0] = np.linspace(0, 255, W).astype(np.uint8)[None]
    cropped = crop.crop_image(image)
    # Replicated border, not black: the part past the right edge keeps the edge colour.
    assert (cropped[..., 1] == 90).all()
    assert cropped[64, -1, 0] == image[0, -1, 0]


def test_crop_from_landmarks_rejects_bad_input():
    with pytest.raises(ValueError, match="N,2"):
        crop_from_landmarks(np.zeros((68, 3)), (H, W))
    with pytest.raises(ValueError, match="NaN"):
        crop_from_landmarks(np.full((68, 2), np.nan), (H, W))
    with pytest.raises(ValueError, match="one point"):
        crop_from_landmarks(np.full((68, 2), 5.0), (H, W))
    with pytest.raises(ValueError, match="overlap"):
        crop_from_landmarks(_face_landmarks(900.0, 900.0, 50, 50), (H, W))
