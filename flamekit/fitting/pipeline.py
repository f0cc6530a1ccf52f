"""Photos in, fitted heads out: files, detection, skin masks, crops, batched fits, outputs.

This is the library behind ``flamekit fit`` and ``flamekit demo`` (the CLI only parses
options). Each photo is cropped around its face to a square, fitted at the render size with
others in a batch, and every result is mapped back to the photo's own pixels. A bad photo
(unreadable, no face, a wrong side file) is reported and skipped; the others still finish.
Ctrl-C stops after the current step and keeps every image already written.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from flamekit.batch import Failure, expand_images
from flamekit.fitting.config import FitConfig, config_to_dict
from flamekit.fitting.crop import CropTransform, crop_from_landmarks
from flamekit.fitting.fitter import FitResult, Fitter
from flamekit.fitting.outputs import ImageFitOutput, fit_metrics, write_fit_outputs
from flamekit.io.image import load_image
from flamekit.plugin_types import ImageError, PluginUnavailableError

__all__ = ["FitSummary", "PreparedImage", "fit_images", "prepare_image", "resolve_device"]


@dataclass
class PreparedImage:
    """One photo ready to fit: its crop at the render size, landmarks and skin mask."""

    path: Path
    image: np.ndarray  # (H,W,3) uint8
    crop: CropTransform  # crop_size box; crop.resized(R) maps to render pixels
    landmarks: np.ndarray  # (68,2) original pixels
    render_image: torch.Tensor  # [3,R,R] 0..1
    render_landmarks: torch.Tensor  # [68,2] render pixels
    render_mask: torch.Tensor  # [1,R,R]


@dataclass
class FitSummary:
    """What :func:`fit_images` did; ``ok`` is False when any image failed or Ctrl-C hit."""

    written: dict[str, dict[str, Path]] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    results: dict[str, ImageFitOutput] = field(default_factory=dict)
    out_dir: Path = Path(".")
    interrupted: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures and not self.interrupted

    def format(self) -> str:
        lines = [f"fitted {len(self.written)} image(s) into {self.out_dir} in {self.seconds:.1f} s"]
        if self.interrupted:
            lines.append("interrupted: images not listed above were not fitted")
        if self.failures:
            lines.append(f"{len(self.failures)} image(s) failed:")
            lines += [f"  {f.image}: {f.reason}" for f in self.failures]
        return "\n".join(lines)


def resolve_device(device: str | None) -> torch.device:
    """``None`` -> cuda when available, else cpu; a cuda request without CUDA is an error."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"--device {device} was asked for but torch sees no CUDA device "
            f"(torch {torch.__version__}); use --device cpu or install a CUDA build of torch"
        )
    return dev


def detector_for(config: FitConfig, landmarks: str | Path | None):
    from flamekit import plugins

    if landmarks is not None:
        return plugins.landmark_detector("file", path=landmarks)
    return plugins.landmark_detector(config.detector)


def segmenter_for(config: FitConfig, masks: str | Path | None):
    from flamekit import plugins

    if masks is not None:
        return plugins.segmenter("file", path=masks)
    return plugins.segmenter(config.segmenter)


def prepare_image(path: Path, config: FitConfig, detector, segmenter) -> PreparedImage:
    """Load, detect, segment and crop one photo (raises ImageError with the file named)."""
    image = load_image(path)
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        detection = detector.detect(image, str(path))
    landmarks = detection.landmarks
    mask = segmenter.segment(image, landmarks, str(path))
    if mask.shape != image.shape[:2]:
        raise ImageError(f"{path}: the skin mask is {mask.shape}, the image {image.shape[:2]}")
    crop = crop_from_landmarks(
        landmarks, image.shape[:2], scale=config.crop_scale, crop_size=config.crop_size
    )
    render_crop = crop.resized(config.render_size)
    render_image = torch.from_numpy(
        np.ascontiguousarray(render_crop.crop_image(image), dtype=np.float32) / 255.0
    ).permute(2, 0, 1)
    render_landmarks = torch.as_tensor(render_crop.to_crop(landmarks), dtype=torch.float32)
    render_mask = torch.from_numpy(render_crop.crop_mask(mask).astype(np.float32))[None]
    if render_mask.sum() == 0:
        raise ImageError(f"{path}: the skin mask is empty inside the face crop")
    return PreparedImage(path, image, crop, landmarks, render_image, render_landmarks, render_mask)


