"""The built-in demo head: FLAME's layout, labelled not FLAME, looks and moves like a head."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import numpy as np
import pytest
import torch

from flamekit.assets.demo_head import (
    DEMO_RELEASE,
    EXPRESSION_NAMES,
    IDENTITY_NAMES,
    demo_head,
)
from flamekit.model import FlameModel, validate_flame_data
from flamekit.model.lbs import axis_angle_to_matrix
from flamekit.render import OrthographicCamera, Renderer
from flamekit.render.camera import clip_to_pixels

SIZE = 128
SH = torch.zeros(1, 9, 3)
SH[0, 0] = 2.5  # flat ambient light: the image is the albedo, easy to reason about


@pytest.fixture(scope="module")
def head():
    return demo_head()


@pytest.fixture(scope="module")
def model(head):
    return FlameModel(head.data, head.landmarks)


@pytest.fixture(scope="module")
def renderer(head):
    d = head.data
    faces, uvs, uv_faces = (torch.from_numpy(a) for a in (d.faces, d.uvs, d.uv_faces))
    return Renderer(faces, uvs, uv_faces, (SIZE, SIZE), backend="torch")


def _camera(batch: int = 1) -> OrthographicCamera:
    """Frames the head (about 0.3 m tall, centred a little below the origin)."""
    return OrthographicCamera(
        scale=torch.full((batch,), 1.8 / 0.3), translation=torch.tensor([[0.0, 0.02]] * batch)
    )


def _render(head, renderer, vertices: torch.Tensor):
    tex = torch.from_numpy(head.texture).permute(2, 0, 1)[None]
    return renderer(vertices, tex, SH.expand(len(vertices), -1, -1), _camera(len(vertices)))


def _pixels(points: torch.Tensor) -> torch.Tensor:
    """[B,N,3] model points -> [B,N,2] pixel (x, y) of the frontal orthographic camera."""
    return clip_to_pixels(_camera(len(points)).to_clip(points), (SIZE, SIZE))


def _eyeball_mask(head, side: int) -> np.ndarray:
    """Vertices of the left (side 3) or right (side 4) eyeball."""
    return head.data.lbs_weights[:, side] > 0.5


def test_layout_and_labels(head):
    d = head.data
    validate_flame_data(d)
    assert d.is_flame is False
    assert d.release == DEMO_RELEASE == "flamekit demo head (procedural, not FLAME)"
    assert "not FLAME" in d.release and d.source == "built-in"
    assert 2000 <= d.num_vertices <= 6000
    assert d.num_joints == 5 and d.parents.tolist() == [-1, 0, 1, 1, 1]
    assert d.num_identity == len(IDENTITY_NAMES) == 20
    assert d.num_expression == len(EXPRESSION_NAMES) == 10
    assert d.faces.dtype == np.int64 and d.uv_faces.dtype == np.int64
    for name in ("v_template", "shapedirs", "posedirs", "j_regressor", "lbs_weights", "uvs"):
        assert getattr(d, name).dtype == np.float32, name
    assert d.posedirs.shape == (d.num_vertices, 3, 36)
    assert d.uvs.min() > 0.0 and d.uvs.max() < 1.0
    assert head.texture.shape == (256, 256, 3) and head.texture.dtype == np.float32
    assert 0.0 <= head.texture.min() and head.texture.max() <= 1.0
    lm = head.landmarks
    assert lm.static_faces.shape == (51,) and lm.static_bary.shape == (51, 3)
    assert lm.dynamic_faces.shape == (79, 17) and lm.dynamic_bary.shape == (79, 17, 3)
    np.testing.assert_array_equal(lm.full_faces[:17], lm.dynamic_faces[0])
    np.testing.assert_array_equal(lm.full_faces[17:], lm.static_faces)
    for bary in (lm.static_bary, lm.dynamic_bary, lm.full_bary):
        assert bary.min() >= 0.0
        np.testing.assert_allclose(bary.sum(-1), 1.0, atol=1e-6)
    # Life-size, origin near the middle of the head, face towards +z.
    size = d.v_template.max(0) - d.v_template.min(0)
    assert 0.14 < size[0] < 0.22 and 0.24 < size[1] < 0.34 and 0.18 < size[2] < 0.26


def test_cached_but_returns_copies(head):
    first = demo_head()
    first.data.v_template[:] = 0.0
    first.texture[:] = 0.0
    first.landmarks.static_faces[:] = 0
    again = demo_head()
    np.testing.assert_array_equal(again.data.v_template, head.data.v_template)
    np.testing.assert_array_equal(again.texture, head.texture)
    np.testing.assert_array_equal(again.landmarks.static_faces, head.landmarks.static_faces)


def test_mesh_is_closed_and_outward(head):
    """Skin + mouth pocket form one closed, consistently oriented surface; each eyeball is
    another; all enclose positive volume (counter-clockwise seen from outside)."""
    d = head.data
    v = d.v_template.astype(np.float64)
    parts = {"head": ~(_eyeball_mask(head, 3) | _eyeball_mask(head, 4))}
    parts["left eye"], parts["right eye"] = _eyeball_mask(head, 3), _eyeball_mask(head, 4)
    covered = 0
    for name, verts in parts.items():
        faces = d.faces[verts[d.faces].all(1)]
        covered += len(faces)
        edges = Counter((int(f[k]), int(f[(k + 1) % 3])) for f in faces for k in range(3))
        assert all(c == 1 and edges[(b, a)] == 1 for (a, b), c in edges.items()), name
        vol = np.einsum("ij,ij->", v[faces[:, 0]], np.cross(v[faces[:, 1]], v[faces[:, 2]]))
        assert vol > 0, name
    assert covered == d.num_faces


def test_skinning_weights_and_joints(head, model):
    d = head.data
    w = d.lbs_weights
    assert w.min() >= 0.0
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-6)
    left, right = _eyeball_mask(head, 3), _eyeball_mask(head, 4)
    assert 50 < left.sum() == right.sum() < 600
    np.testing.assert_array_equal(w[left, 3], 1.0)
    np.testing.assert_array_equal(w[right, 4], 1.0)
    assert not w[~(left | right)][:, 3:].any()  # nothing else hangs on the eye joints
    assert w[:, 2].max() == 1.0 and (w[:, 2] > 0).sum() > 200  # a real jaw
    reg = d.j_regressor
    assert reg.min() >= 0.0
    np.testing.assert_allclose(reg.sum(1), 1.0, atol=1e-6)
    rest = model(batch_size=1)
    joints = rest.joints[0].numpy()
    v = d.v_template
    np.testing.assert_allclose(joints[3], v[left].mean(0), atol=1e-6)
    np.testing.assert_allclose(joints[4], v[right].mean(0), atol=1e-6)
    assert joints[3, 0] > 0.02 and joints[4, 0] < -0.02  # left eye on +x
    assert np.abs(joints[:3, 0]).max() < 1e-4  # root, neck and jaw on the mid-plane
    root, neck, jaw, eye = joints[0], joints[1], joints[2], joints[3]
    assert root[1] < neck[1] < jaw[1] < eye[1]  # neck base, skull base, jaw hinge, eyes
    mouth = rest.landmarks[0, 62].numpy()  # inner upper lip
    assert jaw[2] < mouth[2] - 0.05 and jaw[1] > mouth[1]  # hinge behind and above the mouth


def test_blendshapes_are_smooth_sized_and_keep_the_eyes_rigid(head):
    d = head.data
    sd = d.shapedirs.astype(np.float64)
    assert sd.shape == (d.num_vertices, 3, 30)
    magnitude = np.linalg.norm(sd, axis=1).max(0)  # metres per unit coefficient
    assert (magnitude > 0.002).all() and (magnitude < 0.015).all(), magnitude
    for side in (3, 4):
        eye = sd[_eyeball_mask(head, side)]
        np.testing.assert_allclose(eye, np.broadcast_to(eye[:1], eye.shape), atol=1e-9)
    squint = d.num_identity + EXPRESSION_NAMES.index("eye_squint")
    eyes = _eyeball_mask(head, 3) | _eyeball_mask(head, 4)
    assert not sd[eyes, :, d.num_identity :].any()  # expressions never move the eyeballs
    assert np.abs(sd[:, 2, squint]).max() > 0.002  # ... but the lids do


def test_only_the_jaw_has_a_pose_corrective(head, model):
    """The jaw's corrective keeps blended skin from caving in, driven by sin(opening)."""
    d = head.data
    used = np.flatnonzero(np.abs(d.posedirs).sum((0, 1)) > 0)
    assert set(used.tolist()) == {9 + 5, 9 + 7}  # R[1,2] and R[2,1] of the jaw
    moved = np.linalg.norm(d.posedirs[:, :, 9 + 7], axis=1) > 0
    jaw = d.lbs_weights[:, 2]
    assert moved.sum() > 50 and ((jaw[moved] > 0) & (jaw[moved] < 1)).all()
    # Pushed outwards: the posed skin lies further from the jaw hinge than plain LBS puts it.
    flat = FlameModel(dataclasses.replace(d, posedirs=np.zeros_like(d.posedirs)))
    pose = torch.tensor([[0.3, 0.0, 0.0]])
    with_corrective = model(jaw_pose=pose).vertices[0, moved]
    without = flat(jaw_pose=pose).vertices[0, moved]
    hinge = model(batch_size=1).joints[0, 2]
    gain = (with_corrective - hinge).norm(dim=-1) - (without - hinge).norm(dim=-1)
    assert gain.mean() > 0 and gain.abs().max() < 0.002


