"""flamekit's built-in inpainters: ``harmonic`` (the default, seam-aware), ``telea`` and
``gmcnn`` (a multi-column network trained on unwrapped maps; usable once trained).

Registering only names the classes; the texel graph and OpenCV are touched when an inpainter
is used, so listing plugins stays fast.
"""

from __future__ import annotations

import flamekit
from flamekit.hookspecs import Register
from flamekit_plugins.inpainters.gmcnn import GMCNN, GmcnnInpainter
from flamekit_plugins.inpainters.harmonic import (
    HarmonicInpainter,
    TexelGraph,
    rasterize_uv,
    texel_graph,
)
from flamekit_plugins.inpainters.telea import TeleaInpainter

DEFAULT_INPAINTER = "harmonic"

__all__ = [
    "DEFAULT_INPAINTER",
    "GMCNN",
    "GmcnnInpainter",
    "HarmonicInpainter",
    "TeleaInpainter",
    "TexelGraph",
    "rasterize_uv",
    "register_inpainters",
    "texel_graph",
]


@flamekit.hookimpl
def register_inpainters(register: Register) -> None:
    """Register the built-in inpainters, the default first."""
    register("harmonic", HarmonicInpainter)
    register("telea", TeleaInpainter)
    register("gmcnn", GmcnnInpainter)
