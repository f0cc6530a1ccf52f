"""Batch skin segmentation: images in, ``<stem>_mask.png`` (+ overlay PNG) out.

This is what ``flamekit segment`` runs; it lives in the library so that scripts and notebooks
get the same behaviour as the command: a bad photo (unreadable, no face, bad landmark or mask
file) is recorded and skipped instead of stopping a run of hundreds, every output is written
atomically (a file either is complete or is not there, even after Ctrl-C), and the result
says what failed and why.

Segmenters that need landmarks get them from ``<stem>_lmk68.npy`` (what ``flamekit detect``
writes) in ``landmarks_dir`` or beside the image, else from the detector passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flamekit.batch import BatchSummary, Failure, expand_images, progress_bar, without_file_prefix
from flamekit.io.atomic import atomic_write
from flamekit.plugin_types import (
    ImageError,
    LandmarkDetector,
    PluginUnavailableError,
    Segmenter,
)

__all__ = [
    "LANDMARK_SUFFIX",
    "MASK_SUFFIX",
    "OVERLAY_SUFFIX",
    "Failure",
    "Result",
    "Summary",
    "find_landmarks",
    "mask_overlay",
    "read_landmark_file",
    "segment_images",
]

LANDMARK_SUFFIX = "_lmk68.npy"
MASK_SUFFIX = "_mask.png"
OVERLAY_SUFFIX = "_mask_overlay.png"
#: Name endings of files this module writes; folders and globs skip them as inputs.
OUTPUT_STEM_ENDINGS = ("_mask", "_mask_overlay")
TINT = (0, 220, 90)  # the overlay's skin colour, RGB

DetectorSource = LandmarkDetector | Callable[[], LandmarkDetector]


@dataclass
class Result:
    """One image done: where its outputs went and how much of it is skin."""

    image: Path
    mask: Path
    overlay: Path
    skin_fraction: float
    landmarks: str = ""  # where the landmarks came from ("" when none were needed)


class Summary(BatchSummary):
    """What :func:`segment_images` did. ``ok`` is False when any image failed."""

    noun = "masks"

    def warnings(self) -> list[str]:
        return [
            f"warning: {r.image}: the mask is empty (no skin found)"
            for r in self.results
            if r.skin_fraction == 0
        ]


def read_landmark_file(path: str | Path) -> np.ndarray:
    """(68,2) float32 landmarks from a ``.npy`` file; ImageError naming the file otherwise."""
    path = Path(path)
    try:
        points = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ImageError(f"{path}: cannot read landmarks ({exc})") from exc
    points = np.asarray(points)
    while points.ndim > 2 and points.shape[0] == 1:
        points = points[0]
    if points.shape != (68, 2) or not np.issubdtype(points.dtype, np.number):
        raise ImageError(
            f"{path}: expected (68,2) landmarks in the iBUG order, got {points.dtype} "
            f"{points.shape}"
        )
    if not np.isfinite(points).all():
        raise ImageError(f"{path}: landmarks contain NaN or infinite values")
    return points.astype(np.float32)


def find_landmarks(image: Path, landmarks_dir: Path | None = None) -> Path | None:
    """``<stem>_lmk68.npy`` in ``landmarks_dir`` (first) or beside the image, if any."""
    folders = [landmarks_dir] if landmarks_dir is not None else []
    for folder in [*folders, image.parent]:
        candidate = folder / f"{image.stem}{LANDMARK_SUFFIX}"
        if candidate.is_file():
            return candidate
    return None


def mask_overlay(image: np.ndarray, mask: np.ndarray, strength: float = 0.45) -> np.ndarray:
    """The photo with the skin tinted and the mask's outline drawn, for checking by eye."""
    import cv2

    out = np.asarray(image, dtype=np.float32).copy()
    tint = np.array(TINT, dtype=np.float32)
    out[mask] = (1 - strength) * out[mask] + strength * tint
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    width = max(1, round(min(mask.shape) / 300))
    cv2.drawContours(out, contours, -1, TINT, width)
    return out


def _load_image(path: Path) -> np.ndarray:
    from flamekit.io.image import load_image

    return load_image(path)


def _expand(inputs: Iterable[str | Path]) -> tuple[list[Path], list[Failure]]:
    """:func:`flamekit.detect.expand_images`, minus this module's own outputs in folders/globs."""
    found: list[Path] = []
    failures: list[Failure] = []
    for item in inputs:
        paths, missing = expand_images([item])
        failures.extend(missing)
        if not Path(item).is_file():  # a folder or a pattern: skip masks written earlier
            paths = [p for p in paths if not p.stem.endswith(OUTPUT_STEM_ENDINGS)]
            if not paths and not missing:
                failures.append(Failure(Path(item), "holds only flamekit masks, no photos"))
        found.extend(paths)
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values()), failures


def _save_png(path: Path, array: np.ndarray) -> Path:
    from PIL import Image

    picture = Image.fromarray(array)
    return atomic_write(path, lambda handle: picture.save(handle, format="PNG"))


