"""FlameModel: LBS invariants, pose correctives, landmarks (68 with yaw contour, MediaPipe)."""

from __future__ import annotations

import copy
import dataclasses
import math
import pickle

import numpy as np
import pytest
import torch

from flamekit.model import (
    FlameFileError,
    FlameModel,
    load_flame,
    load_landmark_embedding,
    load_mediapipe_embedding,
)
from flamekit.model.landmarks import contour_bins
from flamekit.model.lbs import axis_angle_to_matrix
from tests.conftest import SHARED


@pytest.fixture(scope="module")
def head():
    """(FlameData, LandmarkEmbedding): the shared FLAME test model, else the demo head."""
    model = SHARED / "flame_test_model" / "flame2023_open_test.pkl"
    lmk = SHARED / "flame_topology" / "landmark_embedding.npz"
    if model.is_file() and lmk.is_file():
        return load_flame(model), load_landmark_embedding(lmk)
    from flamekit.assets.demo_head import demo_head

    demo = demo_head()
    return demo.data, demo.landmarks


@pytest.fixture(scope="module")
def model(head):
    return FlameModel(*head)


@pytest.fixture(scope="module")
def skinning_only(head):
    """The same model without pose correctives, to test the skinning alone."""
    data, landmarks = head
    flat = dataclasses.replace(data, posedirs=np.zeros_like(data.posedirs))
    return FlameModel(flat, landmarks)


def _weights(model, joint: int) -> torch.Tensor:
    return model.lbs_weights[:, joint]


def test_zero_parameters_give_template(model):
    out = model(batch_size=2)
    assert out.vertices.shape == (2, model.num_vertices, 3)
    torch.testing.assert_close(out.vertices[1], model.v_template, atol=1e-6, rtol=0)
    assert out.landmarks.shape == (2, 68, 3)
    assert out.joints.shape == (2, 5, 3)


def test_global_rotation_is_rigid_about_the_root(model):
    aa = torch.tensor([[0.3, -0.5, 0.2]])
    out = model(global_pose=aa)
    rest = model(batch_size=1)
    rot = axis_angle_to_matrix(aa)[0]
    root = rest.joints[0, 0]
    expected = (rest.vertices[0] - root) @ rot.T + root
    torch.testing.assert_close(out.vertices[0], expected, atol=2e-6, rtol=0)


def test_jaw_moves_only_jaw_weighted_vertices(skinning_only):
    out = skinning_only(jaw_pose=torch.tensor([[0.3, 0.0, 0.0]]))
    moved = (out.vertices[0] - skinning_only.v_template).norm(dim=-1) > 1e-6
    jaw = _weights(skinning_only, 2) > 0
    assert moved.any()
    assert not (moved & ~jaw).any()
    # The chin (most jaw-weighted vertices) moves down when the mouth opens.
    chin = _weights(skinning_only, 2) > 0.9
    assert (out.vertices[0, chin, 1] - skinning_only.v_template[chin, 1]).mean() < -1e-3


def test_eyes_move_only_eyeballs_about_their_centres(skinning_only):
    eyes = torch.tensor([[0.0, 0.4, 0.0, 0.2, -0.3, 0.0]])
    out = skinning_only(eye_pose=eyes)
    moved = (out.vertices[0] - skinning_only.v_template).norm(dim=-1) > 1e-6
    left, right = _weights(skinning_only, 3) > 0, _weights(skinning_only, 4) > 0
    assert moved.any() and not (moved & ~(left | right)).any()
    for mask, joint in ((left, 3), (right, 4)):
        centre = out.joints[0, joint]
        before = (skinning_only.v_template[mask] - centre).norm(dim=-1)
        after = (out.vertices[0, mask] - centre).norm(dim=-1)
        torch.testing.assert_close(after, before, atol=1e-6, rtol=0)