def test_frontal_render_looks_like_a_head(head, model, renderer):
    out = model(batch_size=1)
    render = _render(head, renderer, out.vertices)
    mask = render.mask[0, 0].numpy() > 0.5
    rows, cols = np.nonzero(mask)
    height, width = np.ptp(rows) + 1, np.ptp(cols) + 1
    assert height > 1.2 * width  # a head on a neck, taller than wide
    assert 0.25 < mask.mean() < 0.7
    assert abs(cols.mean() - SIZE / 2) < 3 and abs(rows.mean() - SIZE / 2) < 12

    px = _pixels(out.landmarks)[0].numpy()
    inside = mask[px[:, 1].astype(int).clip(0, SIZE - 1), px[:, 0].astype(int).clip(0, SIZE - 1)]
    assert inside.all(), np.flatnonzero(~inside)
    x, y = px[:, 0], px[:, 1]  # image y grows downwards
    eyes_y, nose_tip_y = y[36:48].mean(), y[30]
    mouth_y, chin_y = y[48:68].mean(), y[8]
    assert y[17:27].mean() < eyes_y < nose_tip_y < mouth_y < chin_y
    assert x[36:42].max() < x[42:48].min()  # the subject's right eye on the image's left
    assert x[17:22].max() < x[22:27].min()
    assert x[0] < x[8] < x[16] and x[48] < x[54] and x[31] < x[35]
    assert x[36] < x[39] < x[42] < x[45]  # outer/inner corners, right then left eye
    # The pupils show through the lids: dark albedo at the projected eye centres.
    eye_px = _pixels(out.joints[:, 3:5])[0].numpy().astype(int)
    albedo = render.albedo[0].numpy()
    assert albedo[:, eye_px[:, 1], eye_px[:, 0]].max() < 0.2


