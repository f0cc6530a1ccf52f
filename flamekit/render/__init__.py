"""Differentiable rendering: rasterize, interpolate, SH shading, cameras and the Renderer.

See :mod:`flamekit.render.ops` for the conventions (those of nvdiffrast).
"""

from flamekit.render.backends import (
    BackendUnavailableError,
    FlamekitBackend,
    RasterBackend,
    TorchBackend,
    get_backend,
    list_backends,
    register_backend,
)
from flamekit.render.camera import OrthographicCamera, PerspectiveCamera, clip_to_pixels
from flamekit.render.geometry import vertex_normals
from flamekit.render.ops import interpolate, rasterize, sh_shade
from flamekit.render.renderer import Renderer, RenderOutput

__all__ = [
    "rasterize",
    "interpolate",
    "sh_shade",
    "Renderer",
    "RenderOutput",
    "OrthographicCamera",
    "PerspectiveCamera",
    "clip_to_pixels",
    "vertex_normals",
    "RasterBackend",
    "FlamekitBackend",
    "TorchBackend",
    "BackendUnavailableError",
    "register_backend",
    "get_backend",
    "list_backends",
]