def test_pose_correctives_follow_the_formula(model, skinning_only):
    """v = skin(v_template + posedirs . vec(R_j - I)) over joints 1..4, with the same joints."""
    pose = {"neck_pose": torch.tensor([[0.1, 0.2, -0.1]]), "jaw_pose": torch.tensor([[0.25, 0, 0]])}
    rots = axis_angle_to_matrix(
        torch.tensor([[0.1, 0.2, -0.1], [0.25, 0, 0], [0, 0, 0], [0, 0, 0]])
    )
    feature = (rots - torch.eye(3)).reshape(-1)
    offsets = (feature @ model.posedirs).view(-1, 3)
    probe = copy.deepcopy(skinning_only)
    probe.v_template = probe.v_template + offsets  # joints stay: they come from j_template
    with_correctives = model(**pose).vertices
    torch.testing.assert_close(with_correctives, probe(**pose).vertices, atol=2e-6, rtol=0)
    assert (with_correctives - skinning_only(**pose).vertices).abs().max() > 1e-5


def test_batch_equals_items(model):
    torch.manual_seed(0)
    b = 3
    params = {
        "identity": 0.5 * torch.randn(b, model.num_identity),
        "expression": 0.5 * torch.randn(b, model.num_expression),
        "global_pose": 0.2 * torch.randn(b, 3),
        "neck_pose": 0.1 * torch.randn(b, 3),
        "jaw_pose": 0.1 * torch.rand(b, 3),
        "eye_pose": 0.1 * torch.randn(b, 6),
        "translation": 0.05 * torch.randn(b, 3),
    }
    batch = model(**params)
    for i in range(b):
        item = model(**{k: v[i : i + 1] for k, v in params.items()})
        torch.testing.assert_close(batch.vertices[i], item.vertices[0], atol=1e-6, rtol=0)
        torch.testing.assert_close(batch.landmarks[i], item.landmarks[0], atol=1e-6, rtol=0)


def test_gradients_reach_every_parameter(model):
    names = (
        "identity",
        "expression",
        "global_pose",
        "neck_pose",
        "jaw_pose",
        "eye_pose",
        "translation",
    )
    sizes = (model.num_identity, model.num_expression, 3, 3, 3, 6, 3)
    params = {
        n: (0.05 * torch.randn(2, s)).requires_grad_() for n, s in zip(names, sizes, strict=True)
    }
    out = model(**params)
    (out.vertices.square().sum() + out.landmarks.square().sum()).backward()
    for name, value in params.items():
        assert value.grad is not None and value.grad.abs().sum() > 0, name
        assert torch.isfinite(value.grad).all(), name


def test_rotation_matches_matrix_exponential_and_gradcheck():
    torch.manual_seed(1)
    for scale in (1e-6, 1e-3, 1.0, 3.0):
        aa = scale * torch.randn(16, 3, dtype=torch.float64)
        x, y, z = aa.unbind(-1)
        zero = torch.zeros_like(x)
        skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).view(-1, 3, 3)
        torch.testing.assert_close(axis_angle_to_matrix(aa), torch.linalg.matrix_exp(skew))
    zero_pose = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(axis_angle_to_matrix, (zero_pose,))
    assert torch.autograd.gradcheck(
        axis_angle_to_matrix, (torch.randn(4, 3, dtype=torch.float64, requires_grad=True),)
    )


def test_model_gradcheck_float64(head):
    data, landmarks = head
    model = FlameModel(data, landmarks, num_identity=3, num_expression=2).double()
    inputs = (
        torch.randn(1, 3, dtype=torch.float64, requires_grad=True),
        (0.2 * torch.randn(1, 3, dtype=torch.float64)).requires_grad_(),
        (0.2 * torch.randn(1, 3, dtype=torch.float64)).requires_grad_(),
    )

    def landmarks_of(identity, jaw, neck):
        return model(identity=identity, jaw_pose=jaw, neck_pose=neck).landmarks

    assert torch.autograd.gradcheck(landmarks_of, inputs, eps=1e-6, atol=1e-5)


