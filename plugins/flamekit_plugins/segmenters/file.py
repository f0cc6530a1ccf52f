"""The ``file`` segmenter: skin masks someone already has (hand-painted, another tool's).

Without a ``path=`` option it reads the first of these files beside the image (for
``photo.jpg``: ``photo_skin.png``, ``photo_mask.png``, ``photo.mask.png``); ``path=`` names
the mask file itself, or a folder holding such files.

Formats: any image PIL reads. An 8-bit greyscale mask is skin where it is over 127 (so
anti-aliased or JPEG-compressed edges split at the middle); a 1-bit mask where it is set;
every other mode (RGB, palette label maps, 16-bit) where any channel is non-zero (alpha is
ignored). A mask of
another size than the image is an error naming both sizes, unless ``resize=True``, which
scales it with nearest-neighbour sampling (no new in-between values).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from flamekit.plugin_types import ImageError, Segmenter

SIDE_SUFFIXES = ("_skin.png", "_mask.png", ".mask.png")

__all__ = ["SIDE_SUFFIXES", "FileSegmenter", "MaskFileError", "read_mask"]


class MaskFileError(ImageError):
    """A mask file is missing or wrong; an ImageError, so batch runs skip the image."""


def read_mask(path: str | Path) -> np.ndarray:
    """(H,W) bool mask from an image file (see the module doc for what counts as skin)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise MaskFileError(f"{path}: mask file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                opened.load()
                mode = opened.mode
                values = np.asarray(opened)
    except UnidentifiedImageError as exc:
        raise MaskFileError(f"{path}: not an image file PIL can read; save it as PNG") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise MaskFileError(f"{path}: mask is too large to decode safely ({exc})") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise MaskFileError(f"{path}: corrupt or truncated mask file ({exc})") from exc
    if mode == "L":
        return values > 127
    if mode == "LA":  # greyscale with alpha: the grey value, as for "L"
        return values[..., 0] > 127
    if values.ndim == 3:
        if mode in ("RGBA", "PA"):
            values = values[..., :-1]
        return (values != 0).any(-1)
    return values != 0


class FileSegmenter(Segmenter):
    """Reads the skin mask from a file instead of computing it (see the module doc).

    Options: ``path`` (a mask file, or a folder to look in instead of the image's own),
    ``resize`` (scale a mask of another size with nearest-neighbour instead of failing).
    """

    name = "file"
    needs_landmarks = False

    def __init__(self, path: str | Path | None = None, resize: bool = False) -> None:
        self.path = None if path is None else Path(path)
        self.resize = bool(resize)

    def find(self, source: str) -> Path:
        """The mask file for the image ``source``."""
        if self.path is not None and not self.path.is_dir():
            return self.path
        if source.startswith("<"):
            raise MaskFileError(
                f"{source}: the file segmenter needs the image's file name, or path=FILE"
            )
        image = Path(source)
        folder = self.path if self.path is not None else image.parent
        candidates = [folder / (image.stem + suffix) for suffix in SIDE_SUFFIXES]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        names = ", ".join(c.name for c in candidates)
        raise MaskFileError(
            f"{source}: no mask file found in {folder} (looked for {names}); "
            "pass the mask's path or use a segmenter such as skin"
        )

    def segment(
        self, image: np.ndarray, landmarks: np.ndarray | None = None, source: str = "<image>"
    ) -> np.ndarray:
        image = np.asarray(image)
        if image.ndim < 2:
            raise ImageError(f"{source}: expected an (H,W,3) image, got shape {image.shape}")
        path = self.find(source)
        mask = read_mask(path)
        height, width = image.shape[:2]
        if mask.shape != (height, width):
            if not self.resize:
                raise MaskFileError(
                    f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} px but the image "
                    f"{source} is {width}x{height} px; pass resize=True to scale it "
                    "(nearest-neighbour)"
                )
            rows = np.minimum(
                ((np.arange(height) + 0.5) * mask.shape[0] / height).astype(int), mask.shape[0] - 1
            )
            cols = np.minimum(
                ((np.arange(width) + 0.5) * mask.shape[1] / width).astype(int), mask.shape[1] - 1
            )
            mask = mask[rows[:, None], cols[None, :]]
        return np.ascontiguousarray(mask, dtype=bool)
