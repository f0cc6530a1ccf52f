"""Renderer backends: the three primitives a renderer needs, behind a small registry.

A backend implements ``rasterize``, ``interpolate`` and ``sh_shade`` with the conventions of
:mod:`flamekit.render.ops` (those of nvdiffrast). An adapter for another rasterizer
(nvdiffrast, PyTorch3D) is a subclass that implements ``rasterize`` and ``interpolate``; it
inherits the pure-PyTorch ``sh_shade``. Register it with :func:`register_backend`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from flamekit._extension import BUILD_HINT, extension_available

__all__ = [
    "RasterBackend",
    "FlamekitBackend",
    "TorchBackend",
    "BackendUnavailableError",
    "register_backend",
    "get_backend",
    "list_backends",
]


class BackendUnavailableError(RuntimeError):
    """The requested renderer backend cannot run on this machine."""


class RasterBackend:
    """Base class of renderer backends."""

    name = "base"

    def availability(self) -> tuple[bool, str]:
        """(usable here, reason when not)."""
        return True, ""

    def rasterize(self, pos: torch.Tensor, tri: torch.Tensor, resolution) -> torch.Tensor:
        """pos [B,V,4] clip space, tri [F,3] -> rast [B,H,W,4] = (b0, b1, z, tri_id + 1)."""
        raise NotImplementedError

    def interpolate(self, attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor):
        """attr [B,V,C] or [V,C] -> [B,H,W,C]."""
        raise NotImplementedError

    def sh_shade(self, albedo, normals, sh, return_shading: bool = False):
        """albedo, normals [B,H,W,3], sh [B,9,3|1] -> image (and shading) [B,H,W,3]."""
        from flamekit.render import torch_ops

        return torch_ops.sh_shade(albedo, normals, sh, return_shading=return_shading)


class FlamekitBackend(RasterBackend):
    """The compiled C++/CUDA extension (default)."""

    name = "flamekit"

    def availability(self) -> tuple[bool, str]:
        if extension_available():
            return True, ""
        return False, "flamekit._C is not built. " + BUILD_HINT

    def rasterize(self, pos, tri, resolution):
        from flamekit.render import ops

        return ops.rasterize(pos, tri, resolution)

    def interpolate(self, attr, rast, tri):
        from flamekit.render import ops

        return ops.interpolate(attr, rast, tri)

    def sh_shade(self, albedo, normals, sh, return_shading: bool = False):
        from flamekit.render import ops

        return ops.sh_shade(albedo, normals, sh, return_shading=return_shading)


class TorchBackend(RasterBackend):
    """Pure PyTorch reference: slow, but needs no compiled code."""

    name = "torch"

    def rasterize(self, pos, tri, resolution):
        from flamekit.render import torch_ops

        return torch_ops.rasterize(pos, tri, resolution)

    def interpolate(self, attr, rast, tri):
        from flamekit.render import torch_ops

        return torch_ops.interpolate(attr, rast, tri)


_REGISTRY: dict[str, Callable[[], RasterBackend]] = {
    FlamekitBackend.name: FlamekitBackend,
    TorchBackend.name: TorchBackend,
}


def register_backend(name: str, factory: Callable[[], RasterBackend]) -> None:
    """Make a backend available by name (a class or any zero-argument factory)."""
    if name in _REGISTRY and _REGISTRY[name] is not factory:
        raise ValueError(f"a renderer backend named {name!r} is already registered")
    _REGISTRY[name] = factory


def list_backends() -> dict[str, tuple[bool, str]]:
    """Every registered backend name with (usable here, reason when not)."""
    return {name: factory().availability() for name, factory in _REGISTRY.items()}


def get_backend(backend: str | RasterBackend = "flamekit") -> RasterBackend:
    """Return a usable backend instance; raise BackendUnavailableError with the reason."""
    if isinstance(backend, RasterBackend):
        return backend
    if backend not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise BackendUnavailableError(
            f"unknown renderer backend {backend!r}; registered backends: {known}"
        )
    instance = _REGISTRY[backend]()
    usable, reason = instance.availability()
    if not usable:
        raise BackendUnavailableError(f"renderer backend {backend!r} is unavailable: {reason}")
    return instance