class _Detector:
    """Builds the detector on first need and remembers why it could not be built."""

    def __init__(self, source: DetectorSource | None):
        self._source = source
        self._detector: LandmarkDetector | None = None
        self._problem = "" if source is not None else "no detector was given"

    def landmarks(self, image: np.ndarray, path: Path, hint: str) -> np.ndarray:
        if self._detector is None and not self._problem:
            if hasattr(self._source, "detect"):  # a detector, not a factory of one
                self._detector = self._source
            else:
                try:
                    self._detector = self._source()
                except (PluginUnavailableError, ImportError, KeyError, ValueError) as exc:
                    self._problem = f"the detector cannot run: {exc}"
        if self._detector is None:
            raise ImageError(f"{path}: no landmark file ({hint}) and {self._problem}")
        return self._detector.detect(image, str(path)).landmarks


def segment_images(
    paths: Iterable[str | Path],
    segmenter: Segmenter,
    out_dir: str | Path,
    detector: DetectorSource | None = None,
    landmarks_dir: str | Path | None = None,
    progress: bool = True,
) -> Summary:
    """Compute the skin mask of every image of ``paths`` and write it to ``out_dir``.

    Args:
        paths: image files, folders (their images, not recursive) and glob patterns.
        segmenter: the :class:`~flamekit.plugin_types.Segmenter` to run.
        out_dir: folder for ``<stem>_mask.png`` (8-bit, 255 on skin) and
            ``<stem>_mask_overlay.png`` (the skin tinted over the photo); created when missing.
        detector: where landmarks come from when an image has no ``<stem>_lmk68.npy``: a
            landmark detector, or a zero-argument callable that builds one (called at most
            once, the first time it is needed). Unused by segmenters that need no landmarks.
        landmarks_dir: a folder of ``<stem>_lmk68.npy`` files, searched before the image's own.
        progress: show a rich progress bar on stderr.
    Returns:
        the :class:`Summary`: images done, failures with reasons. Ctrl-C stops the run and
        returns with ``interrupted`` set; files written up to then are complete.
    Raises:
        PluginUnavailableError: the segmenter cannot run here (missing weights); every image
            would fail the same way, so the run stops.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    landmarks_dir = None if landmarks_dir is None else Path(landmarks_dir)
    images, failures = _expand(paths)
    summary = Summary(failures=failures, out_dir=out_dir)
    claimed: dict[str, Path] = {}
    landmark_source = _Detector(detector)

    bar = progress_bar() if progress else None
    task = bar.add_task("segmenting skin", total=len(images)) if bar else None
    try:
        if bar:
            bar.start()
        for image_path in images:
            if bar:
                bar.update(task, description=image_path.name)
            _segment_one(
                image_path, segmenter, out_dir, landmarks_dir, landmark_source, claimed, summary
            )
            if bar:
                bar.advance(task)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        if bar:
            bar.stop()
    return summary


def _segment_one(
    image_path: Path,
    segmenter: Segmenter,
    out_dir: Path,
    landmarks_dir: Path | None,
    landmark_source: _Detector,
    claimed: dict[str, Path],
    summary: Summary,
) -> None:
    stem = image_path.stem
    if stem in claimed:
        summary.failures.append(
            Failure(
                image_path,
                f"its output name {stem}{MASK_SUFFIX} is taken by {claimed[stem]}; rename one "
                "of them or run them into different --out folders",
            )
        )
        return
    origin = ""
    try:
        image = _load_image(image_path)
        landmarks = None
        if segmenter.needs_landmarks:
            found = find_landmarks(image_path, landmarks_dir)
            if found is not None:
                landmarks, origin = read_landmark_file(found), str(found)
            else:
                where = [landmarks_dir, image_path.parent] if landmarks_dir else [image_path.parent]
                hint = "looked for " + " and ".join(
                    str(folder / f"{stem}{LANDMARK_SUFFIX}") for folder in where
                )
                landmarks = landmark_source.landmarks(image, image_path, hint)
                origin = "detector"
        mask = np.asarray(segmenter.segment(image, landmarks, str(image_path)))
        if mask.shape != image.shape[:2]:
            raise ImageError(
                f"the segmenter returned a {mask.shape} mask for a {image.shape[:2]} image"
            )
        mask = mask.astype(bool)
    except PluginUnavailableError:
        raise
    except (ImageError, ValueError, OSError) as exc:  # bad photo, landmarks or mask file
        summary.failures.append(Failure(image_path, without_file_prefix(str(exc), image_path)))
        return
    except Exception as exc:  # a segmenter's own error on one odd image must not end the run
        reason = f"{type(exc).__name__}: {without_file_prefix(str(exc), image_path)}"
        summary.failures.append(Failure(image_path, reason))
        return
    claimed[stem] = image_path
    mask_file = _save_png(out_dir / f"{stem}{MASK_SUFFIX}", mask.astype(np.uint8) * 255)
    overlay_file = _save_png(out_dir / f"{stem}{OVERLAY_SUFFIX}", mask_overlay(image, mask))
    summary.results.append(Result(image_path, mask_file, overlay_file, float(mask.mean()), origin))
