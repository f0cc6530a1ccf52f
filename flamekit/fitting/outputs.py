"""Everything a fit writes for one photo, in one folder ``<out_dir>/<name>/``.

Files (all written through a temporary file and ``os.replace``, so Ctrl-C never leaves a
half-written file; ``metrics.json`` is written last, so its presence marks a complete folder):

- ``params.npz``: every fitted parameter as float arrays; ``params.json``: the same as lists,
  with the camera, the crop transform, the render size and the model/texture info
  (:attr:`ImageFitOutput.meta`), for readers without numpy.
- ``landmarks2d.npy``: (68,2) float32 fitted landmarks in ORIGINAL photo pixels, x then y,
  top-left pixel centre (0, 0): directly comparable with the detector's ``_lmk68.npy``.
- ``render.png``: the shaded head composited over the photo at its original resolution;
  ``mask.png``: 255 where the head covers the photo (coverage >= 0.5), else 0.
- ``mesh.obj`` + ``mesh.mtl`` + ``texture.png``: the posed mesh with its fitted UV albedo
  (``mesh.obj`` alone without UVs or texture).
- ``vis.jpg``: one row of panels to judge the fit at a glance; ``metrics.json``: the fitter's
  metrics plus the landmark and photometric errors computed here.

Coordinates follow :mod:`flamekit.fitting.crop`: pixel centres at integers everywhere. The
render is the crop box at R x R, i.e. ``fit.crop.resized(R)`` maps original <-> render pixels.
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from flamekit.fitting.crop import CropTransform
from flamekit.io.atomic import atomic_write
from flamekit.io.mesh_export import save_obj

__all__ = ["ImageFitOutput", "fit_metrics", "write_fit_outputs"]

_DETECTED = (0, 230, 0)
_FITTED = (255, 40, 40)
_SKIN_TINT = np.array([40.0, 140.0, 255.0], np.float32)


@dataclass(kw_only=True)
class ImageFitOutput:
    """The result of fitting one photo, as the writer needs it (numpy, one image, no batch).

    Torch tensors are accepted for every array field and converted (detached) on creation;
    shapes are checked on creation, so a mismatch fails in the fitter, not half-way through
    writing files.

    Attributes:
        name: output folder name, usually the photo's stem (no path separators).
        source: the photo's path, recorded in params.json.
        image: (H,W,3) uint8 RGB, the original photo.
        crop: the face box of the photo the fit used (original pixels <-> crop pixels).
        render_size: R; the fit renders the crop box at R x R, so render pixel
            ``r = (u + 0.5) * R / crop_size - 0.5`` for crop pixel ``u``
            (``crop.resized(R)`` maps original <-> render pixels directly).
        params: every fitted parameter by name (identity, expression, global_pose, neck_pose,
            jaw_pose, eye_pose, translation, texture, lighting, camera tensors,
            texture_offset (3,T,T), ...), numeric arrays of any shape.
        camera: JSON-able camera in RENDER pixels, e.g. ``{"type": "orthographic", "scale": s,
            "translation": [tx, ty]}`` or ``{"type": "perspective", "focal": [fx, fy],
            "principal_point": [cx, cy], "rotation": 3x3, "translation": [tx, ty, tz]}``.
        landmarks2d: (68,2) fitted model landmarks in RENDER pixels, top-left pixel centre 0.
        target_landmarks: (68,2) detected landmarks in ORIGINAL pixels.
        render: (R,R,3) float 0..1 shaded render over black (background 0, i.e. colour
            premultiplied by coverage); render_mask: (R,R) float coverage in 0..1.
        albedo, shading: (R,R,3) the render's texture colour and SH irradiance (may exceed 1).
        shape_render: (R,R,3) grey shaded geometry without texture.
        skin_mask: (R,R) the mask the photometric loss used, or None.
        vertices: (V,3) posed vertices; faces: (F,3) vertex indices.
        uvs: (T,2) texture coordinates (v up) or None; uv_faces: (F,3) into ``uvs`` or None.
        texture: (S,S,3) float 0..1 UV albedo (texture space + fitted offset) or None.
        metrics: JSON-able numbers from the fitter (losses, iterations, seconds, ...).
        meta: JSON-able model/texture info for params.json (model name, texture space, ...).
    """

    name: str
    source: str
    image: np.ndarray
    crop: CropTransform
    render_size: int
    params: dict[str, np.ndarray]
    camera: dict
    landmarks2d: np.ndarray
    target_landmarks: np.ndarray
    render: np.ndarray
    render_mask: np.ndarray
    albedo: np.ndarray
    shading: np.ndarray
    shape_render: np.ndarray
    skin_mask: np.ndarray | None = None
    vertices: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray | None = None
    uv_faces: np.ndarray | None = None
    texture: np.ndarray | None = None
    metrics: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in (
            "image", "landmarks2d", "target_landmarks", "render", "render_mask", "albedo",
            "shading", "shape_render", "skin_mask", "vertices", "faces", "uvs", "uv_faces",
            "texture",
        ):  # fmt: skip
            value = getattr(self, key)
            if value is not None:
                setattr(self, key, _numpy(value))
        self.params = {str(k): _numpy(v) for k, v in self.params.items()}
        self._check()

    @property
    def render_transform(self) -> CropTransform:
        """Original pixels <-> render pixels (the crop box at R x R)."""
        return self.crop.resized(self.render_size)

    def landmarks_original(self) -> np.ndarray:
        """(68,2) float64 fitted landmarks mapped from render pixels to original pixels."""
        return self.render_transform.to_original(self.landmarks2d.astype(np.float64))

    def _check(self) -> None:
        """Refuse shapes the writer cannot turn into consistent files."""
        name = self.name
        if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
            raise ValueError(f"name {name!r} must be a plain folder name (the photo's stem)")
        if not isinstance(self.crop, CropTransform):
            raise TypeError(f"crop must be a CropTransform, got {type(self.crop).__name__}")
        image = self.image
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be (H,W,3) uint8, got {image.dtype} {image.shape}")
        r = self.render_size
        if int(r) != r or r < 1:
            raise ValueError(f"render_size must be a positive int, got {r}")
        self.render_size = int(r)
        for key in ("render", "albedo", "shading", "shape_render"):
            _expect(self, key, (r, r, 3), float_only=True)
        _expect(self, "render_mask", (r, r), float_only=False)
        if self.skin_mask is not None:
            _expect(self, "skin_mask", (r, r), float_only=False)
        _expect(self, "landmarks2d", (None, 2), float_only=True)
        _expect(self, "target_landmarks", (self.landmarks2d.shape[0], 2), float_only=True)
        _expect(self, "vertices", (None, 3), float_only=True)
        faces = self.faces
        if faces.ndim != 2 or faces.shape[1] != 3 or faces.dtype.kind not in "iu":
            raise ValueError(f"faces must be (F,3) integers, got {faces.dtype} {faces.shape}")
        if (self.uvs is None) != (self.uv_faces is None):
            raise ValueError("uvs and uv_faces must be given together (or both None)")
        if self.uvs is not None:
            _expect(self, "uvs", (None, 2), float_only=True)
            _expect(self, "uv_faces", faces.shape, float_only=False)
        if self.texture is not None:
            _expect(self, "texture", (None, None, 3), float_only=False)
        if not isinstance(self.camera, dict):
            raise TypeError(f"camera must be a JSON-able dict, got {type(self.camera).__name__}")
        for key, value in self.params.items():
            if value.dtype.kind not in "biuf":
                raise ValueError(f"params[{key!r}] must be numeric, got {value.dtype}")


def fit_metrics(fit: ImageFitOutput) -> dict[str, float | int | None]:
    """The errors a person compares fits by, computed from the outputs themselves.

    - ``landmark_error_px``: mean Euclidean distance in ORIGINAL pixels between the fitted
      landmarks (mapped back from the render) and the detected ones (``..._max_px``: the
      worst point); landmarks with a non-finite coordinate are left out.
    - ``photometric_error``: mean absolute RGB difference (0..1 scale) between the render and
      the photo's crop resampled to the render, over pixels with coverage >= 0.5 that are in
      the skin mask (all covered pixels without one); ``photometric_pixels`` counts them.
      Render colours are un-premultiplied by coverage first. None when no pixel qualifies.
    """
    fitted = fit.landmarks_original()
    target = fit.target_landmarks.astype(np.float64)
    valid = np.isfinite(fitted).all(axis=1) & np.isfinite(target).all(axis=1)
    distances = np.linalg.norm(fitted[valid] - target[valid], axis=1)
    metrics: dict[str, float | int | None] = {
        "landmark_error_px": float(distances.mean()) if distances.size else None,
        "landmark_error_max_px": float(distances.max()) if distances.size else None,
    }

    coverage = np.clip(fit.render_mask.astype(np.float32), 0.0, 1.0)
    pixels = coverage >= 0.5
    if fit.skin_mask is not None:
        skin = fit.skin_mask
        pixels &= (skin > 0.5) if skin.dtype.kind == "f" else skin.astype(bool)
    count = int(pixels.sum())
    error = None
    if count:
        photo = fit.render_transform.crop_image(fit.image).astype(np.float32) / 255.0
        colour = fit.render[pixels].astype(np.float32) / coverage[pixels][:, None]
        error = float(np.abs(colour - photo[pixels]).mean())
    metrics["photometric_error"] = error
    metrics["photometric_pixels"] = count
    return metrics


def write_fit_outputs(
    fit: ImageFitOutput,
    out_dir: str | Path,
    jpeg_quality: int = 92,
    vis_height: int = 256,
) -> dict[str, Path]:
    """Write every output file of one fit into ``out_dir/<fit.name>/`` (see the module doc).

    Files from an earlier run in that folder are replaced; ``mesh.mtl`` and ``texture.png``
    left by an earlier textured run are removed when this fit has no texture, and an earlier
    ``metrics.json`` is removed first, so an interrupted rewrite does not look complete.

    Args:
        jpeg_quality: vis.jpg quality (1..100).
        vis_height: panel height of vis.jpg in pixels.

    Returns:
        The written paths by role: ``params_npz``, ``params_json``, ``landmarks2d``,
        ``render``, ``mask``, ``mesh`` (+ ``mtl``, ``texture`` when textured), ``vis``,
        ``metrics``.
    """
    if not 1 <= int(jpeg_quality) <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
    if int(vis_height) < 16:
        raise ValueError(f"vis_height must be >= 16, got {vis_height}")
    folder = Path(out_dir) / fit.name
    folder.mkdir(parents=True, exist_ok=True)
    computed = fit_metrics(fit)
    # metrics.json marks a complete folder: drop an earlier run's until this one is complete.
    (folder / "metrics.json").unlink(missing_ok=True)
    paths: dict[str, Path] = {}

    paths["params_npz"] = atomic_write(folder / "params.npz", lambda h: _write_npz(h, fit.params))
    paths["params_json"] = _write_json(folder / "params.json", _params_json(fit))

    landmarks = fit.landmarks_original().astype(np.float32)
    paths["landmarks2d"] = atomic_write(
        folder / "landmarks2d.npy", lambda h: np.save(h, landmarks, allow_pickle=False)
    )

    composite, mask = _composite_original(fit)
    paths["render"] = _write_png(folder / "render.png", composite)
    paths["mask"] = _write_png(folder / "mask.png", mask)

    paths.update(_write_mesh(fit, folder))
    vis = _visualisation(fit, computed, int(vis_height))
    paths["vis"] = write_image(folder / "vis.jpg", vis, "JPEG", quality=int(jpeg_quality))

    metrics = {"name": fit.name, **fit.metrics, **computed}
    paths["metrics"] = _write_json(folder / "metrics.json", metrics)
    return paths


# -- files ---------------------------------------------------------------------------------


def _write_npz(handle, params: dict[str, np.ndarray]) -> None:
    """np.savez without its reserved keyword names (a parameter may be called anything)."""
    with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, value in params.items():
            with zf.open(f"{key}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(value), allow_pickle=False)


def _params_json(fit: ImageFitOutput) -> dict[str, Any]:
    height, width = fit.image.shape[:2]
    return {
        "name": fit.name,
        "source": fit.source,
        "image_size": [height, width],
        "render_size": fit.render_size,
        "crop": fit.crop.to_dict(),
        "render_transform": fit.render_transform.to_dict(),
        "camera": fit.camera,
        "meta": fit.meta,
        "coordinates": (
            "pixels with the top-left pixel centre at (0, 0); camera and landmarks in render "
            "pixels (render_size); crop.matrix maps original -> crop pixels, "
            "render_transform.matrix original -> render pixels"
        ),
        "shapes": {key: list(value.shape) for key, value in fit.params.items()},
        "params": {key: _float_lists(value) for key, value in fit.params.items()},
    }


def _write_json(path: Path, data: Any) -> Path:
    text = json.dumps(_jsonable(data, path.name), indent=2, allow_nan=False) + "\n"
    return atomic_write(path, lambda h: h.write(text.encode("utf-8")))


def write_image(path: Path, pixels: np.ndarray, fmt: str, **options) -> Path:
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(pixels))
    return atomic_write(path, lambda h: image.save(h, format=fmt, **options))


def _write_png(path: Path, pixels: np.ndarray) -> Path:
    return write_image(path, pixels, "PNG")


def _write_mesh(fit: ImageFitOutput, folder: Path) -> dict[str, Path]:
    textured = fit.uvs is not None and fit.texture is not None
    written = save_obj(
        folder / "mesh.obj",
        fit.vertices,
        fit.faces,
        uvs=fit.uvs,
        uv_faces=fit.uv_faces,
        texture=fit.texture if textured else None,
        texture_name="texture.png",
    )
    paths = {"mesh": written[0]}
    if textured:
        paths["mtl"], paths["texture"] = written[1], written[2]
    else:
        for stale in ("mesh.mtl", "texture.png"):  # the new OBJ does not refer to them
            (folder / stale).unlink(missing_ok=True)
    return paths


# -- pictures ------------------------------------------------------------------------------


def _composite_original(fit: ImageFitOutput) -> tuple[np.ndarray, np.ndarray]:
    """render.png and mask.png pixels at the photo's resolution (only the box is resampled)."""
    transform = fit.render_transform
    size = fit.image.shape[:2]
    rows, cols, colour = transform.uncrop_region(fit.render.astype(np.float32), size)
    _, _, alpha = transform.uncrop_region(fit.render_mask.astype(np.float32), size)
    alpha = np.clip(alpha, 0.0, 1.0)
    composite = fit.image.copy()
    photo = composite[rows, cols].astype(np.float32) / 255.0
    composite[rows, cols] = float_to_uint8(colour + (1.0 - alpha[..., None]) * photo)
    mask = np.zeros(size, np.uint8)
    mask[rows, cols] = np.where(alpha >= 0.5, 255, 0).astype(np.uint8)
    return composite, mask