def test_jaw_opens_the_mouth(head, model, renderer):
    rest = model(batch_size=1)
    opened = model(jaw_pose=torch.tensor([[0.3, 0.0, 0.0]]))
    gap_rest = (rest.landmarks[0, 62] - rest.landmarks[0, 66]).norm()
    gap_open = (opened.landmarks[0, 62] - opened.landmarks[0, 66]).norm()
    assert gap_rest < 1e-4 and gap_open > gap_rest + 0.008
    assert opened.landmarks[0, 66, 1] < rest.landmarks[0, 66, 1] - 0.008  # lower lip down
    torch.testing.assert_close(opened.landmarks[0, 62], rest.landmarks[0, 62])  # upper stays
    assert opened.landmarks[0, 8, 1] < rest.landmarks[0, 8, 1] - 0.01  # chin down
    moved = (opened.vertices[0] - rest.vertices[0]).norm(dim=-1) > 1e-7
    jaw = torch.from_numpy(head.data.lbs_weights[:, 2]) > 0
    assert moved.any() and not (moved & ~jaw).any()
    # The open mouth shows the dark pocket, not the inside of the skull.
    images = _render(head, renderer, torch.cat([rest.vertices, opened.vertices]))
    mid = _pixels(0.5 * (opened.landmarks[:, 62] + opened.landmarks[:, 66])[:, None])[0, 0]
    col, row = int(mid[0]), int(mid[1])
    closed_mouth = images.albedo[0, :, row, col]
    open_mouth = images.albedo[1, :, row - 1 : row + 2, col - 1 : col + 2]
    assert images.mask[1, 0, row, col] == 1
    assert open_mouth.max() < 0.25 and closed_mouth.mean() > 0.3


