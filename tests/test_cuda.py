"""CUDA against CPU: the same images and gradients. Skipped without a GPU and a CUDA build."""

from __future__ import annotations

import torch

from flamekit.render import interpolate, rasterize, sh_shade
from tests.conftest import requires_cuda
from tests.scenes import random_scene

pytestmark = requires_cuda


def _both(fn, *tensors):
    cpu = fn(*[t.clone().requires_grad_(t.is_floating_point()) for t in tensors])
    cuda = fn(*[t.cuda().requires_grad_(t.is_floating_point()) for t in tensors])
    return cpu, cuda


def test_rasterize_cuda_equals_cpu():
    for seed in range(3):
        pos, tri = random_scene(seed, batch=3, triangles=400)
        r_cpu = rasterize(pos, tri, (123, 97))
        r_gpu = rasterize(pos.cuda(), tri.cuda(), (123, 97)).cpu()
        assert torch.equal(r_cpu[..., 3], r_gpu[..., 3]), "triangle ids differ"
        assert torch.allclose(r_cpu, r_gpu, atol=1e-6)


def test_gradients_cuda_match_cpu():
    pos, tri = random_scene(5, batch=2, triangles=200)
    g = torch.Generator().manual_seed(0)
    attr = torch.rand(2, pos.shape[1], 3, generator=g)
    normals = torch.nn.functional.normalize(torch.randn(2, pos.shape[1], 3, generator=g), dim=-1)
    sh = torch.randn(2, 9, 3, generator=g)
    weights = torch.rand(2, 64, 48, 3, generator=g)

    def run(device):
        inputs = [t.to(device).requires_grad_(True) for t in (pos, attr, normals, sh)]
        p, a, n, s = inputs
        rast = rasterize(p, tri.to(device), (64, 48))
        image, shading = sh_shade(
            interpolate(a, rast, tri.to(device)), interpolate(n, rast, tri.to(device)), s, True
        )
        loss = (image * weights.to(device)).sum() + shading.sum() + rast[..., 2].sum()
        loss.backward()
        return [t.grad.cpu() for t in inputs], image.detach().cpu()

    (grads_cpu, img_cpu), (grads_gpu, img_gpu) = run("cpu"), run("cuda")
    assert torch.allclose(img_cpu, img_gpu, atol=1e-5)
    for a, b in zip(grads_cpu, grads_gpu, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * a.abs().max().clamp_min(1))


def test_sh_shade_shared_channel_cuda_equals_cpu():
    g = torch.Generator().manual_seed(1)
    albedo = torch.rand(2, 33, 17, 3, generator=g)
    normals = torch.randn(2, 33, 17, 3, generator=g)
    sh = torch.randn(2, 9, 1, generator=g)
    cpu = sh_shade(albedo, normals, sh, return_shading=True)
    gpu = sh_shade(albedo.cuda(), normals.cuda(), sh.cuda(), return_shading=True)
    for a, b in zip(cpu, gpu, strict=True):
        assert torch.allclose(a, b.cpu(), atol=1e-6)


def test_cuda_treats_ids_outside_the_index_buffer_as_background():
    """On the device, rast ids that tri does not have are never dereferenced (the CPU raises
    instead): those pixels interpolate to zero and get no gradient."""
    pos, tri = random_scene(0)
    rast = rasterize(pos.cuda(), tri.cuda(), (32, 32))
    ids = rast[..., 3].long()
    keep = int(ids[ids > 0].min())  # triangles 0..keep-1: only the lowest covered id stays
    fewer = tri[:keep].cuda()
    attr = torch.rand(pos.shape[1], 3, device="cuda", requires_grad=True)
    out = interpolate(attr, rast, fewer)
    outside = (ids > keep).unsqueeze(-1).expand_as(out)
    assert outside.any()
    assert torch.all(out[outside] == 0)
    out.sum().backward()
    torch.cuda.synchronize()
    assert torch.isfinite(attr.grad).all()
