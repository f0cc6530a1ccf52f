"""Helpers the built-in detectors share: input checks, model-file lookup, face choice."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np

from flamekit.plugin_types import ImageError, MultipleFacesWarning

INSTALL_HINT = "pip install dlib-bin face-recognition-models"


def check_image(image: np.ndarray, source: str) -> np.ndarray:
    """The (H,W,3) uint8 RGB array detectors expect, C-contiguous (dlib needs that)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ImageError(
            f"{source}: expected an (H,W,3) uint8 RGB image, got {image.dtype} {image.shape}; "
            "read photos with flamekit.io.image.load_image"
        )
    return np.ascontiguousarray(image)


def face_recognition_models_dir() -> Path | None:
    """The ``models/`` folder of face_recognition_models, found without importing it.

    Importing that package runs ``import pkg_resources``, which newer setuptools lack.
    """
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def box_area(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0))


def pick_largest(faces: list, source: str, box_of=lambda face: face[0]):
    """The face with the largest box; warns when there were several (the contract's rule)."""
    best = max(faces, key=lambda face: box_area(box_of(face)))
    if len(faces) > 1:
        x0, y0, x1, y1 = (round(float(v)) for v in box_of(best))
        warnings.warn(
            f"{source}: {len(faces)} faces found, using the largest (box {x0},{y0} to {x1},{y1})",
            MultipleFacesWarning,
            stacklevel=3,
        )
    return best