def camera_dict(result: FitResult, index: int) -> dict:
    params = result.parameters
    if params.camera_type == "orthographic":
        return {
            "type": "orthographic",
            "scale": float(params.cam_scale[index, 0].detach()),
            "translation": params.cam_translation[index].detach().tolist(),
        }
    camera = params.camera()
    return {
        "type": "perspective",
        "focal": camera.focal[index].detach().tolist(),
        "principal_point": camera.principal_point[index].tolist(),
        "rotation": camera.rotation[index].tolist(),
        "translation": camera.translation[index].detach().tolist(),
    }


def _outputs(
    item: PreparedImage, result: FitResult, index: int, model, meta: dict, stage_metrics: dict
) -> ImageFitOutput:
    def hwc(t: torch.Tensor) -> np.ndarray:
        return t[index].detach().permute(1, 2, 0).cpu().numpy()

    params = {k: v[index] for k, v in result.parameters.as_numpy().items()}
    metrics = dict(stage_metrics)
    metrics["final_loss"] = float(result.losses[index])
    metrics["final_terms"] = {k: float(v[index]) for k, v in result.terms.items()}
    return ImageFitOutput(
        name=item.path.stem,
        source=str(item.path),
        image=item.image,
        crop=item.crop,
        render_size=result.render.shape[-1],
        params=params,
        camera=camera_dict(result, index),
        landmarks2d=result.landmarks2d[index].detach().cpu().numpy(),
        target_landmarks=item.landmarks,
        render=hwc(result.render),
        render_mask=result.render_mask[index, 0].detach().cpu().numpy(),
        albedo=hwc(result.albedo),
        shading=hwc(result.shading),
        shape_render=hwc(result.shape_render),
        skin_mask=item.render_mask[0].numpy(),
        vertices=result.vertices[index].detach().cpu().numpy(),
        faces=model.faces.cpu().numpy(),
        uvs=None if model.uvs is None else model.uvs.cpu().numpy(),
        uv_faces=None if model.uv_faces is None else model.uv_faces.cpu().numpy(),
        texture=None if model.uvs is None else hwc(result.texture),
        metrics=metrics,
        meta=meta,
    )


def load_texture_for(model, spec: str | Path | None, config: FitConfig):
    """The texture space named by ``spec`` / the environment / the registry, or None."""
    from flamekit.model.registry import resolve_file
    from flamekit.model.texture_space import load_texture_space

    files = resolve_file(spec, "texture-space")
    if files is None or config.model.num_texture == 0:
        return None
    space = load_texture_space(files[0], num_components=None, resolution=256)
    keep = min(config.model.num_texture, space.num_components)
    space = load_texture_space(files[0], num_components=keep, resolution=256)
    if space.uv_faces is not None and model.uvs is None:
        model.set_uv_layout(space.uvs, space.uv_faces)
    if model.uv_faces is not None and space.uv_faces is not None:
        if space.uv_faces.shape != model.uv_faces.shape:
            raise ValueError(
                f"texture space {files[0]} has a UV layout for {space.uv_faces.shape[0]} faces; "
                f"the model has {model.uv_faces.shape[0]}: they belong to different meshes"
            )
    return space


