"""The analysis-by-synthesis loop: FLAME + camera + albedo + SH light, fitted to cropped photos.

The :class:`Fitter` works on a batch already cropped around the faces and resized to the
render size R (``flamekit.fitting.pipeline`` does the files, detection, cropping and mapping
back). Each stage optimizes the parameter groups the config names with Adam, on a weighted
sum of loss plugins; per-image losses are summed over the batch so every image's gradients,
and hence its Adam steps, are exactly those it would get alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from flamekit.fitting.parameters import FitParameters
from flamekit.model.flame import FlameModel
from flamekit.model.texture_space import TextureSpace
from flamekit.render import Renderer, clip_to_pixels
from flamekit.render.torch_ops import SH_CONSTANTS

__all__ = ["GREY_LIGHT", "FitResult", "Fitter", "StageLog", "uv_coverage"]

_STATIC = slice(17, 68)
#: Loss inputs that only a render provides: a stage whose losses read none of them skips it.
_RENDER_INPUTS = frozenset({"rendered", "image", "mask", "shading"})
#: Soft grey SH light (DC, then band 1) for shape-only renders: geometry without albedo.
GREY_LIGHT = torch.tensor([2.4, 0.0, 0.25, 0.6, 0.0, 0.0, 0.0, 0.0, 0.0])


@dataclass
class StageLog:
    """Loss history of one stage: ``steps`` and per-loss batch means at those steps."""

    name: str
    iterations: int = 0
    seconds: float = 0.0
    stopped_early: bool = False
    steps: list[int] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    terms: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class FitResult:
    """A fitted batch (B images, render size R, texture size T).

    Attributes:
        parameters: the optimized :class:`FitParameters` (detached copies via ``as_numpy``).
        vertices: [B,V,3] posed vertices; landmarks2d: [B,68,2] in render pixels (top-left
            pixel centre at 0); render, albedo, shading, shape_render: [B,3,R,R];
            render_mask: [B,1,R,R]; texture: [B,3,T,T] UV albedo (space + offset) in 0..1.
        losses: [B] final weighted total per image; terms: per-loss [B] values (unweighted).
        logs: one :class:`StageLog` per stage.
    """

    parameters: FitParameters
    vertices: torch.Tensor
    landmarks2d: torch.Tensor
    render: torch.Tensor
    render_mask: torch.Tensor
    albedo: torch.Tensor
    shading: torch.Tensor
    shape_render: torch.Tensor
    texture: torch.Tensor
    losses: torch.Tensor
    terms: dict[str, torch.Tensor]
    logs: list[StageLog]


def uv_coverage(uvs: torch.Tensor, uv_faces: torch.Tensor, size: int, backend) -> torch.Tensor:
    """[1,1,T,T] 1 where a mesh triangle covers the texel (texture row 0 = v = 1)."""
    from flamekit.texture.unwrap import texel_faces

    rast = texel_faces(uvs, uv_faces, size, backend=backend)
    return (rast[..., 3] > 0).float()[:, None]


class Fitter:
    """Fits a batch of cropped photos.

    Args:
        model: the head (FLAME or the demo head) with landmarks and, for textures, UVs.
        config: a :class:`flamekit.fitting.config.FitConfig`.
        texture_space: a :class:`TextureSpace` (its UV layout must match the model's), or
            None: the albedo is then the config's constant skin tone plus the offset map.
        device: torch device.
        losses: name -> loss factory; defaults to the loss plugins (built-in and third-party).
    """

    def __init__(
        self,
        model: FlameModel,
        config,
        texture_space: TextureSpace | None = None,
        device: str | torch.device = "cpu",
        losses: Callable[..., object] | None = None,
    ) -> None:
        self.config = config
        self.device = torch.device(device)
        self.model = model.to(self.device)
        if not model.has_landmarks:
            raise ValueError("the model has no 68-landmark embedding; fitting needs one")
        if model.uvs is None and config.texture.offset:
            raise ValueError(
                "the model has no UV layout, which the texture offset needs: register FLAME's "
                "template mesh or texture space (`flamekit models add`), or set "
                "texture.offset=false"
            )
        self.texture_space = texture_space.to(self.device) if texture_space is not None else None
        self.num_texture = (
            min(config.model.num_texture, texture_space.num_components) if texture_space else 0
        )
        r = config.render_size
        self.render_size = r
        if model.uvs is not None:
            uvs, uv_faces = model.uvs, model.uv_faces
        else:  # every corner samples one texel: a flat albedo
            uvs = torch.full((1, 2), 0.5, device=self.device)
            uv_faces = torch.zeros_like(model.faces)
        self.renderer = Renderer(model.faces, uvs, uv_faces, (r, r), backend=config.renderer).to(
            self.device
        )
        self.offset_resolution = config.texture.offset_resolution if config.texture.offset else 0
        base_size = self.offset_resolution or 64
        self.uv_mask = (
            uv_coverage(uvs, uv_faces, base_size, self.renderer.backend).to(self.device)
            if model.uvs is not None
            else torch.ones(1, 1, base_size, base_size, device=self.device)
        )
        self._make_loss = losses or _plugin_loss
        self._loss_cache: dict[str, object] = {}
        for stage in config.stages:  # unknown loss names fail now, not after minutes of fitting
            for name in stage.losses:
                self._loss(name)

    # -- pieces of one step
    def _loss(self, name: str):
        # Options that depend on the fit itself: landmark distances in units of half the
        # render (so the original code's weights apply), Euclidean as the original.
        if name not in self._loss_cache:
            options = {}
            if name in ("landmark", "landmark-robust"):
                options["scale"] = self.render_size / 2
            if name == "landmark":
                options["squared"] = False
            if name == "exposure-prior":  # the shading of the start light's DC term
                options["target"] = SH_CONSTANTS[0] * float(self.config.lighting.init_ambient)
            self._loss_cache[name] = self._make_loss(name, **options)
        return self._loss_cache[name]

    def _albedo_map(self, params: FitParameters) -> torch.Tensor:
        batch = params.identity.shape[0]
        if self.texture_space is not None:
            base = self.texture_space(params.texture)
        else:
            size = self.offset_resolution or 1
            tone = torch.tensor(self.config.texture.skin_tone, device=self.device)
            base = tone.view(1, 3, 1, 1).expand(batch, 3, size, size)
        if params.texture_offset is not None:
            offset = params.texture_offset
            if offset.shape[-2:] != base.shape[-2:]:
                offset = F.interpolate(
                    offset, size=base.shape[-2:], mode="bilinear", align_corners=False
                )
            base = base + offset
        return base

    def _forward(self, params: FitParameters, shape_only: bool = False):
        out = self.model(
            identity=params.identity,
            expression=params.expression,
            global_pose=params.global_pose,
            neck_pose=params.neck_pose,
            jaw_pose=params.jaw_pose,
            eye_pose=params.eye_pose,
        )
        camera = params.camera()
        r = self.render_size
        landmarks2d = clip_to_pixels(camera.to_clip(out.landmarks), (r, r)) - 0.5
        return out, camera, landmarks2d

    def _values(self, params, images, targets, weights, masks, need_render: bool):
        out, camera, landmarks2d = self._forward(params)
        values = {
            "landmarks2d": landmarks2d,
            "target_landmarks": targets,
            "landmark_weights": weights,
            "identity": params.identity,
            "expression": params.expression,
            "pose": params.pose(),
            "texture": params.texture,
            "lighting": params.lighting,
            "uv_mask": self.uv_mask,
        }
        if params.texture_offset is not None:
            values["texture_offset"] = params.texture_offset
        rendered = None
        if need_render:
            rendered = self.renderer(
                out.vertices, self._albedo_map(params), params.lighting, camera
            )
            values["rendered"] = rendered.image
            values["image"] = images
            values["mask"] = masks * rendered.mask
            values["shading"] = rendered.shading
        return values, out, rendered, landmarks2d

    # -- the loop
    def fit(
        self,
        images: torch.Tensor,
        landmarks: torch.Tensor,
        masks: torch.Tensor | None = None,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> FitResult:
        """Fit B cropped photos.

        Args:
            images: [B,3,R,R] RGB in 0..1 at the render size.
            landmarks: [B,68,2] detected landmarks in render pixels (top-left centre at 0).
            masks: [B,1,R,R] skin masks (1 = skin), or None for the whole image.
            progress: called as ``progress(stage_name, step, iterations)`` after each step.
        """
        cfg = self.config
        torch.manual_seed(cfg.seed)
        batch, r = images.shape[0], self.render_size
        if images.shape[1:] != (3, r, r):
            raise ValueError(f"images must be [B,3,{r},{r}], got {tuple(images.shape)}")
        if landmarks.shape != (batch, 68, 2):
            raise ValueError(f"landmarks must be [{batch},68,2], got {tuple(landmarks.shape)}")
        images = images.to(self.device, torch.float32)
        targets = landmarks.to(self.device, torch.float32)
        masks = (
            torch.ones(batch, 1, r, r, device=self.device)
            if masks is None
            else masks.to(self.device, torch.float32)
        )
        params = FitParameters(
            batch,
            self.model.num_identity and min(cfg.model.num_identity, self.model.num_identity),
            min(cfg.model.num_expression, self.model.num_expression),
            self.num_texture,
            cfg.camera.type,
            r,
            init_scale=cfg.camera.init_scale,
            focal_length=cfg.camera.focal_length,
            init_distance=cfg.camera.init_distance,
            lighting_channels=3 if cfg.lighting.mode == "per-channel" else 1,
            init_ambient=cfg.lighting.init_ambient,
            offset_resolution=self.offset_resolution,
        ).to(self.device)
        with torch.no_grad():
            rest = self._forward(params)[0]
            params.initialize_rotation(rest.landmarks[:, _STATIC], targets[:, _STATIC])
            turned = self._forward(params)[0]
        params.initialize_camera(turned.landmarks[:, _STATIC], targets[:, _STATIC])

        logs = []
        for stage in cfg.stages:
            logs.append(self._run_stage(stage, params, images, targets, masks, progress))
        return self._result(params, images, targets, masks, logs)

    def _active_losses(self, stage, params: FitParameters) -> dict[str, float]:
        """The stage's losses with a weight, minus those reading a group this fit lacks
        (the offset losses when there is no texture offset)."""
        active = {}
        for name, weight in stage.losses.items():
            inputs = getattr(self._loss(name), "inputs", ())
            if weight and not ("texture_offset" in inputs and params.texture_offset is None):
                active[name] = weight
        return active

    def _stage_weights(self, stage, batch: int) -> torch.Tensor:
        weights = torch.ones(batch, 68, device=self.device)
        if stage.landmarks == "static":
            weights[:, :17] = 0
        return weights

    def _run_stage(self, stage, params, images, targets, masks, progress) -> StageLog:
        log = StageLog(stage.name)
        groups = list(stage.optimize)
        if (
            "camera" in groups
            and self.config.camera.type == "perspective"
            and (self.config.camera.optimize_focal)
        ):
            groups.append("focal")
        tensors = [t for g in groups for t in params.group(g)]
        weights_by_loss = self._active_losses(stage, params)
        if not tensors or stage.iterations <= 0:
            return log
        if not weights_by_loss:
            raise ValueError(f"stage {stage.name!r} has no loss with a nonzero weight")
        optimizer = torch.optim.Adam(tensors, lr=stage.lr)
        need_render = any(
            _RENDER_INPUTS.intersection(getattr(self._loss(n), "inputs", ()))
            for n in weights_by_loss
        )
        lmk_weights = self._stage_weights(stage, images.shape[0])
        start = time.perf_counter()
        window_start = None
        every = max(1, int(self.config.log_every))
        for step in range(stage.iterations):
            optimizer.zero_grad(set_to_none=True)
            values, *_ = self._values(params, images, targets, lmk_weights, masks, need_render)
            terms = {n: self._loss(n)(values) for n in weights_by_loss}
            total = sum(w * terms[n] for n, w in weights_by_loss.items())  # [B]
            total.sum().backward()
            optimizer.step()
            log.iterations = step + 1
            last = step == stage.iterations - 1
            if step % every == 0 or last:  # the only host syncs of the loop
                log.steps.append(step)
                log.total.append(float(total.detach().mean()))
                for n, value in terms.items():
                    log.terms.setdefault(n, []).append(float(value.detach().mean()))
            if stage.early_stop and (step + 1) % stage.patience == 0:
                current = float(total.detach().sum())
                if window_start is not None and math.isfinite(current):
                    change = abs(window_start - current) / max(abs(window_start), 1e-12)
                    if change < stage.rel_tol:
                        log.stopped_early = True
                        break
                window_start = current
            if progress is not None:
                progress(stage.name, step + 1, stage.iterations)
        log.seconds = time.perf_counter() - start
        return log

    @torch.no_grad()
    def _result(self, params, images, targets, masks, logs) -> FitResult:
        last = self.config.stages[-1] if self.config.stages else None
        weights = self._stage_weights(last, images.shape[0]) if last else None
        values, out, rendered, landmarks2d = self._values(
            params, images, targets, weights, masks, need_render=True
        )
        terms, total = {}, torch.zeros(images.shape[0], device=self.device)
        for name, weight in self._active_losses(last, params).items() if last else ():
            terms[name] = self._loss(name)(values)
            total = total + weight * terms[name]
        camera = params.camera()
        grey = torch.full((1, 3, 1, 1), 0.7, device=self.device)
        light = GREY_LIGHT.to(self.device).view(1, 9, 1).expand(images.shape[0], 9, 1)
        shape = self.renderer(out.vertices, grey, light, camera).image
        texture = self._albedo_map(params).clamp(0, 1)
        size = self.config.texture.output_size
        if texture.shape[-1] != size:
            texture = F.interpolate(
                texture, size=(size, size), mode="bilinear", align_corners=False
            ).clamp(0, 1)
        return FitResult(
            parameters=params,
            vertices=out.vertices,
            landmarks2d=landmarks2d,
            render=rendered.image.clamp(0, 1),
            render_mask=rendered.mask,
            albedo=rendered.albedo,
            shading=rendered.shading,
            shape_render=shape.clamp(0, 1),
            texture=texture,
            losses=total,
            terms=terms,
            logs=logs,
        )


def _plugin_loss(name: str, **options):
    from flamekit import plugins

    return plugins.loss(name, **options)
