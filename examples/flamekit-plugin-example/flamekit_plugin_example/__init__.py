"""A toy flamekit plugin: the module named by the ``flamekit`` entry point, holding the hooks.

The hooks only register classes; nothing is built until a user asks for it by name, e.g.
``flamekit.plugins.landmark_detector("example-mean-face")``.
"""

from __future__ import annotations

from flamekit import hookimpl
from flamekit_plugin_example.detector import MeanFaceDetector
from flamekit_plugin_example.losses import LandmarkL1Loss

__all__ = ["LandmarkL1Loss", "MeanFaceDetector", "register_landmark_detectors", "register_losses"]


@hookimpl
def register_landmark_detectors(register) -> None:
    """``example-mean-face``: the toy detector."""
    register(MeanFaceDetector.name, MeanFaceDetector)


@hookimpl
def register_losses(register) -> None:
    """``example-landmark-l1``: the L1 landmark loss."""
    register(LandmarkL1Loss.name, LandmarkL1Loss)
