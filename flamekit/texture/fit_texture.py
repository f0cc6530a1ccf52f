"""A full-resolution UV texture fitted to one photo, on top of the usual geometric fit.

The fit's albedo (texture space + low-resolution offset) is smooth by design: it cannot hold
freckles, eyebrows or make-up. :func:`fit_texture` therefore runs the usual :class:`Fitter`
stages, freezes geometry, camera and lighting, and then optimizes every texel of a
``texture_size`` map, initialised from the fit's albedo, against the photo. Geometry is
frozen, so the rasterization, UV lookup and SH shading are computed once and each Adam step
is a single ``grid_sample``: the texture stage costs little even at a 512 render.

Loss: L1 photometric in the skin mask and render mask, ``smoothness`` x total variation
(squared finite differences) over the UV region the mesh uses, and a weak pull to the
initial albedo on texels no masked pixel sees (they get no photometric gradient, and
would otherwise drift with the smoothness term alone).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from flamekit.fitting.config import FitConfig, load_config
from flamekit.fitting.fitter import GREY_LIGHT, Fitter, uv_coverage
from flamekit.fitting.outputs import (
    ImageFitOutput,
    labelled_panels,
    write_fit_outputs,
    write_image,
)
from flamekit.fitting.pipeline import (
    FitProgress,
    camera_dict,
    detector_for,
    fit_metadata,
    load_texture_for,
    prepare_image,
    resolve_device,
    segmenter_for,
)
from flamekit.plugin_types import ImageError
from flamekit.render import PerspectiveCamera

__all__ = ["TextureFitResult", "fit_texture"]

LEARNING_RATE = 0.01
# The pull on never-seen texels, relative to the photometric term: weak, so it only decides
# what nothing else constrains.
UNSEEN_PULL = 0.1


@dataclass
class TextureFitResult:
    """What :func:`fit_texture` did for one photo.

    Attributes:
        name: the photo's stem (the output folder name); folder: ``out_dir/<name>``.
        paths: written files by role (those of :func:`write_fit_outputs` plus ``compare``).
        texture: (T,T,3) float32 optimized UV texture in 0..1 (row 0 is v = 1).
        error_before, error_after: mean absolute RGB error (0..1) in the skin and render
            mask at the texture render size, with the fit's albedo and the optimized texture.
        losses: the texture stage's total loss per step.
        seconds: the whole call; fit_seconds, texture_seconds: the two optimizations.
    """

    name: str
    folder: Path
    paths: dict[str, Path]
    texture: np.ndarray
    error_before: float
    error_after: float
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    fit_seconds: float = 0.0
    texture_seconds: float = 0.0


class _KeepMask:
    """Wraps a segmenter and keeps the last full-resolution mask: the texture stage crops
    it again at its own render size instead of upsampling the fit's small one."""

    def __init__(self, segmenter) -> None:
        self.segmenter = segmenter
        self.mask: np.ndarray | None = None

    def segment(self, image, landmarks, name):
        self.mask = self.segmenter.segment(image, landmarks, name)
        return self.mask


def _load_head(model):
    from flamekit.model.flame import FlameModel
    from flamekit.model.registry import load_head

    if isinstance(model, FlameModel):
        return model
    return load_head(model, num_identity=None, num_expression=None)