def test_component_counts_truncate(head):
    data, landmarks = head
    full = FlameModel(data, landmarks)
    small = FlameModel(data, landmarks, num_identity=5, num_expression=3)
    ident, expr = torch.randn(1, 5), torch.randn(1, 3)
    padded = full(
        identity=torch.cat([ident, torch.zeros(1, full.num_identity - 5)], 1),
        expression=torch.cat([expr, torch.zeros(1, full.num_expression - 3)], 1),
    )
    torch.testing.assert_close(small(identity=ident, expression=expr).vertices, padded.vertices)
    # Fewer columns than the model has: the rest are zero.
    torch.testing.assert_close(full(identity=ident, expression=expr).vertices, padded.vertices)
    with pytest.raises(ValueError, match="identity components"):
        FlameModel(data, landmarks, num_identity=data.num_identity + 1)
    with pytest.raises(ValueError, match="identity must be"):
        small(identity=torch.zeros(1, 6))
    with pytest.raises(ValueError, match="jaw_pose must be"):
        small(jaw_pose=torch.zeros(2, 2))


def test_landmarks_at_zero_pose_are_template_interpolation(head):
    data, landmarks = head
    out = FlameModel(data, landmarks)(batch_size=1)
    faces = np.concatenate([landmarks.dynamic_faces[0], landmarks.static_faces])
    bary = np.concatenate([landmarks.dynamic_bary[0], landmarks.static_bary])
    corners = data.v_template[data.faces[faces]]  # [68,3,3]
    expected = (corners * bary[:, :, None]).sum(1)
    np.testing.assert_allclose(out.landmarks[0].numpy(), expected, atol=1e-6)
    if landmarks.full_faces is not None:
        full = data.v_template[data.faces[landmarks.full_faces]] * landmarks.full_bary[..., None]
        np.testing.assert_allclose(out.landmarks[0, 17:].numpy(), full.sum(1)[17:], atol=1e-6)


def test_contour_bins_follow_yaw():
    yaw = torch.tensor([0.0, 0.4, 12.6, 39.0, 60.0, -0.6, -1.0, -39.0, -80.0])
    assert contour_bins(yaw).tolist() == [0, 0, 13, 39, 39, 40, 40, 78, 78]


def test_contour_landmarks_switch_with_yaw_onto_the_silhouette(model):
    """Turned +20 degrees about +y, the head's left side (+x) faces away: its contour points
    move toward the face and lie further out in the image than the frontal contour would."""
    angle = math.radians(20.0)
    turned = model(global_pose=torch.tensor([[0.0, angle, 0.0]]))
    frontal_choice = model(batch_size=1)
    assert turned.contour_bins.tolist() == [20]
    rot = axis_angle_to_matrix(torch.tensor([0.0, angle, 0.0]))
    # Frontal contour points carried along by the same rotation.
    carried = frontal_choice.landmarks[0, :17] @ rot.T
    chosen = turned.landmarks[0, :17]
    assert not torch.allclose(carried, chosen)
    # Far side (image right = +x, contour points 9..16): the chosen points are the outline.
    assert (chosen[12:17, 0] >= carried[12:17, 0] - 1e-4).all()
    # Negative yaw picks bins 40.., mirrored: now the right side (-x) is the outline.
    back = model(global_pose=torch.tensor([[0.0, -angle, 0.0]]))
    assert back.contour_bins.tolist() == [59]
    carried = (
        frontal_choice.landmarks[0, :17] @ axis_angle_to_matrix(torch.tensor([0.0, -angle, 0.0])).T
    )
    assert (back.landmarks[0, 0:5, 0] <= carried[0:5, 0] + 1e-4).all()


def test_translation_shifts_everything(model):
    t = torch.tensor([[0.1, -0.2, 0.3]])
    moved, rest = model(translation=t), model(batch_size=1)
    torch.testing.assert_close(moved.vertices, rest.vertices + t[:, None])
    torch.testing.assert_close(moved.landmarks, rest.landmarks + t[:, None])
    torch.testing.assert_close(moved.joints, rest.joints + t[:, None])


def test_vertex_normals(model):
    out = model(batch_size=1)
    normals = model.vertex_normals(out.vertices)
    assert normals.shape == out.vertices.shape
    used = torch.zeros(model.num_vertices, dtype=torch.bool)
    used[model.faces.reshape(-1)] = True
    torch.testing.assert_close(normals[0, used].norm(dim=-1), torch.ones(int(used.sum())))