def fit_images(
    inputs: Iterable[str | Path],
    config: FitConfig,
    out_dir: str | Path,
    model: str | Path | None = None,
    texture_space: str | Path | None = None,
    landmarks: str | Path | None = None,
    masks: str | Path | None = None,
    batch_size: int = 8,
    progress: bool = True,
    head=None,
) -> FitSummary:
    """Fit every photo of ``inputs`` (files, folders, globs) and write the outputs.

    Args:
        config: the fit configuration (:func:`flamekit.fitting.config.load_config`).
        out_dir: outputs go to ``out_dir/<image stem>/``.
        model: a registered FLAME name or a model path (default: registry, else demo head).
        texture_space: a registered name or path (default: registry, else none).
        landmarks: a landmark file or folder (the ``file`` detector) instead of detecting.
        masks: a mask file or folder (the ``file`` segmenter) instead of segmenting.
        batch_size: images fitted together.
        head: an already built :class:`~flamekit.model.FlameModel` (overrides ``model``).
    """
    from flamekit.model.registry import load_head

    start = time.perf_counter()
    out_dir = Path(out_dir)
    device = resolve_device(config.device)
    summary = FitSummary(out_dir=out_dir)
    paths, failures = expand_images(inputs)
    summary.failures.extend(failures)
    if head is None:
        head = load_head(
            model,
            num_identity=None,
            num_expression=None,
        )
    space = load_texture_for(head, texture_space, config)
    if head.uvs is None and config.texture.offset:
        # FLAME pickles carry no UVs: fit without the offset map rather than refuse.
        warnings.warn(
            f"{head.data_release} has no UV layout (register FLAME's head_template_mesh.obj or "
            "a texture space with `flamekit models add`): fitting without the texture offset "
            "and without texture.png",
            stacklevel=2,
        )
        config = dataclasses.replace(
            config, texture=dataclasses.replace(config.texture, offset=False)
        )
    detector = detector_for(config, landmarks)
    segmenter = segmenter_for(config, masks)
    fitter = Fitter(head, config, texture_space=space, device=device)
    meta = fit_metadata(head, space, device, config)

    bar = FitProgress(progress and bool(paths), len(paths), config)
    try:
        with bar:
            for start_index in range(0, len(paths), max(1, batch_size)):
                chunk = paths[start_index : start_index + max(1, batch_size)]
                prepared = []
                for path in chunk:
                    try:
                        prepared.append(prepare_image(path, config, detector, segmenter))
                    except (ImageError, PluginUnavailableError, ValueError) as error:
                        summary.failures.append(Failure(path, str(error)))
                    bar.advance_prepare()
                if not prepared:
                    continue
                began = time.perf_counter()
                result = fitter.fit(
                    torch.stack([p.render_image for p in prepared]),
                    torch.stack([p.render_landmarks for p in prepared]),
                    torch.stack([p.render_mask for p in prepared]),
                    progress=bar.step,
                )
                seconds = time.perf_counter() - began
                stage_metrics = {
                    "iterations": {log.name: log.iterations for log in result.logs},
                    "stopped_early": {log.name: log.stopped_early for log in result.logs},
                    "seconds": seconds / len(prepared),
                    "batch_seconds": seconds,
                    "batch_size": len(prepared),
                    "device": str(device),
                    "loss_curve": {
                        log.name: {"steps": log.steps, "total": log.total} for log in result.logs
                    },
                }
                for index, item in enumerate(prepared):
                    fit = _outputs(item, result, index, head, meta, stage_metrics)
                    summary.written[item.path.stem] = write_fit_outputs(fit, out_dir)
                    fit.metrics.update(fit_metrics(fit))
                    summary.results[item.path.stem] = fit
    except KeyboardInterrupt:
        summary.interrupted = True
    summary.seconds = time.perf_counter() - start
    return summary


def fit_metadata(head, space, device, config: FitConfig) -> dict:
    """What a fit's metrics.json records about how it was made: model, texture space,
    device and the whole configuration."""
    return {
        "model": head.data_release,
        "is_flame": head.is_flame,
        "texture_space": None if space is None else space.source,
        "device": str(device),
        "config": config_to_dict(config),
    }


class FitProgress:
    """A rich progress bar per stage (or nothing when quiet)."""

    def __init__(self, enabled: bool, images: int, config: FitConfig) -> None:
        self.enabled = enabled
        self.images = images
        self._progress = None
        self._tasks: dict[str, int] = {}
        self._prepare = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                transient=False,
            )
            self._progress.__enter__()
            self._prepare = self._progress.add_task("detect + segment", total=self.images)
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def advance_prepare(self) -> None:
        if self._progress is not None:
            self._progress.advance(self._prepare)

    def step(self, stage: str, step: int, total: int) -> None:
        if self._progress is None:
            return
        if step == 1 or stage not in self._tasks:
            if stage in self._tasks:
                self._progress.remove_task(self._tasks[stage])
            self._tasks[stage] = self._progress.add_task(f"fit: {stage}", total=total)
        self._progress.update(self._tasks[stage], completed=step)