def _masked_l1(render: torch.Tensor, photo: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return ((render - photo).abs() * mask).sum() / (mask.sum() * 3).clamp_min(1.0)


def _total_variation(texture: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of neighbouring texels, over pairs inside ``region`` only
    (texels outside the UV islands are never rendered and must not bleed into them)."""
    dx = (texture[..., :, 1:] - texture[..., :, :-1]) ** 2
    dy = (texture[..., 1:, :] - texture[..., :-1, :]) ** 2
    mx = region[..., :, 1:] * region[..., :, :-1]
    my = region[..., 1:, :] * region[..., :-1, :]
    count = (mx.sum() + my.sum()) * 3
    return ((dx * mx).sum() + (dy * my).sum()) / count.clamp_min(1.0)


def _sampler(texture: torch.Tensor, grid: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The renderer's UV lookup: bilinear, border padding, row 0 = v = 1."""
    return F.grid_sample(texture, grid, "bilinear", "border", align_corners=False) * mask


def fit_texture(
    image_path: str | Path,
    out_dir: str | Path,
    config: FitConfig | None = None,
    model=None,
    texture_space: str | Path | None = None,
    landmarks: str | Path | None = None,
    mask: str | Path | None = None,
    texture_size: int = 512,
    iterations: int = 300,
    smoothness: float = 1.0,
    render_size: int = 512,
    device: str | None = None,
    progress: bool = True,
) -> TextureFitResult:
    """Fit FLAME to one photo, then optimize its full UV texture; write ``out_dir/<stem>/``.

    Files: ``texture.png`` (the optimized map), ``mesh.obj`` + ``mesh.mtl`` using it,
    ``render.png`` (textured head over the photo, original resolution), ``compare.jpg``
    (photo crop | fit albedo | optimized texture), ``metrics.json`` (errors before/after,
    seconds; written last), plus the other files of :func:`write_fit_outputs`.

    Args:
        config: the fit configuration (default :func:`load_config`).
        model: a registered name, a path or a :class:`FlameModel` (default: registry, else
            the demo head).
        landmarks, mask: a file or folder instead of the detector / segmenter.
        texture_size: T of the optimized [1,3,T,T] texture.
        iterations: Adam steps of the texture stage (lr 0.01).
        smoothness: weight of the total variation term.
        render_size: render size of the texture stage; at least the fit's, larger gives
            each texel gradients from more photo pixels.
        device: overrides ``config.device``.

    Raises:
        ImageError: a missing, unreadable or faceless photo, or a wrong landmark/mask file
            (the message names the file). ValueError: bad settings or a model without UVs.
    """
    start = time.perf_counter()
    config = config or load_config()
    if device is not None:
        config = dataclasses.replace(config, device=device)
    for label, value in (("texture_size", texture_size), ("render_size", render_size)):
        if int(value) < 8:
            raise ValueError(f"{label} must be >= 8, got {value}")
    if int(iterations) < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    if not smoothness >= 0:
        raise ValueError(f"smoothness must be >= 0, got {smoothness}")
    path = Path(image_path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    dev = resolve_device(config.device)
    head = _load_head(model)
    if head.uvs is None:
        raise ValueError(
            f"{head.data_release} has no UV layout, which a texture needs: register FLAME's "
            "head_template_mesh.obj or a texture space with `flamekit models add`"
        )
    space = load_texture_for(head, texture_space, config)
    segmenter = _KeepMask(segmenter_for(config, mask))
    item = prepare_image(path, config, detector_for(config, landmarks), segmenter)
    fitter = Fitter(head, config, texture_space=space, device=dev)

    size = max(int(render_size), config.render_size)
    with FitProgress(progress, 1, config) as bar:
        began = time.perf_counter()
        result = fitter.fit(
            item.render_image[None],
            item.render_landmarks[None],
            item.render_mask[None],
            progress=bar.step,
        )
        fit_seconds = time.perf_counter() - began
        began = time.perf_counter()
        stage = _TextureStage(fitter, result, item, segmenter.mask, size, int(texture_size))
        losses = stage.optimize(int(iterations), float(smoothness), bar.step)
        texture_seconds = time.perf_counter() - began

    error_before = stage.error(stage.initial)
    error_after = stage.error(stage.texture.detach())
    folder = Path(out_dir) / path.stem
    metrics = {
        "iterations": {log.name: log.iterations for log in result.logs},
        "texture_iterations": int(iterations),
        "texture_size": int(texture_size),
        "texture_render_size": size,
        "smoothness": float(smoothness),
        "photometric_error_before": error_before,
        "photometric_error_after": error_after,
        "texture_loss_curve": losses,
        "fit_seconds": fit_seconds,
        "texture_seconds": texture_seconds,
        "device": str(dev),
    }
    meta = fit_metadata(head, space, dev, config)
    output = stage.output(head, meta, metrics)
    folder.mkdir(parents=True, exist_ok=True)
    # metrics.json marks a complete folder: gone until write_fit_outputs writes it last.
    (folder / "metrics.json").unlink(missing_ok=True)
    compare = write_image(
        folder / "compare.jpg", stage.comparison(error_before, error_after), "JPEG", quality=92
    )
    metrics["seconds"] = time.perf_counter() - start
    paths = write_fit_outputs(output, out_dir)
    paths["compare"] = compare
    return TextureFitResult(
        name=path.stem,
        folder=folder,
        paths=paths,
        texture=output.texture.astype(np.float32),
        error_before=error_before,
        error_after=error_after,
        losses=losses,
        seconds=time.perf_counter() - start,
        fit_seconds=fit_seconds,
        texture_seconds=texture_seconds,
    )


class _TextureStage:
    """The frozen render of one fitted photo at ``size``, and the texture optimized on it."""

    def __init__(self, fitter: Fitter, result, item, full_mask, size: int, texture_size: int):
        from flamekit.render import Renderer

        self.fitter, self.result, self.item, self.size = fitter, result, item, size
        dev = fitter.device
        params = result.parameters.requires_grad_(False)  # frozen: nothing else may move
        model = fitter.model
        self.renderer = Renderer(
            model.faces, model.uvs, model.uv_faces, (size, size), backend=fitter.config.renderer
        ).to(dev)
        self.camera = params.camera()
        if isinstance(self.camera, PerspectiveCamera):  # same clip space, pixels of `size`
            ratio = size / fitter.render_size
            self.camera = dataclasses.replace(
                self.camera,
                focal=self.camera.focal * ratio,
                principal_point=self.camera.principal_point * ratio,
                image_size=(size, size),
            )
        self.vertices = result.vertices.detach()
        self.lighting = params.lighting.detach()
        with torch.no_grad():
            albedo = fitter._albedo_map(params)[:1].clamp(0, 1)
            mode = "area" if albedo.shape[-1] > texture_size else "bilinear"
            self.initial = F.interpolate(
                albedo,
                size=(texture_size, texture_size),
                mode=mode,
                **({} if mode == "area" else {"align_corners": False}),
            ).clamp(0, 1)
            rendered = self.renderer(self.vertices, self.initial, self.lighting, self.camera)
            backend = self.renderer.backend
            self.grid = backend.interpolate(
                self.renderer.grid_uvs, rendered.rast, self.renderer.uv_faces
            )
            self.render_mask = rendered.mask  # [1,1,S,S]
            self.shading = rendered.shading  # [1,3,S,S], already 0 off the mesh
        crop = item.crop.resized(size)
        self.crop = crop
        self.photo = (
            torch.from_numpy(
                np.ascontiguousarray(crop.crop_image(item.image), dtype=np.float32) / 255.0
            )
            .permute(2, 0, 1)[None]
            .to(dev)
        )
        skin = torch.from_numpy(crop.crop_mask(full_mask).astype(np.float32))[None, None]
        self.skin = skin.to(dev)
        self.mask = self.skin * self.render_mask
        if float(self.mask.sum()) == 0:
            raise ImageError(f"{item.path}: the fitted head covers none of the skin mask")
        self.region = uv_coverage(model.uvs, model.uv_faces, texture_size, backend).to(dev)
        # Texels some masked pixel samples (bilinear footprint): the gradient of a sum.
        probe = torch.ones_like(self.initial, requires_grad=True)
        _sampler(probe, self.grid, self.mask).sum().backward()
        self.seen = (probe.grad.abs().sum(1, keepdim=True) > 0).float()
        self.texture = self.initial.clone().requires_grad_(True)

    def render(self, texture: torch.Tensor) -> torch.Tensor:
        """[1,3,S,S] shaded colour over black (``image = albedo * shading``)."""
        return _sampler(texture, self.grid, self.render_mask) * self.shading

    @torch.no_grad()
    def error(self, texture: torch.Tensor) -> float:
        return float(_masked_l1(self.render(texture.clamp(0, 1)), self.photo, self.mask))

    def optimize(self, iterations: int, smoothness: float, progress) -> list[float]:
        optimizer = torch.optim.Adam([self.texture], lr=LEARNING_RATE)
        unseen = (1 - self.seen) * self.region
        losses = []
        for step in range(iterations):
            optimizer.zero_grad(set_to_none=True)
            texture = self.texture
            loss = _masked_l1(self.render(texture), self.photo, self.mask)
            if smoothness:
                loss = loss + smoothness * _total_variation(texture, self.region)
            pull = ((texture - self.initial) ** 2 * unseen).sum()
            loss = loss + UNSEEN_PULL * pull / (unseen.sum() * 3).clamp_min(1.0)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                texture.clamp_(0, 1)
            losses.append(float(loss.detach()))
            progress("texture", step + 1, iterations)
        return losses

    def output(self, head, meta: dict, metrics: dict) -> ImageFitOutput:
        """The write_fit_outputs record at the texture render size, with the new texture."""
        result, size = self.result, self.size
        texture = self.texture.detach().clamp(0, 1)
        with torch.no_grad():
            render = self.render(texture)
            albedo = _sampler(texture, self.grid, self.render_mask)
            grey = torch.full((1, 3, 1, 1), 0.7, device=texture.device)
            light = GREY_LIGHT.to(texture.device).view(1, 9, 1)
            shape = self.renderer(self.vertices, grey, light, self.camera).image

        def hwc(t: torch.Tensor) -> np.ndarray:
            return t[0].detach().permute(1, 2, 0).cpu().numpy()

        ratio = size / self.fitter.render_size
        landmarks = (result.landmarks2d[0].detach().cpu().numpy() + 0.5) * ratio - 0.5
        camera = camera_dict(result, 0)
        if camera["type"] == "perspective":
            camera["focal"] = [f * ratio for f in camera["focal"]]
            camera["principal_point"] = [c * ratio for c in camera["principal_point"]]
        params = {k: v[0] for k, v in result.parameters.as_numpy().items()}
        return ImageFitOutput(
            name=self.item.path.stem,
            source=str(self.item.path),
            image=self.item.image,
            crop=self.item.crop,
            render_size=size,
            params=params,
            camera=camera,
            landmarks2d=landmarks,
            target_landmarks=self.item.landmarks,
            render=hwc(render.clamp(0, 1)),
            render_mask=self.render_mask[0, 0].cpu().numpy(),
            albedo=hwc(albedo),
            shading=hwc(self.shading),
            shape_render=hwc(shape.clamp(0, 1)),
            skin_mask=self.skin[0, 0].cpu().numpy(),
            vertices=self.vertices[0].cpu().numpy(),
            faces=head.faces.cpu().numpy(),
            uvs=head.uvs.cpu().numpy(),
            uv_faces=head.uv_faces.cpu().numpy(),
            texture=hwc(texture),
            metrics=metrics,
            meta=meta,
        )

    @torch.no_grad()
    def comparison(self, before: float, after: float, height: int = 256) -> np.ndarray:
        """compare.jpg: photo crop | fit albedo render | optimized texture render, over the
        photo, each labelled with its error in the mask."""

        photo = self.photo[0].permute(1, 2, 0).cpu().numpy()
        cover = self.render_mask[0].permute(1, 2, 0).cpu().numpy()

        def over(texture: torch.Tensor) -> np.ndarray:
            colour = self.render(texture.clamp(0, 1))[0].permute(1, 2, 0).cpu().numpy()
            return colour + (1 - cover) * photo

        panels = [
            (photo, "photo"),
            (over(self.initial), f"fit albedo  err {before:.3f}"),
            (over(self.texture.detach()), f"texture fit  err {after:.3f}"),
        ]
        return labelled_panels(panels, height)
