"""The ``dlib`` detector: dlib's face detectors and its 68-point shape predictor.

It needs no network and no download (``pip install dlib-bin face-recognition-models`` ships
the model files), which is why it is the default. The face box comes from the HOG frontal
detector (fast); only when HOG finds nothing does the slower CNN (MMOD) detector run, which
also finds turned and poorly lit faces. The landmarks are dlib's 300-W trained regression
trees, in the iBUG 68-point order, in pixel indices (centre of the top-left pixel at 0, 0);
dlib rounds them to whole pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flamekit.plugin_types import (
    Detection,
    LandmarkDetector,
    NoFaceError,
    PluginUnavailableError,
)
from flamekit_plugins.detectors._common import (
    INSTALL_HINT,
    check_image,
    face_recognition_models_dir,
    pick_largest,
)

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
CNN_FILE = "mmod_human_face_detector.dat"

__all__ = ["CNN_FILE", "PREDICTOR_FILE", "DlibDetector", "DlibFaceFinder"]


def _model_file(name: str, given: str | Path | None) -> tuple[Path | None, str]:
    """(path, "") when the model file exists, else (None, reason and fix)."""
    if given is not None:
        path = Path(given)
        return (path, "") if path.is_file() else (None, f"{path}: model file not found")
    folder = face_recognition_models_dir()
    if folder is None:
        return None, f"face_recognition_models is not installed ({name}); {INSTALL_HINT}"
    path = folder / name
    if not path.is_file():
        return None, f"{path} is missing; reinstall with {INSTALL_HINT}"
    return path, ""


def _import_dlib():
    try:
        import dlib
    except ImportError as exc:
        raise PluginUnavailableError(f"dlib is not installed ({exc}); {INSTALL_HINT}") from exc
    return dlib


class DlibFaceFinder:
    """Face boxes: dlib's HOG detector, then its CNN detector when HOG finds none.

    Detection runs on a copy scaled down to ``max_detect_size`` px on the long side, because
    both detectors' cost grows with the pixel count (the CNN takes seconds on a 1024 px photo
    on a CPU) while faces big enough for useful landmarks stay findable. HOG upsamples
    ``upsample`` times so that faces down to about 40 px (at ``upsample=1``) are found.
    The FAN detector uses this class for its boxes too.
    """

    def __init__(
        self,
        upsample: int = 1,
        max_detect_size: int = 1024,
        use_cnn: bool = True,
        cnn_model: str | Path | None = None,
    ) -> None:
        self._dlib = _import_dlib()
        self.upsample = int(upsample)
        self.max_detect_size = int(max_detect_size)
        self.use_cnn = use_cnn
        self._cnn_path, self._cnn_reason = _model_file(CNN_FILE, cnn_model)
        if use_cnn and self._cnn_path is None:
            raise PluginUnavailableError(self._cnn_reason)
        self._hog = self._dlib.get_frontal_face_detector()
        self._cnn = None  # loaded on first use: most photos never need it

    def find(self, image: np.ndarray) -> list[tuple[np.ndarray, float, str]]:
        """All faces as (box (x0,y0,x1,y1) float32 in ``image`` pixels, score, "hog"|"cnn")."""
        small, factor = self._shrink(image)
        rects, scores, _ = self._hog.run(small, self.upsample, 0.0)
        faces = [
            (self._rect_box(r, factor), float(s), "hog") for r, s in zip(rects, scores, strict=True)
        ]
        if not faces and self.use_cnn:
            if self._cnn is None:
                self._cnn = self._dlib.cnn_face_detection_model_v1(str(self._cnn_path))
            faces = [
                (self._rect_box(d.rect, factor), float(d.confidence), "cnn")
                for d in self._cnn(small, 0)
            ]
        return faces

    def _shrink(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """The image scaled to at most ``max_detect_size`` on its long side, and the factor."""
        long_side = max(image.shape[:2])
        if long_side <= self.max_detect_size:
            return image, 1.0
        import cv2

        factor = long_side / self.max_detect_size
        size = (round(image.shape[1] / factor), round(image.shape[0] / factor))
        return np.ascontiguousarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA)), factor

    @staticmethod
    def _rect_box(rect, factor: float) -> np.ndarray:
        # Pixel indices in the small image -> pixel-centre coordinates of the full image.
        box = np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], np.float64)
        return ((box + 0.5) * factor - 0.5).astype(np.float32)


class DlibDetector(LandmarkDetector):
    """dlib face detection (HOG, CNN fallback) and dlib's 68-point shape predictor.

    Options: ``upsample`` (HOG upsampling, 1 finds faces from about 40 px),
    ``max_detect_size`` (long side the face search runs at), ``use_cnn`` (CNN fallback),
    ``predictor`` / ``cnn_model`` (paths replacing the face_recognition_models files).
    ``confidence`` is the HOG detector's score (about 0 to 3) or the CNN's confidence.
    """

    name = "dlib"

    def __init__(
        self,
        upsample: int = 1,
        max_detect_size: int = 1024,
        use_cnn: bool = True,
        predictor: str | Path | None = None,
        cnn_model: str | Path | None = None,
    ) -> None:
        self._dlib = _import_dlib()
        self._finder = DlibFaceFinder(upsample, max_detect_size, use_cnn, cnn_model)
        path, reason = _model_file(PREDICTOR_FILE, predictor)
        if path is None:
            raise PluginUnavailableError(reason)
        self._predictor = self._dlib.shape_predictor(str(path))

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        """Usable when dlib imports and both model files are installed."""
        try:
            _import_dlib()
        except PluginUnavailableError as exc:
            return False, str(exc)
        for name in (PREDICTOR_FILE, CNN_FILE):
            path, reason = _model_file(name, None)
            if path is None:
                return False, reason
        return True, ""

    def detect(self, image: np.ndarray, source: str = "<image>") -> Detection:
        """The largest face's 68 landmarks (warns with MultipleFacesWarning when several)."""
        image = check_image(image, source)
        faces = self._finder.find(image)
        if not faces:
            raise NoFaceError(
                f"{source}: no face found (dlib HOG and CNN detectors); the face should be "
                "visible, roughly frontal and at least about 40 px wide"
            )
        box, score, _ = pick_largest(faces, source)
        return Detection(
            landmarks=self.landmarks_in_box(image, box),
            box=box,
            confidence=score,
            num_faces=len(faces),
            image_size=image.shape[:2],
            detector=self.name,
        )

    def landmarks_in_box(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """(68,2) float32 landmarks of the face in ``box`` (x0, y0, x1, y1 pixels)."""
        x0, y0, x1, y1 = (round(float(v)) for v in box)
        shape = self._predictor(check_image(image, "<image>"), self._dlib.rectangle(x0, y0, x1, y1))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