def _visualisation(fit: ImageFitOutput, metrics: dict, height: int) -> np.ndarray:
    """One row of labelled panels: landmarks, render over the crop, albedo, shading, shape,
    skin mask; all the crop box at ``height`` x ``height``."""
    from PIL import Image, ImageDraw

    panel_crop = fit.crop.resized(height)
    photo_r = fit.render_transform.crop_image(fit.image).astype(np.float32) / 255.0
    coverage = np.clip(fit.render_mask.astype(np.float32), 0.0, 1.0)[..., None]

    landmarks = Image.fromarray(panel_crop.crop_image(fit.image))
    draw = ImageDraw.Draw(landmarks)
    radius = max(1.0, height / 170)
    for points, colour in (
        (panel_crop.to_crop(fit.target_landmarks.astype(np.float64)), _DETECTED),
        (panel_crop.to_crop(fit.landmarks_original()), _FITTED),
    ):
        for x, y in points[np.isfinite(points).all(axis=1)]:
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour)

    render = fit.render.astype(np.float32) + (1.0 - coverage) * photo_r
    shading = fit.shading.astype(np.float32)
    covered = coverage[..., 0] >= 0.5
    # Irradiance can exceed 1; scale so the brightest (99th percentile) lit skin is white.
    top = float(np.percentile(shading[covered], 99)) if covered.any() else 1.0
    shading = shading / max(top, 1.0)
    if fit.skin_mask is not None:
        skin = fit.skin_mask.astype(np.float32)
        skin = np.clip(skin if fit.skin_mask.dtype.kind == "f" else skin > 0, 0, 1)[..., None]
        # Tint the mask and darken the rest, so the mask reads on any photo colour.
        tinted = 0.5 * photo_r + 0.5 * _SKIN_TINT / 255.0
        skin_view = skin * tinted + (1 - skin) * 0.55 * photo_r
        skin_label = "skin mask (blue)"
    else:
        skin_view, skin_label = photo_r * 0.5, "no skin mask"

    lmk_error = metrics.get("landmark_error_px")
    photo_error = metrics.get("photometric_error")
    panels = [
        (np.asarray(landmarks), "landmarks: green detected, red fitted"),
        (render, "render" + (f"  err {photo_error:.3f}" if photo_error is not None else "")),
        (fit.albedo, "albedo"),
        (shading, "shading"),
        (fit.shape_render, "shape"),
        (skin_view, skin_label),
    ]
    if lmk_error is not None:
        panels[0] = (panels[0][0], f"landmarks {lmk_error:.1f}px: green det., red fit")
    return labelled_panels(panels, height)