def test_eyes_rotate_about_their_centres(head, model):
    rest = model(batch_size=1)
    pose = torch.tensor([[0.2, 0.35, 0.0, -0.1, 0.3, 0.0]])
    turned = model(eye_pose=pose)
    v0, v1 = rest.vertices[0], turned.vertices[0]
    for side, joint in ((3, 3), (4, 4)):
        eye = torch.from_numpy(_eyeball_mask(head, side))
        centre = rest.joints[0, joint]
        torch.testing.assert_close(turned.joints[0, joint], centre)
        torch.testing.assert_close(
            (v1[eye] - centre).norm(dim=-1), (v0[eye] - centre).norm(dim=-1), atol=1e-6, rtol=0
        )
        rot = axis_angle_to_matrix(pose[:, 3 * (joint - 3) : 3 * (joint - 2)])[0]
        torch.testing.assert_close(v1[eye] - centre, (v0[eye] - centre) @ rot.T, atol=1e-6, rtol=0)
    others = torch.from_numpy(~(_eyeball_mask(head, 3) | _eyeball_mask(head, 4)))
    torch.testing.assert_close(v1[others], v0[others])


def _yawed(model, degrees: float):
    a = math.radians(degrees)
    return model(global_pose=torch.tensor([[0.0, a, 0.0]]))


def test_contour_follows_the_silhouette_with_yaw(head, model):
    lm = head.landmarks
    assert not np.array_equal(lm.dynamic_faces[0], lm.dynamic_faces[25])
    assert not np.array_equal(lm.dynamic_faces[25], lm.dynamic_faces[40 + 24])
    # Mirror-symmetric at zero yaw; chin points stay put.
    p0 = model(batch_size=1).landmarks[0].numpy()
    np.testing.assert_allclose(p0[:17, 0], -p0[16::-1, 0], atol=2e-3)
    v = head.data.v_template.astype(np.float64)
    d = head.data
    skin = (d.lbs_weights[:, 3] + d.lbs_weights[:, 4]) == 0
    for yaw in (25.0, -25.0):
        out = _yawed(model, yaw)
        assert int(out.contour_bins[0]) == (25 if yaw > 0 else 40 + 24)
        a = math.radians(yaw)
        # Turning by +yaw about +y takes the head's left side (+x, points 10..16) away from
        # the camera: its contour points move onto the cheek's silhouette, the outermost
        # points of their horizontal sections in the rotated view.
        away = range(10, 17) if yaw > 0 else range(0, 7)
        sign = 1.0 if yaw > 0 else -1.0
        f = d.faces[lm.dynamic_faces[int(out.contour_bins[0])]]
        pts = np.einsum("pk,pkd->pd", lm.dynamic_bary[int(out.contour_bins[0])], v[f])
        xr = v[:, 0] * math.cos(a) + v[:, 2] * math.sin(a)
        for k in away:
            band = skin & (np.abs(v[:, 1] - pts[k, 1]) < 0.003) & (sign * v[:, 0] > 0)
            band &= np.abs(np.arctan2(v[:, 0], v[:, 2])) < 1.35  # in front of the ears
            x_k = pts[k, 0] * math.cos(a) + pts[k, 2] * math.sin(a)
            assert sign * x_k >= (sign * xr[band]).max() - 0.003, k
            assert pts[k, 2] > p0[k, 2] + 0.005  # moved forward from the frontal contour
