"""``example-mean-face``: a toy landmark detector that shows the detector contract.

It does not look for a face. It takes the bounding box of everything that differs from the
image border's colour, and places a fixed, schematic mean face (68 iBUG points drawn from
ellipses and arcs) in the centre of that box. The output is valid (68,2) landmarks in the
right order and coordinates, which is what the example is for; real fitting needs a real
detector (``dlib``, ``fan``).
"""

from __future__ import annotations

import numpy as np

from flamekit.plugin_types import Detection, ImageError, LandmarkDetector, NoFaceError

__all__ = ["MeanFaceDetector", "mean_face_shape"]


def _ellipse(cx: float, cy: float, rx: float, ry: float, angles) -> np.ndarray:
    """Points at ``angles`` (counter-clockwise on screen, y down)."""
    angles = np.asarray(angles, dtype=np.float64)
    return np.stack([cx + rx * np.cos(angles), cy - ry * np.sin(angles)], axis=1)


def _arc(x0: float, x1: float, y: float, rise: float, count: int) -> np.ndarray:
    """``count`` points from x0 to x1 on an arch whose middle is ``rise`` above ``y``."""
    s = np.linspace(0.0, 1.0, count)
    return np.stack([x0 + (x1 - x0) * s, y - rise * np.sin(np.pi * s)], axis=1)


def mean_face_shape() -> np.ndarray:
    """(68,2) float32 schematic frontal face in the unit box, iBUG order, x right, y down.

    Jaw 0-16 from the image-left temple round the chin, brows 17-26, nose bridge 27-30 and
    base 31-35, eyes 36-47 (each from its image-left corner, over the top), outer lips 48-59
    and inner lips 60-67 (from the image-left corner, over the top).
    """
    jaw = _ellipse(0.5, 0.2, 0.5, 0.8, np.linspace(np.pi, 2 * np.pi, 17))
    brows = np.concatenate([_arc(0.12, 0.44, 0.14, 0.06, 5), _arc(0.56, 0.88, 0.14, 0.06, 5)])
    bridge = np.stack([np.full(4, 0.5), np.linspace(0.3, 0.54, 4)], axis=1)
    base = _arc(0.40, 0.60, 0.60, -0.03, 5)
    eye_angles = np.pi - np.arange(6) * np.pi / 3
    eyes = np.concatenate(
        [
            _ellipse(0.30, 0.30, 0.09, 0.035, eye_angles),
            _ellipse(0.70, 0.30, 0.09, 0.035, eye_angles),
        ]
    )
    outer = np.pi - np.arange(12) * np.pi / 6
    outer_lips = _ellipse(0.5, 0.78, 0.18, 0.07, outer)
    inner_lips = _ellipse(0.5, 0.78, 0.12, 0.02, np.pi - np.arange(8) * np.pi / 4)
    shape = np.concatenate([jaw, brows, bridge, base, eyes, outer_lips, inner_lips])
    return shape.astype(np.float32)


class MeanFaceDetector(LandmarkDetector):
    """Places :func:`mean_face_shape` in the centre of the non-background box (a toy).

    Options:
        threshold: how far (0..255, max over channels) a pixel must differ from the median
            border colour to count as foreground.
    """

    name = "example-mean-face"

    def __init__(self, threshold: int = 24) -> None:
        if not 0 <= threshold < 255:
            raise ValueError(f"threshold must be in 0..254, got {threshold}")
        self.threshold = int(threshold)

    def detect(self, image: np.ndarray, source: str = "<image>") -> Detection:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ImageError(
                f"{source}: expected an (H,W,3) uint8 RGB image, got {image.dtype} {image.shape}"
            )
        height, width = image.shape[:2]
        border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]).astype(int)
        background = np.median(border, axis=0)
        foreground = np.abs(image.astype(int) - background).max(axis=2) > self.threshold
        rows, cols = np.nonzero(foreground)
        if rows.size == 0:
            raise NoFaceError(f"{source}: no face found (the image is one uniform colour)")
        box = np.array([cols.min(), rows.min(), cols.max(), rows.max()], dtype=np.float32)
        side = float(min(box[2] - box[0], box[3] - box[1]))
        centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], dtype=np.float32)
        landmarks = centre + (mean_face_shape() - 0.5) * side
        return Detection(
            landmarks=landmarks,
            box=box,
            confidence=0.0,  # a toy has no evidence that the box holds a face
            num_faces=1,
            image_size=(height, width),
            detector=self.name,
        )
