"""The Renderer: backends agree, cameras follow their documented projections, outputs."""

from __future__ import annotations

import pytest
import torch

from flamekit.assets.procedural_head import procedural_head
from flamekit.demo import DEFAULT_SH, yaw_rotation
from flamekit.render import (
    BackendUnavailableError,
    OrthographicCamera,
    PerspectiveCamera,
    RasterBackend,
    Renderer,
    clip_to_pixels,
    get_backend,
    list_backends,
    register_backend,
)
from tests.conftest import requires_extension


def _scene(vertices, batch=2):
    centre = (vertices.amax(0) + vertices.amin(0)) / 2
    rot = yaw_rotation(torch.linspace(-30, 40, batch))
    verts = (vertices - centre) @ rot.transpose(1, 2)
    extent = float((vertices.amax(0) - vertices.amin(0)).max())
    camera = OrthographicCamera(torch.full((batch,), 1.7 / extent), torch.zeros(batch, 2))
    sh = DEFAULT_SH[None].repeat(batch, 1, 1)
    if batch > 1:
        sh[1] = sh[1].mean(-1, keepdim=True)  # grey light for the second image
    return verts, camera, sh


def _random_texture(size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, size, size, generator=g)


@requires_extension
def test_backends_agree_on_the_demo_head():
    head = procedural_head()
    verts, camera, sh = _scene(head.vertices)
    outputs = {}
    for name in ("flamekit", "torch"):
        renderer = Renderer(head.faces, head.uvs, head.uv_faces, (96, 80), backend=name)
        outputs[name] = renderer(verts, head.texture[None], sh, camera)
    a, b = outputs["flamekit"], outputs["torch"]
    assert torch.equal(a.triangle_ids, b.triangle_ids)
    for field in ("image", "mask", "albedo", "normals", "shading", "depth"):
        diff = (getattr(a, field) - getattr(b, field)).abs().max().item()
        assert diff < 1e-4, f"{field} differs by {diff}"
    assert a.mask.mean() > 0.2


@requires_extension
def test_backends_agree_on_flame_topology_with_perspective(flame_topology):
    mesh = flame_topology
    texture = _random_texture()
    camera = PerspectiveCamera(
        focal=torch.tensor([[300.0, 300.0]]),
        principal_point=torch.tensor([[64.0, 60.0]]),
        rotation=torch.diag(torch.tensor([1.0, -1.0, -1.0]))[None],
        translation=torch.tensor([[0.0, 0.0, 0.6]]),
        image_size=(120, 128),
    )
    sh = DEFAULT_SH[None]
    results = [
        Renderer(mesh.faces, mesh.uvs, mesh.uv_faces, (120, 128), backend=name)(
            mesh.vertices[None], texture, sh, camera
        )
        for name in ("flamekit", "torch")
    ]
    diff = (results[0].image - results[1].image).abs().max().item()
    assert diff < 1e-4, f"image differs by {diff}"
    assert results[0].mask.sum() > 2000


@requires_extension
def test_render_is_differentiable_in_every_input():
    head = procedural_head(resolution=24)
    verts, camera, sh = _scene(head.vertices, batch=1)
    verts = verts.clone().requires_grad_(True)
    texture = head.texture[None].clone().requires_grad_(True)
    sh = sh.clone().requires_grad_(True)
    camera.scale.requires_grad_(True)
    out = Renderer(head.faces, head.uvs, head.uv_faces, (48, 48))(verts, texture, sh, camera)
    target = torch.rand_like(out.image)
    ((out.image - target) * out.mask).abs().sum().backward()
    for t in (verts, texture, sh, camera.scale):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_render_outputs_shapes_and_background_with_torch_backend():
    head = procedural_head(resolution=16, texture_size=32)
    verts, camera, sh = _scene(head.vertices, batch=1)
    bg = torch.full((1, 3, 20, 24), 0.5)
    out = Renderer(head.faces, head.uvs, head.uv_faces, (20, 24), backend="torch")(
        verts, head.texture[None], sh, camera, background=bg
    )
    assert out.image.shape == (1, 3, 20, 24) and out.mask.shape == (1, 1, 20, 24)
    assert out.triangle_ids.shape == (1, 20, 24) and out.triangle_ids.dtype == torch.int64
    background = out.mask[0, 0] == 0
    assert torch.all(out.image[0][:, background] == 0.5)
    assert torch.all(out.triangle_ids[0][background] == -1)
    norms = out.normals[0][:, ~background].norm(dim=0)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


