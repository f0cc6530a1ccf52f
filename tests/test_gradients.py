"""Gradients of rasterize, interpolate and sh_shade: float64 gradcheck of the extension, and
the float32 backward against a float64 autograd reference (the pure-PyTorch backend)."""

from __future__ import annotations

import pytest
import torch

from flamekit.render import torch_ops
from tests.conftest import requires_extension

pytestmark = requires_extension


def _clear_scene(seed: int, batch: int = 2, resolution=(9, 11)):
    """A perspective scene where no pixel centre lies near an edge and no two triangles
    overlap in depth order ambiguity, so coverage is constant under small perturbations."""
    from flamekit.render import rasterize
    from tests.reference import brute_force_rasterize

    g = torch.Generator().manual_seed(seed)
    for _ in range(200):
        ndc = torch.rand(batch, 9, 3, generator=g, dtype=torch.float64) * 2.2 - 1.1
        ndc[..., 2] *= 0.5
        w = torch.rand(batch, 9, 1, generator=g, dtype=torch.float64) * 1.0 + 0.7
        pos = torch.cat([ndc * w, w], dim=-1)
        tri = torch.arange(9, dtype=torch.int32).reshape(3, 3)
        ref = brute_force_rasterize(pos.numpy(), tri.numpy(), resolution, eps=2e-3)
        if ref.ambiguous.any() or ((ref.runner_up - ref.depth) < 1e-2).any():
            continue
        rast = rasterize(pos, tri, resolution)
        if (rast[..., 3] > 0).sum() >= 10:
            return pos, tri
    raise AssertionError("no clear scene found")


@pytest.mark.parametrize("seed", [0, 1])
def test_rasterize_gradcheck_float64(seed):
    from flamekit.render import rasterize

    pos, tri = _clear_scene(seed)
    pos.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda p: rasterize(p, tri, (9, 11))[..., :3], (pos,), eps=1e-6, atol=1e-6
    )


def test_interpolate_gradcheck_float64():
    from flamekit.render import interpolate, rasterize

    pos, tri = _clear_scene(2)
    rast = rasterize(pos, tri, (9, 11))
    uv_tri = torch.flip(tri, dims=[1]).contiguous()  # a different index buffer, same F
    for attr in (
        torch.rand(2, 9, 5, dtype=torch.float64, requires_grad=True),
        torch.rand(9, 4, dtype=torch.float64, requires_grad=True),  # shared by the batch
    ):
        bary = rast[..., :2].clone().requires_grad_(True)
        assert torch.autograd.gradcheck(
            lambda a, b: interpolate(a, torch.cat([b, rast[..., 2:]], -1), uv_tri), (attr, bary)
        )


@pytest.mark.parametrize("sh_channels", [3, 1])
def test_sh_shade_gradcheck_float64(sh_channels):
    from flamekit.render import sh_shade

    g = torch.Generator().manual_seed(sh_channels)
    albedo = torch.rand(2, 3, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    normals = torch.randn(2, 3, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    sh = torch.randn(2, 9, sh_channels, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, n, s: sh_shade(a, n, s, return_shading=True), (albedo, normals, sh)
    )
    assert torch.autograd.gradcheck(lambda a, n, s: sh_shade(a, n, s), (albedo, normals, sh))


def test_float32_backward_matches_float64_autograd_reference():
    """The whole chain rasterize -> interpolate -> sh_shade in float32 (extension) against
    the same chain in float64 through torch autograd."""
    from flamekit.render import interpolate, rasterize, sh_shade

    pos64, tri = _clear_scene(3, resolution=(24, 20))
    g = torch.Generator().manual_seed(0)
    normals64 = torch.nn.functional.normalize(
        torch.randn(2, 9, 3, generator=g, dtype=torch.float64), dim=-1
    )
    colours64 = torch.rand(2, 9, 3, generator=g, dtype=torch.float64)
    sh64 = torch.randn(2, 9, 3, generator=g, dtype=torch.float64) * 0.3
    weights = torch.rand(2, 24, 20, 3, generator=g, dtype=torch.float64)

    def chain(ops_rasterize, ops_interpolate, ops_shade, pos, normals, colours, sh):
        rast = ops_rasterize(pos, tri, (24, 20))
        n = ops_interpolate(normals, rast, tri)
        c = ops_interpolate(colours, rast, tri)
        image = ops_shade(c, n, sh)
        return (image * weights.to(image.dtype)).sum() + (rast[..., 2] ** 2).sum()

    inputs64 = [t.clone().requires_grad_(True) for t in (pos64, normals64, colours64, sh64)]
    loss64 = chain(torch_ops.rasterize, torch_ops.interpolate, torch_ops.sh_shade, *inputs64)
    loss64.backward()
    inputs32 = [t.float().requires_grad_(True) for t in (pos64, normals64, colours64, sh64)]
    loss32 = chain(rasterize, interpolate, sh_shade, *inputs32)
    loss32.backward()
    assert abs(loss32.item() - loss64.item()) < 1e-4 * max(1.0, abs(loss64.item()))
    for a, b in zip(inputs32, inputs64, strict=True):
        scale = b.grad.abs().max().clamp_min(1.0)
        err = (a.grad.double() - b.grad).abs().max() / scale
        assert err < 1e-4, f"gradient mismatch {err}"


def test_backward_on_background_is_zero():
    from flamekit.render import rasterize

    pos = torch.tensor(
        [[[-0.2, -0.2, 0.0, 1.0], [0.2, -0.2, 0.0, 1.0], [0.0, 0.2, 0.0, 1.0]]], requires_grad=True
    )
    rast = rasterize(pos, torch.tensor([[0, 1, 2]]), (8, 8))
    (rast[..., :3] * (rast[..., 3:] == 0)).sum().backward()
    assert torch.all(pos.grad == 0)


def test_sh_shade_accepts_deca_flat_layout_on_both_backends():
    from flamekit.render import sh_shade

    g = torch.Generator().manual_seed(7)
    albedo = torch.rand(2, 3, 4, 3, generator=g)
    normals = torch.randn(2, 3, 4, 3, generator=g)
    sh = torch.randn(2, 9, 3, generator=g)
    expected = sh_shade(albedo, normals, sh)
    for fn in (sh_shade, torch_ops.sh_shade):
        assert torch.allclose(fn(albedo, normals, sh.reshape(2, 27)), expected, atol=1e-6)
