"""Square face crops of a photo, and the exact way back to the photo's pixels.

The fit works on a square crop around the face at a fixed resolution, while everything it
writes (landmarks, composited renders, masks) must land on the original photo. A
:class:`CropTransform` is that one similarity transform (scale + shift), used in both
directions for points and images so that the two can never disagree.

Coordinates: one convention everywhere, the landmark convention of flamekit's detectors. A
point ``(x, y)`` is in pixels, x right and y down, with the centre of the top-left pixel at
``(0, 0)``; pixel ``(row i, col j)`` therefore covers ``[j - 0.5, j + 0.5] x [i - 0.5, i + 0.5]``
and a ``W x H`` image covers ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``. This holds in the original
photo and in the crop. (The renderer puts pixel centres at ``+0.5``; convert before calling.)

The box is the square ``[x0, x0 + size] x [y0, y0 + size]`` of the original image plane, in
those coordinates (so ``x0 = -0.5, y0 = -0.5, size = W`` is the whole of a square ``W x W``
image). It may extend past the image borders. The crop's outer edges ``-0.5`` and
``crop_size - 0.5`` map exactly onto the box edges::

    x_crop = (x - x0) * scale - 0.5,    scale = crop_size / size

A render made at another resolution ``R`` of the same box is the same transform with
``crop_size = R`` (:meth:`CropTransform.resized`): render pixel ``r`` and crop pixel ``u``
relate by ``r = (u + 0.5) * R / crop_size - 0.5``, the exact resize mapping under this
convention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypeVar

import cv2
import numpy as np
import torch

__all__ = ["CropTransform", "crop_from_landmarks"]

Points = TypeVar("Points", np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class CropTransform:
    """A square box of the original photo and the square crop resolution it is resampled to.

    Attributes:
        x0, y0: the box's top-left corner in original pixels (pixel centres at integers; see
            the module docstring). May be negative or past the image.
        size: the box side in original pixels (> 0).
        crop_size: the crop's side in pixels.
    """

    x0: float
    y0: float
    size: float
    crop_size: int

    def __post_init__(self) -> None:
        for name in ("x0", "y0", "size"):
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise ValueError(f"CropTransform.{name} must be finite, got {value}")
            object.__setattr__(self, name, value)
        if self.size <= 0:
            raise ValueError(f"CropTransform.size must be > 0, got {self.size}")
        if int(self.crop_size) != self.crop_size or self.crop_size < 1:
            raise ValueError(
                f"CropTransform.crop_size must be a positive int, got {self.crop_size}"
            )
        object.__setattr__(self, "crop_size", int(self.crop_size))

    # -- the transform ---------------------------------------------------------------------

    @property
    def scale(self) -> float:
        """Crop pixels per original pixel (> 1 when the crop enlarges the face)."""
        return self.crop_size / self.size

    @property
    def matrix(self) -> np.ndarray:
        """2x3 float64 affine, original point -> crop point (the form cv2.warpAffine takes)."""
        s = self.scale
        return np.array([[s, 0.0, -s * self.x0 - 0.5], [0.0, s, -s * self.y0 - 0.5]])

    @property
    def inverse_matrix(self) -> np.ndarray:
        """2x3 float64 affine, crop point -> original point."""
        r = 1.0 / self.scale
        return np.array([[r, 0.0, self.x0 + 0.5 * r], [0.0, r, self.y0 + 0.5 * r]])

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the box in original pixels."""
        return (self.x0, self.y0, self.x0 + self.size, self.y0 + self.size)

    def resized(self, crop_size: int) -> CropTransform:
        """The same box at another resolution, e.g. the render's: ``crop.resized(R)``."""
        return CropTransform(self.x0, self.y0, self.size, crop_size)

    def to_crop(self, points: Points) -> Points:
        """[...,2] original-pixel points -> crop pixels; numpy or torch (differentiable)."""
        s = self.scale
        return _affine(points, s, -s * self.x0 - 0.5, -s * self.y0 - 0.5)

    def to_original(self, points: Points) -> Points:
        """[...,2] crop-pixel points -> original pixels; the inverse of :meth:`to_crop`."""
        r = 1.0 / self.scale
        return _affine(points, r, self.x0 + 0.5 * r, self.y0 + 0.5 * r)

    # -- images ----------------------------------------------------------------------------

    def crop_image(self, image: np.ndarray) -> np.ndarray:
        """(H,W,C) or (H,W) uint8/float image -> the (crop_size, crop_size[, C]) crop.

        Bilinear resampling, with a Gaussian prefilter when the crop shrinks the face (so a
        large photo does not alias into the crop). Parts of the box outside the photo
        replicate the border pixels rather than being black: a black band would be a strong
        false edge that the photometric loss and the landmark term would try to explain with
        the head; the skin mask (:meth:`crop_mask`, False outside) keeps those pixels out of
        the loss anyway. uint8 stays uint8; floats come back float32.
        """
        image = _as_image(image, "image")
        size = (self.crop_size, self.crop_size)
        return _warp(image, self.matrix, size, cv2.INTER_LINEAR, cv2.BORDER_REPLICATE, self.scale)

    def crop_mask(self, mask: np.ndarray) -> np.ndarray:
        """(H,W) bool mask -> (crop_size, crop_size) bool crop; nearest, False outside."""
        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ValueError(f"mask must be (H,W), got {mask.shape}")
        src = (mask > 0.5 if mask.dtype.kind == "f" else mask != 0).astype(np.uint8)
        size = (self.crop_size, self.crop_size)
        out = _warp(src, self.matrix, size, cv2.INTER_NEAREST, cv2.BORDER_CONSTANT, self.scale)
        return out.astype(bool)

    def uncrop_region(
        self, crop: np.ndarray, original_size: tuple[int, int]
    ) -> tuple[slice, slice, np.ndarray]:
        """Resample a crop back onto the part of the original image that the box covers.

        Returns ``(rows, cols, values)`` with ``values`` the float32 resampled crop for
        ``original[rows, cols]`` (zero outside the box, antialiased edges). Only the box's
        region is computed, so compositing onto a large photo costs memory for the face, not
        for the photo; :meth:`uncrop_image` embeds it into a full-size array.
        """
        height, width = _hw(original_size)
        crop = _as_image(crop, "crop")
        if crop.shape[:2] != (self.crop_size, self.crop_size):
            raise ValueError(
                f"crop must be ({self.crop_size},{self.crop_size}[,C]) for this transform, got "
                f"{crop.shape}; for a render at another resolution use .resized(R)"
            )
        if crop.dtype == np.uint8 or crop.dtype == np.bool_:
            crop = crop.astype(np.float32) / (255.0 if crop.dtype == np.uint8 else 1.0)
        x0, y0, x1, y1 = self.box
        # Pixels whose centre lies within half a pixel of the box get a (partial) value.
        c0 = min(max(math.floor(x0), 0), width)
        c1 = max(min(math.ceil(x1) + 1, width), c0)
        r0 = min(max(math.floor(y0), 0), height)
        r1 = max(min(math.ceil(y1) + 1, height), r0)
        rows, cols = slice(r0, r1), slice(c0, c1)
        channels = crop.shape[2:]
        if r1 == r0 or c1 == c0:
            return rows, cols, np.zeros((r1 - r0, c1 - c0, *channels), np.float32)
        matrix = self.inverse_matrix.copy()
        matrix[:, 2] -= (c0, r0)  # destination = the region, not the whole image
        values = _warp(
            crop, matrix, (r1 - r0, c1 - c0), cv2.INTER_LINEAR, cv2.BORDER_CONSTANT, 1 / self.scale
        )
        return rows, cols, values

    def uncrop_image(self, crop: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        """(c,c,C) crop (float 0..1 or uint8) -> (H,W,C) float32 original; 0 outside the box."""
        height, width = _hw(original_size)
        rows, cols, values = self.uncrop_region(crop, (height, width))
        out = np.zeros((height, width, *values.shape[2:]), np.float32)
        out[rows, cols] = values
        return out

    def uncrop_mask(self, mask: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        """(c,c) float/bool mask -> (H,W) float32 in 0..1 (bilinear edge, 0 outside the box)."""
        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ValueError(f"mask must be (c,c), got {mask.shape}")
        out = self.uncrop_image(mask.astype(np.float32), original_size)
        return np.clip(out, 0.0, 1.0)

    # -- serialisation ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for params.json (with the matrix, for readers without flamekit)."""
        return {
            "x0": self.x0,
            "y0": self.y0,
            "size": self.size,
            "crop_size": self.crop_size,
            "scale": self.scale,
            "matrix": self.matrix.tolist(),
            "convention": "original -> crop pixels; pixel centres at integers, top-left (0, 0)",
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CropTransform:
        """Inverse of :meth:`to_dict` (derived keys such as ``matrix`` are ignored)."""
        try:
            return cls(data["x0"], data["y0"], data["size"], data["crop_size"])
        except KeyError as exc:
            raise ValueError(f"crop transform dict is missing {exc.args[0]!r}: {data}") from exc


def crop_from_landmarks(
    landmarks: np.ndarray | torch.Tensor,
    image_size: tuple[int, int],
    scale: float = 1.25,
    crop_size: int = 256,
    shift_up: float = 0.1,
) -> CropTransform:
    """The square face box for 68 landmarks (original pixels, top-left pixel centre (0, 0)).

    The box is centred on the landmarks' bounding box with side ``scale * max(width,
    height)``. Its centre is moved up by ``shift_up`` of the landmark box's larger side: the
    68 points start at the brows, so a box centred on them would cut the forehead, which the
    photometric fit needs. The box may extend past the image (faces near the border keep
    their position in the crop instead of being shifted off-centre).

    Args:
        landmarks: (N,2) points, usually (68,2).
        image_size: (H, W) of the photo; a box that misses the photo entirely is an error
            (landmarks of another image, or normalised 0..1 coordinates).
    """
    points = landmarks.detach().cpu().numpy() if isinstance(landmarks, torch.Tensor) else landmarks
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] < 2:
        raise ValueError(f"landmarks must be (N,2) with N >= 2, got {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("landmarks contain NaN or infinite values")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    height, width = _hw(image_size)
    low, high = points.min(axis=0), points.max(axis=0)
    extent = float((high - low).max())
    if extent <= 0:
        raise ValueError("landmarks are all at one point; cannot size a face box")
    cx, cy = (low + high) / 2
    cy -= shift_up * extent
    side = scale * extent
    crop = CropTransform(cx - side / 2, cy - side / 2, side, crop_size)
    x0, y0, x1, y1 = crop.box
    if x1 <= -0.5 or y1 <= -0.5 or x0 >= width - 0.5 or y0 >= height - 0.5:
        raise ValueError(
            f"the face box {tuple(round(v, 1) for v in crop.box)} does not overlap the "
            f"{width}x{height} image: are the landmarks in this image's pixels?"
        )
    return crop


# -- helpers -------------------------------------------------------------------------------


def _affine(points: Points, s: float, bx: float, by: float) -> Points:
    """``points * s + (bx, by)`` for [...,2] numpy arrays or torch tensors."""
    if isinstance(points, torch.Tensor):
        if points.shape[-1] != 2:
            raise ValueError(f"points must be [...,2], got {tuple(points.shape)}")
        if not points.is_floating_point():
            points = points.double()
        offset = torch.tensor([bx, by], dtype=points.dtype, device=points.device)
        return points * s + offset
    array = np.asarray(points)
    if array.shape[-1:] != (2,):
        raise ValueError(f"points must be [...,2], got {array.shape}")
    if array.dtype.kind != "f":
        array = array.astype(np.float64)
    return array * array.dtype.type(s) + np.array([bx, by], dtype=array.dtype)


def _hw(size: tuple[int, int]) -> tuple[int, int]:
    height, width = (int(v) for v in size)
    if height < 1 or width < 1:
        raise ValueError(f"image size must be (H, W) >= 1, got {size}")
    return height, width


def _as_image(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim not in (2, 3) or (image.ndim == 3 and not 1 <= image.shape[2] <= 4):
        raise ValueError(f"{name} must be (H,W) or (H,W,C) with C <= 4, got {image.shape}")
    if image.dtype == np.bool_:
        return image.astype(np.float32)
    if image.dtype != np.uint8:
        if image.dtype.kind not in "fiu":
            raise ValueError(f"{name} must be uint8 or float, got {image.dtype}")
        image = image.astype(np.float32, copy=False)
    return image


def _warp(
    src: np.ndarray,
    matrix: np.ndarray,
    dst_size: tuple[int, int],
    interpolation: int,
    border: int,
    zoom: float,
) -> np.ndarray:
    """cv2.warpAffine of ``src`` by ``matrix`` (src point -> dst point) into ``dst_size`` (h, w).

    When shrinking (``zoom`` < 1 dst pixels per src pixel) with linear interpolation, the
    source region that the destination reads is Gaussian-blurred first (sigma ``(1/zoom - 1)
    / 2``, as skimage's antialiasing), so that detail finer than a destination pixel averages
    instead of aliasing. Only that region is blurred, so a large photo costs little.
    """
    h, w = dst_size
    matrix = np.asarray(matrix, dtype=np.float64).copy()
    if interpolation == cv2.INTER_LINEAR and zoom < 1:
        sigma = (1.0 / zoom - 1.0) / 2.0
        margin = math.ceil(3 * sigma) + 2
        inverse = cv2.invertAffineTransform(matrix)
        corners = (
            np.array(
                [[-0.5, -0.5, 1], [w - 0.5, -0.5, 1], [-0.5, h - 0.5, 1], [w - 0.5, h - 0.5, 1]]
            )
            @ inverse.T
        )
        src_h, src_w = src.shape[:2]
        c0 = min(max(math.floor(corners[:, 0].min()) - margin, 0), src_w - 1)
        c1 = max(min(math.ceil(corners[:, 0].max()) + margin + 1, src_w), c0 + 1)
        r0 = min(max(math.floor(corners[:, 1].min()) - margin, 0), src_h - 1)
        r1 = max(min(math.ceil(corners[:, 1].max()) + margin + 1, src_h), r0 + 1)
        region = np.ascontiguousarray(src[r0:r1, c0:c1])
        src = cv2.GaussianBlur(region, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=border)
        matrix[:, 2] += matrix[:, :2] @ np.array([c0, r0], dtype=np.float64)
    src = np.ascontiguousarray(src)
    out = cv2.warpAffine(src, matrix, (w, h), flags=interpolation, borderMode=border, borderValue=0)
    if src.ndim == 3 and out.ndim == 2:  # cv2 drops a single channel
        out = out[..., None]
    return out