def labelled_panels(panels: list[tuple[np.ndarray, str]], height: int) -> np.ndarray:
    """A row of square, labelled pictures ((pixels 0..1, label) each) at ``height`` pixels."""
    from PIL import Image, ImageDraw

    gap = max(2, height // 64)
    canvas = np.full((height, len(panels) * (height + gap) - gap, 3), 32, np.uint8)
    for index, (pixels, label) in enumerate(panels):
        tile = Image.fromarray(resize_square(float_to_uint8(pixels), height))
        draw = ImageDraw.Draw(tile)
        box = draw.textbbox((4, 3), label)
        draw.rectangle([box[0] - 3, box[1] - 2, box[2] + 3, box[3] + 2], fill=(0, 0, 0))
        draw.text((4, 3), label, fill=(255, 255, 255))
        x = index * (height + gap)
        canvas[:, x : x + height] = np.asarray(tile)
    return canvas


def resize_square(pixels: np.ndarray, size: int) -> np.ndarray:
    if pixels.shape[0] == size and pixels.shape[1] == size:
        return pixels
    shrink = pixels.shape[0] > size
    return cv2.resize(
        pixels, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    )


# -- conversions ---------------------------------------------------------------------------


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _expect(fit: ImageFitOutput, key: str, shape: tuple, float_only: bool) -> None:
    value = getattr(fit, key)
    ok = value.ndim == len(shape) and all(
        want is None or have == want for have, want in zip(value.shape, shape, strict=True)
    )
    kinds = "f" if float_only else "biuf"
    if not ok or value.dtype.kind not in kinds:
        want = "(" + ",".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(
            f"{key} must be {want} {'float' if float_only else 'numeric'}, "
            f"got {value.dtype} {value.shape}"
        )


def float_to_uint8(values: np.ndarray) -> np.ndarray:
    if values.dtype == np.uint8:
        return values
    return np.round(np.clip(np.nan_to_num(values), 0.0, 1.0) * 255.0).astype(np.uint8)


def _float_lists(value: np.ndarray) -> Any:
    """Nested lists; float32 values with 9 significant digits (exact, and half the text)."""
    if value.dtype.kind == "f" and value.dtype.itemsize <= 4:
        flat = [float(format(v, ".9g")) for v in value.ravel().tolist()]
        return np.array(flat, dtype=np.float64).reshape(value.shape).tolist()
    return value.tolist()


def _jsonable(value: Any, where: str) -> Any:
    """Plain JSON types; NaN/inf become null (JSON has no such numbers)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, where) for v in value]
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist(), where)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{where}: {type(value).__name__} is not JSON-able")
