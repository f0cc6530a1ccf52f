"""Image reading (photos to uint8 RGB, with clear errors) and writing (torch images to files)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

__all__ = ["IMAGE_SUFFIXES", "load_image", "to_uint8", "save_image"]


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """[3,H,W] or [H,W,3] float image in 0..1 -> [H,W,3] uint8 array."""
    if image.dim() != 3:
        raise ValueError(f"expected a [3,H,W] or [H,W,3] image, got {tuple(image.shape)}")
    if image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
        image = image.permute(1, 2, 0)
    array = image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()
    return array if array.shape[-1] == 3 else np.repeat(array, 3, axis=-1)


def save_image(image: torch.Tensor, path: str | Path) -> Path:
    """Write a float image in 0..1 to ``path`` (format from the suffix); returns the path."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(image)).save(path)
    return path


MIN_SIDE = 64
MAX_SIDE = 8192

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm")


def load_image(path: str | Path) -> np.ndarray:
    """Read a photo as (H,W,3) uint8 RGB, the form every detector and segmenter takes.

    Photos arrive in every shape: grayscale, with alpha (composited on white, so that a
    transparent background does not turn black), palette, 16-bit (scaled to 8-bit), rotated by
    an EXIF tag (applied, as viewers do). Anything that cannot give a usable face photo raises
    :class:`flamekit.plugin_types.ImageError` naming the file, the problem and the fix:
    a missing or unreadable file, a non-image, a corrupt or truncated file, an image under
    64 px on its short side (too small for landmarks) or over 8192 px on its long side
    (decoding would take gigabytes; PIL's decompression-bomb guard is made an error too).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    from flamekit.plugin_types import ImageError

    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: file not found; check the path")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image file")

    def fail(problem: str, fix: str) -> ImageError:
        return ImageError(f"{path}: {problem}; {fix}")

    # Truncated files fail in load() as long as PIL.ImageFile.LOAD_TRUNCATED_IMAGES keeps
    # its default (False); PNGs also fail verify() on a bad checksum.
    corrupt_fix = "the file is damaged or incomplete: re-export or re-download it"
    try:
        with warnings.catch_warnings():
            # A decompression bomb warning becomes an error: such files are far over MAX_SIDE.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as probe:
                _check_size(path, probe.size, fail)
                probe.verify()  # checksums and structure, without decoding pixels
            with Image.open(path) as opened:
                opened.load()
                image = ImageOps.exif_transpose(opened)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise fail(f"image is too large to decode safely ({exc})", _downscale_fix()) from exc
    except UnidentifiedImageError as exc:
        raise fail(
            "not an image file PIL can read",
            f"convert it to PNG or JPEG (readable suffixes: {', '.join(IMAGE_SUFFIXES)})",
        ) from exc
    except PermissionError as exc:
        raise fail("permission denied", "make the file readable") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # PIL's corrupt-data errors
        raise fail(f"corrupt or truncated image ({exc})", corrupt_fix) from exc
    return _to_rgb8(image, fail)


def _downscale_fix() -> str:
    return (
        f"downscale it to at most {MAX_SIDE} px on the long side "
        "(a face needs a few hundred pixels)"
    )


def _check_size(path: Path, size: tuple[int, int], fail) -> None:
    """Refuse images that are too small for landmarks or too large to decode cheaply."""
    width, height = size
    if min(width, height) < MIN_SIDE:
        raise fail(
            f"image is {width}x{height} px, under the {MIN_SIDE} px minimum on the short side",
            "use a larger photo; landmarks need the face to cover a few hundred pixels",
        )
    if max(width, height) > MAX_SIDE:
        raise fail(f"image is {width}x{height} px, over {MAX_SIDE} px", _downscale_fix())


def _to_rgb8(image, fail) -> np.ndarray:
    """Any PIL mode -> (H,W,3) uint8 RGB; alpha composited on white."""
    from PIL import Image

    mode = image.mode
    if mode.startswith("I;16"):  # 16-bit grayscale: 0..65535 -> 0..255
        values = np.asarray(image, dtype=np.float64)
        gray = _scale_to_uint8(values, 65535.0)
        return np.repeat(gray[..., None], 3, axis=-1)
    if mode in ("I", "F"):  # 32-bit int / float: infer the range from the data
        values = np.asarray(image, dtype=np.float64)
        if not np.isfinite(values).all():
            raise fail("image contains NaN or infinite values", "export it as 8-bit PNG or JPEG")
        top = float(values.max(initial=0.0))
        if mode == "F" and top <= 1.0:
            scale = 1.0
        elif top <= 255.0:
            scale = 255.0
        elif top <= 65535.0:
            scale = 65535.0
        else:
            scale = top
        gray = _scale_to_uint8(values, scale)
        return np.repeat(gray[..., None], 3, axis=-1)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    # 48/64-bit PNGs arrive as RGB/RGBA with PIL's high-byte reduction (v >> 8), which is
    # within one level of v / 257; "1", "L", "P", "CMYK", "YCbCr" convert directly.
    return np.asarray(image.convert("RGB"))


def _scale_to_uint8(values: np.ndarray, scale: float) -> np.ndarray:
    return np.clip(np.rint(values * (255.0 / scale)), 0, 255).astype(np.uint8)
