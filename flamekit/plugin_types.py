"""The typed base classes every plugin implements, and the errors plugins raise.

Images cross the plugin boundary as decoded photos, the way detectors and segmenters
(dlib, face-alignment, OpenCV) consume them: numpy ``uint8`` arrays ``(H,W,3)`` in RGB order.
Landmarks are numpy ``float32`` ``(68,2)`` in the iBUG 68-point order, ``x`` then ``y`` in
pixels of that image, with the centre of the top-left pixel at ``(0, 0)`` (the dlib/OpenCV
convention; flamekit's renderer puts pixel centres at ``+0.5`` and the fitting code converts).
Everything that is optimized (inpainting, losses) works on torch tensors, batch-first.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

__all__ = [
    "Detection",
    "ImageError",
    "Inpainter",
    "LandmarkDetector",
    "Loss",
    "MultipleFacesWarning",
    "NoFaceError",
    "Plugin",
    "PluginUnavailableError",
    "Segmenter",
]


class PluginUnavailableError(RuntimeError):
    """A plugin cannot run here (missing package or weights); the message says how to fix it."""


class ImageError(ValueError):
    """A bad input image (unreadable, corrupt, too small, ...); the message names the file."""


class NoFaceError(ImageError):
    """No face was found in an image; the message names the file."""


class MultipleFacesWarning(UserWarning):
    """Several faces were found; the largest was used."""


class Plugin:
    """What every plugin has: a name (set at registration) and a usability check."""

    name: ClassVar[str] = ""

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        """(usable here, reason and fix when not). Must be cheap and must not raise."""
        return True, ""


@dataclass
class Detection:
    """One face found by a landmark detector.

    Attributes:
        landmarks: (68,2) float32 iBUG landmarks, x then y in image pixels (see module doc).
        box: (4,) float32 face box (x0, y0, x1, y1) in the same pixel coordinates.
        confidence: the detector's score for this face (higher is better; 1.0 for files).
        num_faces: how many faces the detector saw (the largest is returned).
        image_size: (H, W) of the image the coordinates refer to.
        detector: the name of the detector that produced it.
    """

    landmarks: np.ndarray
    box: np.ndarray
    confidence: float
    num_faces: int
    image_size: tuple[int, int]
    detector: str = ""

    def __post_init__(self) -> None:
        self.landmarks = np.asarray(self.landmarks, dtype=np.float32)
        self.box = np.asarray(self.box, dtype=np.float32).reshape(4)
        if self.landmarks.shape != (68, 2):
            raise ValueError(f"landmarks must be (68,2), got {self.landmarks.shape}")


class LandmarkDetector(Plugin, ABC):
    """Finds a face and its 68 iBUG landmarks."""

    @abstractmethod
    def detect(self, image: np.ndarray, source: str = "<image>") -> Detection:
        """Detect the largest face.

        Args:
            image: (H,W,3) uint8 RGB.
            source: the file name, used in messages (and by detectors that read side files).
        Raises:
            NoFaceError: no face (message names ``source``).
            PluginUnavailableError: the detector cannot run here.
        """


class Segmenter(Plugin, ABC):
    """Produces the skin mask that restricts the photometric loss."""

    needs_landmarks: ClassVar[bool] = False

    @abstractmethod
    def segment(
        self, image: np.ndarray, landmarks: np.ndarray | None = None, source: str = "<image>"
    ) -> np.ndarray:
        """Skin mask of ``image``.

        Args:
            image: (H,W,3) uint8 RGB.
            landmarks: (68,2) float32 iBUG landmarks of the face (required when
                ``needs_landmarks``).
            source: the file name, for messages and side files.
        Returns:
            (H,W) bool, True on visible skin.
        """


class Inpainter(Plugin, ABC):
    """Fills the unknown parts of images (UV albedo maps in texture-space building)."""

    @abstractmethod
    def inpaint(self, image: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """Complete ``image`` where ``known`` is 0.

        Args:
            image: [B,3,H,W] float in 0..1.
            known: [B,1,H,W] bool or 0/1 float, 1 where the pixel is valid.
        Returns:
            [B,3,H,W]: equal to ``image`` where known, filled elsewhere.
        """


class Loss(Plugin, ABC):
    """One term of the fitting objective, evaluated per image.

    A loss reads the named tensors it lists in ``inputs`` from a mapping the fitting loop
    fills; the standard names and shapes are documented in :mod:`flamekit.hookspecs`.
    It returns one value per batch item ([B]); the fitting loop applies the weight from its
    configuration and sums.
    """

    inputs: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def __call__(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """[B] loss per image from ``values`` (keys: at least ``inputs``)."""
