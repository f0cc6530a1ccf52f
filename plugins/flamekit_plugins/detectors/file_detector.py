"""The ``file`` detector: landmarks someone already has (hand-corrected, another tool's, 300-W).

Without a ``path=`` option it reads the first of these files beside the image (for
``photo.jpg``: ``photo_lmk68.npy``, ``photo.npy``, ``photo.pts``, ``photo.txt``,
``photo.json``); ``path=`` names the file itself, or a folder holding such files.

Formats (68 points, iBUG order, x then y in pixels of the image, top-left pixel centre 0, 0):

* ``.npy``: float array (68,2) (a leading batch axis of 1, or a third z column, is dropped);
* ``.txt``: 68 lines ``x y`` (spaces, tabs or commas);
* ``.json``: a list of 68 ``[x, y]``, or an object ``{"landmarks": [...]}``;
* ``.pts``: the iBUG/300-W format (``version: 1``, ``n_points: 68``, ``{`` 68 lines ``}``).
  300-W annotations are 1-based (Matlab: the top-left pixel centre is 1, 1), so 1 is
  subtracted on reading and added on writing; pass ``pts_one_based=False`` for files whose
  writer used 0-based pixels.

Files are checked: a wrong point count, NaN/inf, all points within 2 px (normalised 0..1
coordinates instead of pixels) or points far outside the image (landmarks of a resized copy)
raise :class:`LandmarkFileError` naming the file and the problem.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from flamekit.plugin_types import Detection, ImageError, LandmarkDetector

SIDE_SUFFIXES = ("_lmk68.npy", ".npy", ".pts", ".txt", ".json")

__all__ = [
    "SIDE_SUFFIXES",
    "FileDetector",
    "LandmarkFileError",
    "read_landmarks",
    "write_landmarks",
]


class LandmarkFileError(ImageError):
    """A landmark file is missing or wrong; an ImageError, so batch runs skip the image."""


def read_landmarks(path: str | Path, pts_one_based: bool = True) -> np.ndarray:
    """(68,2) float32 landmarks from a ``.npy``, ``.pts``, ``.txt`` or ``.json`` file."""
    path = Path(path)
    if not path.is_file():
        raise LandmarkFileError(f"{path}: landmark file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            points = np.load(path, allow_pickle=False)
        elif suffix == ".pts":
            points = _read_pts(path) - (1.0 if pts_one_based else 0.0)
        elif suffix == ".txt":
            rows = [line.replace(",", " ").split() for line in path.read_text().splitlines()]
            rows = [row for row in rows if row and not row[0].startswith("#")]
            if len({len(row) for row in rows}) > 1:
                raise ValueError("lines have different numbers of values")
            points = np.array(rows, dtype=np.float64)
        elif suffix == ".json":
            data = json.loads(path.read_text())
            if isinstance(data, dict):
                if "landmarks" not in data:
                    raise ValueError(f'expected a "landmarks" key, found {sorted(data)}')
                data = data["landmarks"]
            points = np.array(data, dtype=np.float64)
        else:
            raise LandmarkFileError(
                f"{path}: unknown landmark format {suffix!r}; use .npy, .pts, .txt or .json"
            )
    except LandmarkFileError:
        raise
    except (ValueError, TypeError, OSError, UnicodeDecodeError) as exc:
        raise LandmarkFileError(f"{path}: cannot read landmarks ({exc})") from exc
    return _as_landmarks(points, path)


def _read_pts(path: Path) -> np.ndarray:
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if "{" not in lines or "}" not in lines:
        raise ValueError("not an iBUG .pts file: the points must sit between '{' and '}'")
    start, end = lines.index("{"), lines.index("}")
    points = np.array([line.split() for line in lines[start + 1 : end]], dtype=np.float64)
    for line in lines[:start]:
        key, _, value = line.partition(":")
        if key.strip() == "n_points" and int(value) != len(points):
            raise ValueError(f"header says n_points: {int(value)}, the file holds {len(points)}")
    return points


def _as_landmarks(points: np.ndarray, path: Path) -> np.ndarray:
    """Shape and value checks shared by every format."""
    points = np.asarray(points)
    while points.ndim > 2 and points.shape[0] == 1:
        points = points[0]
    if points.ndim == 2 and points.shape[1] == 3:  # FAN-3D / 2.5D output: keep x, y
        points = points[:, :2]
    if points.ndim != 2 or points.shape[1] != 2:
        raise LandmarkFileError(f"{path}: expected 68 points of x, y; got shape {points.shape}")
    if len(points) != 68:
        raise LandmarkFileError(
            f"{path}: holds {len(points)} points, expected 68 (the iBUG 68-point layout)"
        )
    if not np.issubdtype(points.dtype, np.number):
        raise LandmarkFileError(f"{path}: landmarks must be numbers, got {points.dtype}")
    points = points.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(points).all(1))
    if len(bad):
        raise LandmarkFileError(
            f"{path}: points {bad.tolist()} are NaN or infinite; every landmark needs a value"
        )
    return points.astype(np.float32)


def write_landmarks(path: str | Path, landmarks: np.ndarray, pts_one_based: bool = True) -> Path:
    """Write (68,2) landmarks in the format of ``path``'s suffix (the inverse of reading)."""
    path = Path(path)
    points = _as_landmarks(np.asarray(landmarks, dtype=np.float64), path).astype(np.float64)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        np.save(path, points.astype(np.float32))
    elif suffix == ".pts":
        shifted = points + (1.0 if pts_one_based else 0.0)
        body = "\n".join(f"{x:.6f} {y:.6f}" for x, y in shifted)
        path.write_text(f"version: 1\nn_points: 68\n{{\n{body}\n}}\n")
    elif suffix == ".txt":
        path.write_text("\n".join(f"{x:.6f} {y:.6f}" for x, y in points) + "\n")
    elif suffix == ".json":
        path.write_text(json.dumps({"landmarks": points.round(6).tolist()}))
    else:
        raise ValueError(f"{path}: unknown landmark format; use .npy, .pts, .txt or .json")
    return path


