"""Built-in renderer backends, registered through the ``register_renderers`` hook.

``flamekit`` (the compiled extension) and ``torch`` (pure PyTorch) are always registered; they
are the same classes :mod:`flamekit.render.backends` starts with, so registering them there
again is a no-op. ``nvdiffrast`` is registered only where ``import nvdiffrast.torch`` works,
so ``flamekit plugins`` does not advertise a backend that is not installed.
"""

from __future__ import annotations

import torch

from flamekit import hookimpl
from flamekit.render.backends import FlamekitBackend, RasterBackend, TorchBackend

__all__ = ["NvdiffrastBackend", "nvdiffrast_importable", "register_renderers"]

_NVDIFFRAST_INSTALL = "https://nvlabs.github.io/nvdiffrast/#installation"


def nvdiffrast_importable() -> bool:
    """Whether ``import nvdiffrast.torch`` succeeds (any failure counts as not installed)."""
    try:
        import nvdiffrast.torch  # noqa: F401
    except Exception:
        return False
    return True


class NvdiffrastBackend(RasterBackend):
    """nvdiffrast's CUDA rasterizer behind flamekit's backend API.

    flamekit's conventions are nvdiffrast's (clip-space ``pos``, ``rast`` = (u, v, z/w,
    tri_id + 1), pixel centres at half-integers), so the adapter only converts dtypes (nvdiffrast
    takes float32 and int32) and keeps one ``RasterizeCudaContext`` per CUDA device.
    """

    name = "nvdiffrast"

    def __init__(self) -> None:
        import nvdiffrast.torch as dr

        self._dr = dr
        self._contexts: dict[int, object] = {}

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            import nvdiffrast.torch  # noqa: F401
        except Exception as exc:
            return False, f"nvdiffrast is not installed ({exc}); see {_NVDIFFRAST_INSTALL}"
        if not torch.cuda.is_available():
            return False, "nvdiffrast's RasterizeCudaContext needs a CUDA device; torch sees none"
        return True, ""

    def _context(self, device: torch.device) -> object:
        if device.type != "cuda":
            raise ValueError(
                f"the nvdiffrast backend renders CUDA tensors only, got tensors on {device}; "
                "use backend='flamekit' or 'torch' on the CPU"
            )
        index = device.index if device.index is not None else torch.cuda.current_device()
        context = self._contexts.get(index)
        if context is None:
            context = self._dr.RasterizeCudaContext(device=torch.device("cuda", index))
            self._contexts[index] = context
        return context

    def rasterize(self, pos: torch.Tensor, tri: torch.Tensor, resolution) -> torch.Tensor:
        if pos.dim() == 2:
            pos = pos.unsqueeze(0)
        height, width = (int(r) for r in resolution)
        context = self._context(pos.device)
        tri = tri.to(device=pos.device, dtype=torch.int32).contiguous()
        rast, _ = self._dr.rasterize(
            context, pos.float().contiguous(), tri, resolution=[height, width]
        )
        return rast if pos.dtype == torch.float32 else rast.to(pos.dtype)

    def interpolate(self, attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor):
        if attr.dim() == 2:  # [V,C] shared by the batch: nvdiffrast broadcasts a batch of 1
            attr = attr.unsqueeze(0)
        tri = tri.to(device=rast.device, dtype=torch.int32).contiguous()
        out, _ = self._dr.interpolate(attr.float().contiguous(), rast.float().contiguous(), tri)
        return out if attr.dtype == torch.float32 else out.to(attr.dtype)


@hookimpl
def register_renderers(register) -> None:
    """The compiled and pure-PyTorch backends, and nvdiffrast where it is installed."""
    register(FlamekitBackend.name, FlamekitBackend)
    register(TorchBackend.name, TorchBackend)
    if nvdiffrast_importable():
        register(NvdiffrastBackend.name, NvdiffrastBackend)