# ---------------------------------------------------------------- landmark file layouts


@pytest.fixture(scope="module")
def shared_embedding(shared_data):
    return load_landmark_embedding(shared_data / "flame_topology" / "landmark_embedding.npz")


def _same_embedding(a, b) -> None:
    np.testing.assert_array_equal(a.static_faces, b.static_faces)
    np.testing.assert_allclose(a.static_bary, b.static_bary)
    np.testing.assert_array_equal(a.dynamic_faces, b.dynamic_faces)
    np.testing.assert_allclose(a.dynamic_bary, b.dynamic_bary)


def test_embedding_npy_pickle_with_torch_tensors(shared_embedding, tmp_path):
    """Users' landmark_embedding.npy: a numpy-saved dict whose dynamic entries are tensors."""
    e = shared_embedding
    content = {
        "static_lmk_faces_idx": e.static_faces,
        "static_lmk_bary_coords": e.static_bary,
        "dynamic_lmk_faces_idx": torch.from_numpy(e.dynamic_faces),
        "dynamic_lmk_bary_coords": torch.from_numpy(e.dynamic_bary),
        "full_lmk_faces_idx": e.full_faces[None],
        "full_lmk_bary_coords": e.full_bary[None],
    }
    path = tmp_path / "landmark_embedding.npy"
    np.save(path, content, allow_pickle=True)
    loaded = load_landmark_embedding(path)
    _same_embedding(loaded, e)
    np.testing.assert_array_equal(loaded.full_faces, e.full_faces)


def test_embedding_ringnet_pair(shared_embedding, tmp_path):
    e = shared_embedding
    static = tmp_path / "flame_static_embedding.pkl"
    with static.open("wb") as handle:
        pickle.dump({"lmk_face_idx": e.static_faces, "lmk_b_coords": e.static_bary}, handle, 2)
    with pytest.raises(FlameFileError, match="flame_dynamic_embedding.npy"):
        load_landmark_embedding(static)
    np.save(
        tmp_path / "flame_dynamic_embedding.npy",
        {"lmk_face_idx": e.dynamic_faces, "lmk_b_coords": e.dynamic_bary},
        allow_pickle=True,
    )
    _same_embedding(load_landmark_embedding(static), e)


def test_embedding_untrusted_npy_refused(tmp_path):
    class Boom:
        def __reduce__(self):
            import os

            return (os.system, ("echo hacked",))

    path = tmp_path / "landmark_embedding.npy"
    np.save(path, {"static_lmk_faces_idx": Boom()}, allow_pickle=True)
    with pytest.raises(FlameFileError, match="refusing to load"):
        load_landmark_embedding(path)


def test_embedding_errors(tmp_path):
    with pytest.raises(FlameFileError, match="not found"):
        load_landmark_embedding(tmp_path / "landmark_embedding.npy")
    bad = tmp_path / "bad.npz"
    np.savez(
        bad,
        static_lmk_faces_idx=np.zeros(50, np.int64),
        static_lmk_bary_coords=np.zeros((50, 3)),
        dynamic_lmk_faces_idx=np.zeros((79, 17)),
        dynamic_lmk_bary_coords=np.zeros((79, 17, 3)),
    )
    with pytest.raises(FlameFileError, match=r"static: faces \(50,\)"):
        load_landmark_embedding(bad)


def test_mediapipe_embedding(shared_data, head):
    data, landmarks = head
    if not data.is_flame:
        pytest.skip("needs the FLAME test model")
    mp = load_mediapipe_embedding(
        shared_data / "flame_test_model" / "mediapipe_landmark_embedding.npz"
    )
    assert mp.faces.shape == (105,) and mp.landmark_indices.shape == (105,)
    model = FlameModel(data, landmarks, mediapipe=mp)
    out = model(batch_size=2)
    assert out.mediapipe_landmarks.shape == (2, 105, 3)
    corners = data.v_template[data.faces[mp.faces]]
    np.testing.assert_allclose(
        out.mediapipe_landmarks[0].numpy(), (corners * mp.bary[..., None]).sum(1), atol=1e-6
    )
