"""flamekit's plugin hooks (pluggy project ``flamekit``): the contract every plugin follows.

A plugin is a module (or object) with functions marked ``@flamekit.hookimpl``, exposed
through the setuptools entry-point group ``flamekit``::

    [project.entry-points.flamekit]
    my-plugin = "my_package.flamekit_plugin"

Every hook is a *registration* hook in the callback style: flamekit calls it once with a
``register(name, factory)`` function; the plugin calls ``register`` for each part it
provides. ``factory`` is a class (or zero-argument callable) that builds the part when it is
first used, so registering is cheap and never imports heavy packages. Factories that are
classes may define ``availability()`` (see :class:`flamekit.plugin_types.Plugin`) so that
``flamekit plugins`` can say whether the part is usable here without building it.
Names are lower-case, ``-`` separated, unique per kind; a clash keeps the first registration
(built-ins load first) and warns.

Standard tensors a :class:`~flamekit.plugin_types.Loss` may list in ``inputs`` (B = batch):

=====================  ==============  ===================================================
name                   shape           meaning
=====================  ==============  ===================================================
``landmarks2d``        [B,68,2]        fitted model landmarks projected to crop pixels
``target_landmarks``   [B,68,2]        detected landmarks, same pixels
``landmark_weights``   [B,68]          per-landmark weights (0 drops a point)
``rendered``           [B,3,H,W]       rendered image, 0..1
``image``              [B,3,H,W]       the photo (cropped and resized), 0..1
``mask``               [B,1,H,W]       skin mask times render coverage, 0/1
``shading``            [B,3,H,W]       rendered SH irradiance (0 on background)
``identity``           [B,K_id]        identity coefficients (unit: standard deviations)
``expression``         [B,K_exp]       expression coefficients
``pose``               [B,15]          global, neck, jaw, eyes (axis-angle, radians)
``texture``            [B,K_tex]       texture-space coefficients
``lighting``           [B,9,3]         SH lighting coefficients per channel
``texture_offset``     [B,3,Ht,Wt]     per-image UV texture offset
``uv_mask``            [1,1,Ht,Wt]     where the UV map is used by the mesh, 0/1
=====================  ==============  ===================================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "flamekit"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[[str, Callable[[], Any]], None]

__all__ = [
    "PROJECT",
    "Register",
    "hookimpl",
    "hookspec",
    "register_inpainters",
    "register_landmark_detectors",
    "register_losses",
    "register_renderers",
    "register_segmenters",
]


@hookspec
def register_landmark_detectors(register: Register) -> None:
    """Register landmark detectors: ``register(name, factory)``.

    ``factory()`` returns a :class:`~flamekit.plugin_types.LandmarkDetector`:
    ``detect(image, source) -> Detection``, with ``image`` (H,W,3) uint8 RGB and the
    detection's ``landmarks`` (68,2) float32 in the iBUG order, x then y in pixels of that
    image, top-left pixel centre at (0, 0); ``box`` (x0, y0, x1, y1) in the same units;
    ``confidence`` a score (higher is better). Several faces: return the largest and warn
    with :class:`~flamekit.plugin_types.MultipleFacesWarning`. No face: raise
    :class:`~flamekit.plugin_types.NoFaceError` naming the file. Missing package or weights:
    ``availability()`` returns ``(False, how to fix)`` and ``detect`` raises
    :class:`~flamekit.plugin_types.PluginUnavailableError`.
    """


@hookspec
def register_segmenters(register: Register) -> None:
    """Register skin segmenters: ``register(name, factory)``.

    ``factory()`` returns a :class:`~flamekit.plugin_types.Segmenter`:
    ``segment(image, landmarks, source) -> (H,W) bool``, True on visible skin of the face
    (not hair, eyes, brows, mouth interior, glasses, hands or beard), same size as the
    (H,W,3) uint8 RGB image. Segmenters that need landmarks set ``needs_landmarks = True``
    and receive the (68,2) landmarks of :func:`register_landmark_detectors`.
    """


@hookspec
def register_inpainters(register: Register) -> None:
    """Register inpainters: ``register(name, factory)``.

    ``factory()`` returns an :class:`~flamekit.plugin_types.Inpainter`:
    ``inpaint(image [B,3,H,W] in 0..1, known [B,1,H,W]) -> [B,3,H,W]``, unchanged where
    ``known`` is 1. Used on UV albedo maps, so fills should respect UV-atlas seams.
    """


@hookspec
def register_losses(register: Register) -> None:
    """Register fitting losses: ``register(name, factory)``.

    ``factory()`` returns a :class:`~flamekit.plugin_types.Loss`: ``loss(values) -> [B]``,
    reading the tensors named in its ``inputs`` (standard names in this module's docstring)
    and returning one unweighted value per image; it must be differentiable in them.
    """


@hookspec
def register_renderers(register: Register) -> None:
    """Register renderer backends: ``register(name, factory)``.

    ``factory()`` returns a :class:`flamekit.render.RasterBackend` (``rasterize`` and
    ``interpolate`` with nvdiffrast's conventions; ``sh_shade`` has a PyTorch default). A
    backend whose package is missing should not register at all, or report itself
    unavailable through ``availability()``.
    """