class FileDetector(LandmarkDetector):
    """Reads landmarks from files instead of detecting them (see the module doc).

    Options: ``path`` (a landmark file, or a folder to look in instead of the image's own),
    ``margin`` (how far outside the image a point may lie, as a fraction of the image size:
    jaw points of a cropped chin legitimately do), ``pts_one_based``.
    ``box`` is the landmarks' bounding box, ``confidence`` 1.0.
    """

    name = "file"

    def __init__(
        self, path: str | Path | None = None, margin: float = 0.1, pts_one_based: bool = True
    ) -> None:
        self.path = None if path is None else Path(path)
        self.margin = float(margin)
        self.pts_one_based = pts_one_based

    def find(self, source: str) -> Path:
        """The landmark file for the image ``source``."""
        if self.path is not None and not self.path.is_dir():
            return self.path
        if source.startswith("<"):
            raise LandmarkFileError(
                f"{source}: the file detector needs the image's file name, or path=FILE"
            )
        image = Path(source)
        folder = self.path if self.path is not None else image.parent
        candidates = [folder / (image.stem + suffix) for suffix in SIDE_SUFFIXES]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        names = ", ".join(c.name for c in candidates)
        raise LandmarkFileError(
            f"{source}: no landmark file found in {folder} (looked for {names}); "
            "pass --landmarks PATH or use a detector such as dlib"
        )

    def detect(self, image: np.ndarray, source: str = "<image>") -> Detection:
        """The landmarks from the file, checked against ``image``'s size."""
        path = self.find(source)
        points = read_landmarks(path, self.pts_one_based)
        height, width = np.asarray(image).shape[:2]
        extent = points.max(0) - points.min(0)
        if extent.max() < 2.0:
            raise LandmarkFileError(
                f"{path}: all 68 points lie within 2 px; normalised coordinates? "
                "the file must hold pixel coordinates of the image"
            )
        low = -0.5 - self.margin * np.array([width, height])
        high = np.array([width, height]) - 0.5 + self.margin * np.array([width, height])
        outside = np.flatnonzero(((points < low) | (points > high)).any(1))
        if len(outside):
            first = outside[0]
            x, y = points[first]
            raise LandmarkFileError(
                f"{path}: {len(outside)} points lie outside the {width}x{height} image "
                f"{source} (point {first} at {x:.1f}, {y:.1f}); are they landmarks of a "
                "resized copy, or of another image?"
            )
        return Detection(
            landmarks=points,
            box=np.concatenate([points.min(0), points.max(0)]),
            confidence=1.0,
            num_faces=1,
            image_size=(height, width),
            detector=self.name,
        )
