"""rasterize against the brute-force float64 reference, the fill rule and input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flamekit.render import OrthographicCamera, PerspectiveCamera, get_backend
from tests.conftest import requires_extension
from tests.reference import brute_force_rasterize
from tests.scenes import grid_mesh, random_scene, rotation

BACKENDS = [
    pytest.param("flamekit", marks=requires_extension),
    "torch",
]


def assert_matches_reference(rast: torch.Tensor, pos, tri, resolution, min_decisive=0.9):
    """Same triangle ids wherever the runner-up's depth differs by more than 1e-5 and no
    coverage is ambiguous; barycentrics and depth within 1e-5 where ids agree."""
    ref = brute_force_rasterize(pos.double().numpy(), tri.numpy(), resolution)
    ids = rast[..., 3].long().numpy() - 1
    decisive = ~ref.ambiguous & ((ref.runner_up - ref.depth) > 1e-5)
    assert decisive.mean() > min_decisive, f"only {decisive.mean():.2%} decisive pixels"
    mismatch = decisive & (ids != ref.tri_id)
    assert not mismatch.any(), (
        f"{mismatch.sum()} pixels with different triangle ids, e.g. at "
        f"{np.argwhere(mismatch)[:5].tolist()}"
    )
    covered = (ids == ref.tri_id) & (ids >= 0)
    r = rast.double().numpy()
    bary_err = np.abs(r[..., :2] - ref.bary)[covered].max(initial=0)
    depth_err = np.abs(r[..., 2] - ref.depth)[covered].max(initial=0)
    assert bary_err < 1e-5, f"barycentric error {bary_err}"
    assert depth_err < 1e-5, f"depth error {depth_err}"
    assert np.all(r[ids < 0] == 0), "background pixels must be all zero"
    return covered.sum()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("resolution", [(37, 53), (64, 48)])
def test_random_scenes_match_brute_force(backend, seed, resolution):
    pos, tri = random_scene(seed)
    rast = get_backend(backend).rasterize(pos, tri, resolution)
    assert rast.shape == (2, *resolution, 4) and rast.dtype == torch.float32
    covered = assert_matches_reference(rast, pos, tri, resolution)
    assert covered > 100


@requires_extension
def test_special_triangles_behave():
    pos, tri = random_scene(3)
    rast = get_backend("flamekit").rasterize(pos, tri, (40, 40))
    ids = set(rast[..., 3].long().unique().tolist())
    assert 7 in ids, "the triangle larger than the image (id 6) must be drawn"
    assert 8 not in ids and 9 not in ids, "degenerate triangles must not be drawn"
    assert 10 not in ids, "a triangle with a vertex behind the camera must be skipped"


def _flame_clip_scenes(mesh):
    verts = mesh.vertices[None]
    for yaw, pitch, roll in [(0, 0, 0), (35, -10, 5), (-70, 15, -10), (180, 0, 0)]:
        r = rotation(yaw, pitch, roll)
        v = verts @ r.T
        ortho = OrthographicCamera(torch.tensor([4.0]), torch.tensor([[0.01, -0.02]]))
        yield f"ortho-{yaw}", ortho.to_clip(v)
        persp = PerspectiveCamera(
            focal=torch.tensor([[130.0, 125.0]]),
            principal_point=torch.tensor([[33.0, 30.0]]),
            rotation=torch.diag(torch.tensor([1.0, -1.0, -1.0]))[None] @ r[None],
            translation=torch.tensor([[0.0, 0.0, 0.55]]),
            image_size=(60, 68),
        )
        yield f"persp-{yaw}", persp.to_clip(verts)


@pytest.mark.parametrize("backend", BACKENDS)
def test_flame_topology_matches_brute_force(backend, flame_topology):
    tri = flame_topology.faces.int()
    for name, clip in _flame_clip_scenes(flame_topology):
        rast = get_backend(backend).rasterize(clip.contiguous(), tri, (60, 68))
        covered = assert_matches_reference(rast, clip, tri, (60, 68), min_decisive=0.6)
        assert covered > 300, name


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("w", [1.0, 2.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_shared_edges_are_covered_exactly_once(backend, w, seed):
    size = 32
    pos, tri = grid_mesh(cells=8, size=size, w=w, seed=seed)
    be = get_backend(backend)
    count = torch.zeros(size, size, dtype=torch.int64)
    for f in range(tri.shape[0]):
        count += (be.rasterize(pos, tri[f : f + 1], (size, size))[0, ..., 3] > 0).long()
    full = be.rasterize(pos, tri, (size, size))[0, ..., 3] > 0
    # Pixel centres strictly inside the grid's outer boundary: exactly once.
    lo, hi = (size - 8 * (size // 8)) // 2, (size - 8 * (size // 8)) // 2 + 8 * (size // 8)
    interior = count[lo + 1 : hi, lo + 1 : hi]
    assert torch.all(interior == 1), f"coverage counts {interior.unique().tolist()}"
    assert count.max() == 1
    assert torch.equal(full, count > 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_depth_ties_go_to_lower_triangle_id(backend):
    v = torch.tensor([[-0.9, -0.9, 0.2, 1], [0.9, -0.9, 0.2, 1], [0.0, 0.9, 0.2, 1]])
    pos = torch.cat([v, v])[None]
    tri = torch.tensor([[3, 4, 5], [0, 1, 2]], dtype=torch.int32)
    rast = get_backend(backend).rasterize(pos, tri, (16, 16))
    ids = rast[..., 3]
    assert ids.max() == 1 and (ids == 1).sum() > 50


@requires_extension
def test_fragments_outside_depth_range_are_discarded():
    from flamekit.render import rasterize

    pos = torch.tensor([[[-1.0, -1, -1.5, 1], [3, -1, 0.5, 1], [-1, 3, 0.5, 1]]])
    rast = rasterize(pos, torch.tensor([[0, 1, 2]]), (16, 16))
    z = rast[..., 2][rast[..., 3] > 0]
    assert z.min() >= -1 and z.max() <= 1
    assert 0 < (rast[..., 3] > 0).sum() < 256


@requires_extension
def test_float64_rasterize_matches_float32():
    from flamekit.render import rasterize

    pos, tri = random_scene(4)
    r32 = rasterize(pos, tri, (30, 40))
    r64 = rasterize(pos.double(), tri, (30, 40))
    same = r32[..., 3] == r64[..., 3].float()
    assert same.float().mean() > 0.99
    assert torch.allclose(r32[same], r64.float()[same], atol=1e-5)


@requires_extension
@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p, t: (p[..., :3], t), "[B,V,4]"),
        (lambda p, t: (p.half(), t), "float32 or float64"),
        (lambda p, t: (p, t + 1000), "indexes vertex"),
        (lambda p, t: (p, t - 1000), "negative vertex index"),
        (lambda p, t: (p, t[:, :2]), "[F,3]"),
    ],
)
def test_bad_inputs_raise_clear_errors(make, message):
    from flamekit._extension import load_extension

    pos, tri = random_scene(0)
    bad_pos, bad_tri = make(pos, tri)
    with pytest.raises(RuntimeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_extension().rasterize_forward(bad_pos.contiguous(), bad_tri.contiguous(), 8, 8)


@requires_extension
def test_noncontiguous_inputs_are_rejected_by_the_binding_and_fixed_by_the_op():
    from flamekit._extension import load_extension
    from flamekit.render import rasterize

    pos, tri = random_scene(0)
    strided = torch.stack([pos, pos], dim=-1)[..., 0]
    with pytest.raises(RuntimeError, match="contiguous"):
        load_extension().rasterize_forward(strided, tri, 8, 8)
    assert torch.equal(rasterize(strided, tri, (8, 8)), rasterize(pos, tri, (8, 8)))


@requires_extension
def test_index_check_is_not_fooled_by_reused_memory_or_in_place_edits():
    from flamekit._extension import load_extension

    ext = load_extension()
    pos = torch.rand(1, 10, 4)
    pos[..., 3] = 1
    for _ in range(50):
        good = torch.randint(0, 10, (5, 3), dtype=torch.int32)
        ext.rasterize_forward(pos, good, 4, 4)
        del good  # the next buffer may reuse its memory
        bad = torch.randint(0, 10, (5, 3), dtype=torch.int32)
        bad[2, 1] = 10
        with pytest.raises(RuntimeError, match="indexes vertex 10"):
            ext.rasterize_forward(pos, bad, 4, 4)
    tri = torch.randint(0, 10, (5, 3), dtype=torch.int32)
    ext.rasterize_forward(pos, tri, 4, 4)
    tri[0, 0] = 50
    with pytest.raises(RuntimeError, match="indexes vertex 50"):
        ext.rasterize_forward(pos, tri, 4, 4)


@requires_extension
def test_rast_paired_with_a_smaller_index_buffer_raises_a_clear_error():
    """Triangle ids in rast beyond the index buffer passed with it (a rast of another mesh,
    or an edited one) are never dereferenced: every CPU op that reads them names the
    problem."""
    from flamekit._extension import load_extension
    from flamekit.render import interpolate

    ext = load_extension()
    pos, tri = random_scene(0)
    rast = ext.rasterize_forward(pos, tri, 32, 32)
    covered_ids = rast[..., 3].long().unique()
    assert covered_ids.max() > 1
    fewer = tri[: int(covered_ids[1]) - 1].contiguous()  # too few for every covered id
    attr = torch.rand(pos.shape[1], 3)
    message = r"hold a triangle id that tri does not have \(tri has \d+ triangles\)"
    with pytest.raises(RuntimeError, match=message):
        interpolate(attr, rast, fewer)
    grad = torch.ones(*rast.shape[:3], 3)
    with pytest.raises(RuntimeError, match=message):
        ext.interpolate_backward(attr, rast, fewer, grad)
    with pytest.raises(RuntimeError, match=message):
        ext.rasterize_backward(pos, fewer, rast, torch.ones_like(rast))
    edited = rast.clone()
    edited[0, 0, 0, 3] = float("nan")
    with pytest.raises(RuntimeError, match=message):
        interpolate(attr, edited, tri)
