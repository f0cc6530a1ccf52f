"""flamekit's built-in landmark detectors: ``dlib`` (the default), ``fan`` and ``file``.

Registering only names the classes; dlib, face_alignment and the model files are loaded
when a detector is built, so listing plugins stays fast and never fails on a missing package.
"""

from __future__ import annotations

import flamekit
from flamekit.hookspecs import Register
from flamekit_plugins.detectors.dlib_detector import DlibDetector
from flamekit_plugins.detectors.fan_detector import FanDetector
from flamekit_plugins.detectors.file_detector import FileDetector, LandmarkFileError

DEFAULT_DETECTOR = "dlib"

__all__ = [
    "DEFAULT_DETECTOR",
    "DlibDetector",
    "FanDetector",
    "FileDetector",
    "LandmarkFileError",
    "register_landmark_detectors",
]


@flamekit.hookimpl
def register_landmark_detectors(register: Register) -> None:
    """Register the three built-in detectors, the default first."""
    register("dlib", DlibDetector)
    register("fan", FanDetector)
    register("file", FileDetector)
