"""flamekit's built-in skin segmenters: ``skin`` (the default), ``file`` and ``face-parsing``.

Registering only names the classes; images, mask files and network weights are read when a
segmenter is used, so listing plugins stays fast and never fails on missing weights.
"""

from __future__ import annotations

import flamekit
from flamekit.hookspecs import Register
from flamekit_plugins.segmenters.face_parsing import (
    FACE_PARSING_CLASSES,
    BiSeNet,
    FaceParsingSegmenter,
)
from flamekit_plugins.segmenters.file import FileSegmenter, MaskFileError
from flamekit_plugins.segmenters.skin import SkinSegmenter

DEFAULT_SEGMENTER = "skin"

__all__ = [
    "DEFAULT_SEGMENTER",
    "FACE_PARSING_CLASSES",
    "BiSeNet",
    "FaceParsingSegmenter",
    "FileSegmenter",
    "MaskFileError",
    "SkinSegmenter",
    "register_segmenters",
]


@flamekit.hookimpl
def register_segmenters(register: Register) -> None:
    """Register the three built-in segmenters, the default first."""
    register("skin", SkinSegmenter)
    register("file", FileSegmenter)
    register("face-parsing", FaceParsingSegmenter)