def test_perspective_camera_matches_the_pinhole_formula():
    g = torch.Generator().manual_seed(0)
    v = torch.rand(2, 50, 3, generator=g) - 0.5
    angle = torch.tensor(0.3)
    c, s = torch.cos(angle), torch.sin(angle)
    rot = torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]]).expand(2, 3, 3)
    cam = PerspectiveCamera(
        focal=torch.tensor([[500.0, 480.0], [300.0, 310.0]]),
        principal_point=torch.tensor([[120.0, 100.0], [64.0, 70.0]]),
        rotation=rot,
        translation=torch.tensor([[0.0, 0.1, 2.0], [0.1, 0.0, 3.0]]),
        image_size=(200, 240),
    )
    xc = cam.to_camera(v)
    expected = torch.stack(
        [
            cam.focal[:, None, 0] * xc[..., 0] / xc[..., 2] + cam.principal_point[:, None, 0],
            cam.focal[:, None, 1] * xc[..., 1] / xc[..., 2] + cam.principal_point[:, None, 1],
        ],
        dim=-1,
    )
    assert torch.allclose(clip_to_pixels(cam.to_clip(v), (200, 240)), expected, atol=1e-3)
    near_far = PerspectiveCamera(
        focal=torch.tensor([[500.0, 500.0]]),
        principal_point=torch.tensor([[120.0, 100.0]]),
        rotation=torch.eye(3)[None],
        translation=torch.zeros(1, 3),
        image_size=(200, 240),
        near=0.5,
        far=20.0,
    )
    clip = near_far.to_clip(torch.tensor([[[0.1, 0.0, 0.5], [0.0, 0.2, 20.0], [0, 0, 2.0]]]))
    z_ndc = clip[0, :, 2] / clip[0, :, 3]
    assert z_ndc[0] == pytest.approx(-1, abs=1e-5) and z_ndc[1] == pytest.approx(1, abs=1e-5)
    assert -1 < z_ndc[2] < 1


def test_orthographic_camera_maps_up_to_the_top_row():
    cam = OrthographicCamera(torch.tensor([2.0]), torch.tensor([[0.1, -0.2]]))
    pix = clip_to_pixels(cam.to_clip(torch.tensor([[[0.0, 0.6, 0.0], [0.0, -0.2, 0.0]]])), (10, 10))
    # y = 0.6 -> ndc 0.8 up -> near the top (small row); y = -0.2 -> ndc -0.8 -> bottom
    assert pix[0, 0, 1] == pytest.approx(1.0) and pix[0, 1, 1] == pytest.approx(9.0)
    assert pix[0, 0, 0] == pytest.approx(6.0)


def test_backend_registry():
    class Adapter(RasterBackend):
        name = "test-adapter"

        def availability(self):
            return False, "needs the test library"

    register_backend("test-adapter", Adapter)
    with pytest.raises(ValueError, match="already registered"):
        register_backend("test-adapter", lambda: Adapter())
    assert list_backends()["test-adapter"] == (False, "needs the test library")
    with pytest.raises(BackendUnavailableError, match="needs the test library"):
        get_backend("test-adapter")
    with pytest.raises(BackendUnavailableError, match="registered backends: .*flamekit"):
        get_backend("no-such-backend")
    assert get_backend("torch").name == "torch"


def test_renderer_rejects_mismatched_faces():
    head = procedural_head(resolution=8, texture_size=16)
    with pytest.raises(ValueError, match="same F"):
        Renderer(head.faces, head.uvs, head.uv_faces[:-1], backend="torch")
