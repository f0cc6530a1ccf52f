"""Renderer backends: the three primitives a renderer needs, behind a small registry.

A backend implements ``rasterize``, ``interpolate`` and ``sh_shade`` with the conventions of
:mod:`flamekit.render.ops` (those of nvdiffrast). An adapter for another rasterizer
(nvdiffrast, PyTorch3D) is a subclass that implements ``rasterize`` and ``interpolate``; it
inherits the pure-PyTorch ``sh_shade``. Package it as a ``register_renderers`` plugin
(docs/PLUGINS.md), or register it in-process with :func:`register_backend`.

The built-in ``flamekit`` and ``torch`` backends are in the registry from the start, so
rendering never depends on plugin discovery; the built-in plugin ``flamekit_plugins.renderers``
registers the same classes, which is a no-op here. A lookup of a name that is not registered
(and :func:`list_backends`) first lets :mod:`flamekit.plugins` load the renderer plugins.
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

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        """(usable here, reason when not); a classmethod so listing needs no instance."""
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

    @classmethod
    def availability(cls) -> tuple[bool, str]:
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


def _unregister_backend(name: str, factory: Callable[[], RasterBackend]) -> None:
    """Remove ``name`` if it is still bound to ``factory`` (the plugin manager's reset)."""
    if _REGISTRY.get(name) is factory:
        del _REGISTRY[name]


def _load_plugins() -> None:
    from flamekit.plugins import _load_for_backends

    _load_for_backends()


def list_backends() -> dict[str, tuple[bool, str]]:
    """Every registered backend name with (usable here, reason when not)."""
    _load_plugins()
    return {name: _availability(factory) for name, factory in list(_REGISTRY.items())}


def _availability(factory: Callable[[], RasterBackend]) -> tuple[bool, str]:
    """A plugin backend that fails to build is reported unusable, not raised to the caller."""
    try:
        return factory().availability()
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"


def get_backend(backend: str | RasterBackend = "flamekit") -> RasterBackend:
    """Return a usable backend instance; raise BackendUnavailableError with the reason."""
    if isinstance(backend, RasterBackend):
        return backend
    if backend not in _REGISTRY:
        _load_plugins()
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
