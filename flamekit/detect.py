"""Batch landmark detection: images in, ``<stem>_lmk68.npy`` (+ overlay PNG) out.

This is what ``flamekit detect`` runs; it lives in the library so that scripts and notebooks
get the same behaviour: a bad photo (unreadable, no face, bad landmark file) is recorded and
skipped instead of stopping a run of hundreds, every output is written atomically (a file
either is complete or is not there, even after Ctrl-C), and the result says what failed and
why.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flamekit.batch import (
    BatchSummary,
    Failure,
    expand_images,
    progress_bar,
    without_file_prefix,
)
from flamekit.io.atomic import atomic_write
from flamekit.io.image import load_image
from flamekit.plugin_types import (
    Detection,
    ImageError,
    LandmarkDetector,
    MultipleFacesWarning,
)

KIND = "landmark-detector"


#: Overlay colours per iBUG region (index range, RGB).
REGION_COLOURS = (
    (range(0, 17), (255, 215, 0)),  # jaw
    (range(17, 27), (255, 140, 0)),  # brows
    (range(27, 36), (0, 200, 255)),  # nose
    (range(36, 48), (0, 255, 100)),  # eyes
    (range(48, 68), (255, 60, 120)),  # mouth
)
_CONTOURS = (
    (range(0, 17), False),
    (range(17, 22), False),
    (range(22, 27), False),
    (range(27, 31), False),
    (range(31, 36), False),
    (range(36, 42), True),
    (range(42, 48), True),
    (range(48, 60), True),
    (range(60, 68), True),
)

__all__ = [
    "Failure",
    "Result",
    "Summary",
    "detect_images",
    "draw_landmarks",
    "expand_images",
    "landmark_detector",
]


@dataclass
class Result:
    """One image done: where its outputs went and what was found."""

    image: Path
    landmarks: Path
    overlay: Path | None
    detection: Detection
    warnings: list[str] = field(default_factory=list)


class Summary(BatchSummary):
    """What :func:`detect_images` did. ``ok`` is False when any image failed."""

    noun = "landmarks"

    def warnings(self) -> list[str]:
        return [f"warning: {r.image}: {message}" for r in self.results for message in r.warnings]


def landmark_detector(name: str, **options) -> LandmarkDetector:
    """Build the detector registered as ``name`` (built-in or a plugin's) with ``options``.

    With options (FAN's ``weights=`` path, say) the detector's constructor decides whether
    they make it usable, and raises :class:`PluginUnavailableError` when they do not.
    """
    from flamekit import plugins

    return plugins.landmark_detector(name, **options)


def draw_landmarks(image: np.ndarray, detection: Detection) -> np.ndarray:
    """The image with the face box, the contours and the 68 points drawn, colour-coded."""
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(np.asarray(image, dtype=np.uint8))
    draw = ImageDraw.Draw(canvas)
    size = min(canvas.size)
    radius = max(1.0, size / 250)
    width = max(1, round(size / 400))
    x0, y0, x1, y1 = (float(v) for v in detection.box)
    draw.rectangle([x0, y0, x1, y1], outline=(255, 255, 255), width=width)
    points = detection.landmarks.astype(np.float64)
    colour = {i: rgb for indices, rgb in REGION_COLOURS for i in indices}
    for indices, closed in _CONTOURS:
        line = [tuple(points[i]) for i in indices]
        draw.line(line + line[:1] if closed else line, fill=colour[indices[0]], width=width)
    for i, (x, y) in enumerate(points):
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour[i])
    return np.asarray(canvas)


def detect_images(
    paths: Iterable[str | Path],
    detector: LandmarkDetector | str,
    out_dir: str | Path,
    overlay: bool = True,
    progress: bool = True,
) -> Summary:
    """Detect landmarks in every image of ``paths`` and write them to ``out_dir``.

    Args:
        paths: image files, folders and glob patterns (see :func:`expand_images`).
        detector: a detector, or the registered name of one (built with no options).
        out_dir: folder for ``<stem>_lmk68.npy`` ((68,2) float32, iBUG order, pixels) and
            ``<stem>_lmk68.png`` (the overlay, when ``overlay``); created when missing.
        progress: show a rich progress bar on stderr.
    Returns:
        the :class:`Summary`: images done, failures with reasons, warnings (several faces).
        Ctrl-C stops the run and returns with ``interrupted`` set; files written up to then
        are complete.
    """
    if isinstance(detector, str):
        detector = landmark_detector(detector)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images, failures = expand_images(paths)
    summary = Summary(failures=failures, out_dir=out_dir)
    claimed: dict[str, Path] = {}

    bar = progress_bar() if progress else None
    task = bar.add_task("detecting landmarks", total=len(images)) if bar else None
    try:
        if bar:
            bar.start()
        for image_path in images:
            if bar:
                bar.update(task, description=image_path.name)
            _detect_one(image_path, detector, out_dir, overlay, claimed, summary)
            if bar:
                bar.advance(task)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        if bar:
            bar.stop()
    return summary


def _detect_one(
    image_path: Path,
    detector: LandmarkDetector,
    out_dir: Path,
    overlay: bool,
    claimed: dict[str, Path],
    summary: Summary,
) -> None:
    stem = image_path.stem
    if stem in claimed:
        summary.failures.append(
            Failure(
                image_path,
                f"its output name {stem}_lmk68.npy is taken by {claimed[stem]}; rename one "
                "of them or run them into different --out folders",
            )
        )
        return
    try:
        image = load_image(image_path)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            detection = detector.detect(image, str(image_path))
    except ImageError as exc:  # includes NoFaceError and bad landmark files
        summary.failures.append(Failure(image_path, without_file_prefix(str(exc), image_path)))
        return
    claimed[stem] = image_path
    notes = [w for w in caught if issubclass(w.category, MultipleFacesWarning)]
    for w in caught:  # anything else (a library's deprecation notice) is passed on as is
        if w not in notes:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    landmark_file = atomic_write(
        out_dir / f"{stem}_lmk68.npy",
        lambda handle: np.save(handle, detection.landmarks.astype(np.float32)),
    )
    overlay_file = None
    if overlay:
        from PIL import Image

        drawn = Image.fromarray(draw_landmarks(image, detection))
        overlay_file = atomic_write(
            out_dir / f"{stem}_lmk68.png", lambda handle: drawn.save(handle, format="PNG")
        )
    summary.results.append(
        Result(
            image_path,
            landmark_file,
            overlay_file,
            detection,
            [without_file_prefix(str(w.message), image_path) for w in notes],
        )
    )
