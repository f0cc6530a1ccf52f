"""Built-in fitting losses, registered through the ``register_losses`` hook.

Every loss reads the standard tensors of :mod:`flamekit.hookspecs` and returns one unweighted,
differentiable value per image ([B]); the fitting loop applies the weights. Normalizations are
chosen so that a value does not depend on how many points or pixels take part: per-point means
for landmarks, per-area means for images and UV maps (0 when nothing takes part, never NaN).

Names, values per image, and units:

* ``landmark``: weighted mean over points of ``|p - t|^2`` (pixels^2).
* ``landmark-robust``: the same with a robust ``rho`` (Geman-McClure or Charbonnier).
* ``photometric``: mean over ``mask`` of the channel-mean ``|rendered - image|`` (0..1).
* ``identity-reg``, ``expression-reg``, ``texture-reg``: sum of squared coefficients.
* ``pose-reg``: squared neck, jaw and eye rotations (radians^2); the global pose is free.
* ``lighting-reg``: squared non-DC SH coefficients plus the deviation from grey light.
* ``offset-magnitude``: mean over ``uv_mask`` of the channel-mean squared texture offset.
* ``offset-smoothness``: mean over neighbour pairs in ``uv_mask`` of ``|d offset|^p``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import ClassVar

import torch

from flamekit import hookimpl
from flamekit.plugin_types import Loss

__all__ = [
    "LOSSES",
    "ExpressionReg",
    "IdentityReg",
    "LandmarkLoss",
    "LightingReg",
    "OffsetMagnitude",
    "OffsetSmoothness",
    "PhotometricLoss",
    "PoseReg",
    "RobustLandmarkLoss",
    "TextureReg",
    "register_losses",
]

_EPS = 1e-6


class _BuiltinLoss(Loss):
    """Input lookup whose errors name the loss and the missing tensor."""

    optional_inputs: ClassVar[tuple[str, ...]] = ()

    def _input(self, values: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
        try:
            return values[key]
        except KeyError:
            raise KeyError(
                f"loss {self.name!r} needs the input {key!r} (it reads {', '.join(self.inputs)})"
            ) from None


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value}")
    return value


def _non_negative(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative number, got {value}")
    return value


def _landmark_pair(loss: _BuiltinLoss, values: Mapping[str, torch.Tensor]):
    pred = loss._input(values, "landmarks2d")
    target = loss._input(values, "target_landmarks").to(pred)
    if pred.dim() != 3 or pred.shape[-1] != 2 or target.shape != pred.shape:
        raise ValueError(
            f"loss {loss.name!r}: landmarks2d and target_landmarks must both be [B,N,2], got "
            f"{list(pred.shape)} and {list(target.shape)}"
        )
    return pred, target


def _weighted_point_mean(per_point: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """[B,N] -> [B]: sum(w d) / sum(w), so zero weights drop points without shrinking the loss."""
    if weights is None:
        return per_point.mean(-1)
    weights = torch.broadcast_to(weights.to(per_point), per_point.shape)
    return (weights * per_point).sum(-1) / weights.sum(-1).clamp_min(_EPS)


def _masked_mean(per_pixel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B,1,H,W] values, [B|1,1,H,W] mask -> [B] mean over the mask, 0 where it is empty."""
    mask = torch.broadcast_to(mask.to(per_pixel), per_pixel.shape)
    total = (per_pixel * mask).flatten(1).sum(1)
    return total / mask.flatten(1).sum(1).clamp_min(_EPS)


class LandmarkLoss(_BuiltinLoss):
    """Squared distance per landmark, mean over points (weighted by ``landmark_weights``).

    Options:
        scale: pixels per unit, the distances are divided by it first (e.g. the crop size to
            make the value resolution-independent); 1 keeps pixels^2.
        squared: False uses the distance itself (the mean Euclidean error of the original
            FLAME fitting code, whose gradient does not fade as the points converge).
    """

    name = "landmark"
    inputs = ("landmarks2d", "target_landmarks")
    optional_inputs = ("landmark_weights",)

    def __init__(self, scale: float = 1.0, squared: bool = True) -> None:
        self.scale = _positive("scale", scale)
        self.squared = bool(squared)

    def _per_point(self, squared: torch.Tensor) -> torch.Tensor:
        if self.squared:
            return squared
        return (squared + 1e-12).sqrt()  # smooth at zero distance

    def __call__(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        pred, target = _landmark_pair(self, values)
        squared = ((pred - target) / self.scale).pow(2).sum(-1)
        return _weighted_point_mean(self._per_point(squared), values.get("landmark_weights"))


class RobustLandmarkLoss(LandmarkLoss):
    """Landmark loss that saturates on outliers (a wrong detection or an occluded point).

    With ``d`` the (scaled) distance and ``s = sigma``:

    * ``geman-mcclure``: ``s^2 d^2 / (d^2 + s^2)``, bounded by ``s^2``;
    * ``charbonnier``: ``2 s^2 (sqrt(1 + d^2 / s^2) - 1)``, grows like ``2 s d``.

    Both equal ``d^2`` for ``d << s``, so the value is on the scale of ``landmark``.

    Options:
        sigma: the distance (after ``scale``) where the penalty stops being quadratic.
        function: ``"geman-mcclure"`` (default) or ``"charbonnier"``.
        scale: as in :class:`LandmarkLoss`.
    """

    name = "landmark-robust"
    FUNCTIONS: ClassVar[tuple[str, ...]] = ("geman-mcclure", "charbonnier")

    def __init__(
        self, sigma: float = 10.0, function: str = "geman-mcclure", scale: float = 1.0
    ) -> None:
        super().__init__(scale=scale)
        self.sigma = _positive("sigma", sigma)
        if function not in self.FUNCTIONS:
            raise ValueError(
                f"function must be one of {', '.join(self.FUNCTIONS)}, got {function!r}"
            )
        self.function = function

    def _per_point(self, squared: torch.Tensor) -> torch.Tensor:
        s2 = self.sigma**2
        if self.function == "geman-mcclure":
            return s2 * squared / (squared + s2)
        return 2.0 * s2 * (torch.sqrt(1.0 + squared / s2) - 1.0)


class PhotometricLoss(_BuiltinLoss):
    """L1 colour difference inside ``mask``, normalized by the mask area of each image.

    Per pixel the absolute difference is averaged over the 3 channels, then averaged over the
    mask, so the value is a mean absolute error in 0..1 units; an empty mask gives 0.
    """

    name = "photometric"
    inputs = ("rendered", "image", "mask")

    def __call__(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        rendered = self._input(values, "rendered")
        image = self._input(values, "image").to(rendered)
        mask = self._input(values, "mask")
        if rendered.dim() != 4 or image.shape != rendered.shape:
            raise ValueError(
                f"loss 'photometric': rendered and image must both be [B,3,H,W], got "
                f"{list(rendered.shape)} and {list(image.shape)}"
            )
        if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[2:] != rendered.shape[2:]:
            raise ValueError(
                f"loss 'photometric': mask must be [B,1,H,W] with H,W = "
                f"{list(rendered.shape[2:])}, got {list(mask.shape)}"
            )
        difference = (rendered - image).abs().mean(1, keepdim=True)
        return _masked_mean(difference, mask)


class _SquaredNorm(_BuiltinLoss):
    """Sum of squares of one coefficient vector: -2 log of its standard-normal prior + const."""

    def __call__(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        coefficients = self._input(values, self.inputs[0])
        if coefficients.dim() < 2:
            shape = list(coefficients.shape)
            raise ValueError(f"loss {self.name!r}: {self.inputs[0]} must be [B,K], got {shape}")
        return coefficients.pow(2).flatten(1).sum(1)


class IdentityReg(_SquaredNorm):
    """Keeps the identity (shape) coefficients near the mean head: ``sum identity^2``."""

    name = "identity-reg"
    inputs = ("identity",)


class ExpressionReg(_SquaredNorm):
    """Keeps the expression near neutral: ``sum expression^2``."""

    name = "expression-reg"
    inputs = ("expression",)


class TextureReg(_SquaredNorm):
    """Keeps the texture-space coefficients near the mean albedo: ``sum texture^2``."""

    name = "texture-reg"
    inputs = ("texture",)


class PoseReg(_SquaredNorm):
    """Squared neck, jaw and eye rotations (axis-angle, radians); the global pose is free.

    ``pose`` is [B,15] = global (0:3), neck (3:6), jaw (6:9), left and right eye (9:15).

    Options:
        neck, jaw, eyes: weight of each part's ``sum angle^2`` (0 leaves it free).
    """

    name = "pose-reg"
    inputs = ("pose",)

    def __init__(self, neck: float = 1.0, jaw: float = 1.0, eyes: float = 1.0) -> None:
        self.neck = _non_negative("neck", neck)
        self.jaw = _non_negative("jaw", jaw)
        self.eyes = _non_negative("eyes", eyes)

    def __call__(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        pose = self._input(values, "pose")
        if pose.dim() != 2 or pose.shape[1] != 15:
            raise ValueError(f"loss 'pose-reg': pose must be [B,15], got {list(pose.shape)}")
        squared = pose.pow(2)
        return (
            self.neck * squared[:, 3:6].sum(1)
            + self.jaw * squared[:, 6:9].sum(1)
            + self.eyes * squared[:, 9:15].sum(1)
        )


class LightingReg(_BuiltinLoss):
    """Keeps the SH lighting near white ambient light, where albedo and light are ambiguous.

    For coefficients ``L[k, c]`` (k = 0..8 SH band index, c = colour channel):

    * directional term: ``sum_{k>=1, c} L[k, c]^2``, the light's deviation from a uniform
      (DC-only) shading; the DC band, the overall brightness, is left free;
    * colour term: ``sum_{k, c} (L[k, c] - mean_c L[k, c])^2``, the deviation from grey light,
      which would otherwise trade off against the albedo's colour.

    ``lighting`` may be [B,9,3], [B,9,1] (grey: colour term 0) or DECA's flat [B,27].

    Options:
        directional, color: weights of the two terms.
    """

    name = "lighting-reg"
    inputs = ("lighting",)

    def __init__(self, directional: float = 1.0, color: float = 1.0) -> None:
        self.directional = _non_negative("directional", directional)
        self.color = _non_negative("color", color)

    def __call__(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        light = self._input(values, "lighting")
        if light.dim() == 2 and light.shape[1] == 27:
            light = light.reshape(light.shape[0], 9, 3)
        if light.dim() != 3 or light.shape[1] != 9 or light.shape[2] not in (1, 3):
            raise ValueError(
                f"loss 'lighting-reg': lighting must be [B,9,3], [B,9,1] or [B,27], got "
                f"{list(light.shape)}"
            )
        directional = light[:, 1:].pow(2).flatten(1).sum(1)
        color = (light - light.mean(2, keepdim=True)).pow(2).flatten(1).sum(1)
        return self.directional * directional + self.color * color


class ExposurePrior(_BuiltinLoss):
    """Keeps the mean shading on the face near a typical exposure.

    Photometric losses cannot tell a bright face under dim light from a dark face under bright
    light: ``albedo * shading`` is all they see, and frontal light (the SH ``z`` band) shades a
    face almost as uniformly as ambient light does. Without this prior the albedo's brightness
    is settled by whichever prior pulls hardest (the texture space's mean, through the offset
    and coefficient priors) and every face regresses to the initial space's brightness. With
    it, brightness differences between photos go to the albedo, as they should when the photos
    are exposed alike (cameras expose for the face): ``(mean_mask(shading) - target)^2``, the
    shading averaged over its channels and the masked pixels; 0 for an empty mask.

    Options:
        target: the typical mean shading; the fitter passes the shading of its start light
            (``0.282 * lighting.init_ambient``).
    """

    name = "exposure-prior"
    inputs = ("shading", "mask")

    def __init__(self, target: float = 0.85) -> None:
        self.target = _positive("target", target)

    def __call__(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        shading = self._input(values, "shading")
        mask = self._input(values, "mask")
        if shading.dim() != 4 or mask.dim() != 4 or shading.shape[2:] != mask.shape[2:]:
            raise ValueError(
                f"loss 'exposure-prior': shading [B,C,H,W] and mask [B,1,H,W] must share H,W, "
                f"got {list(shading.shape)} and {list(mask.shape)}"
            )
        level = _masked_mean(shading.mean(1, keepdim=True), mask)
        seen = mask.flatten(1).sum(1) > 0
        return torch.where(seen, (level - self.target).pow(2), torch.zeros_like(level))


def _offset_inputs(loss: _BuiltinLoss, values: Mapping[str, torch.Tensor]):
    offset = loss._input(values, "texture_offset")
    uv_mask = loss._input(values, "uv_mask")
    if offset.dim() != 4:
        raise ValueError(
            f"loss {loss.name!r}: texture_offset must be [B,3,Ht,Wt], got {list(offset.shape)}"
        )
    if uv_mask.dim() != 4 or uv_mask.shape[1] != 1 or uv_mask.shape[2:] != offset.shape[2:]:
        raise ValueError(
            f"loss {loss.name!r}: uv_mask must be [1,1,Ht,Wt] or [B,1,Ht,Wt] with Ht,Wt = "
            f"{list(offset.shape[2:])}, got {list(uv_mask.shape)}"
        )
    return offset, uv_mask.to(offset)


class OffsetMagnitude(_BuiltinLoss):
    """Mean squared texture offset inside ``uv_mask``: keeps the per-image detail small.

    Per texel the squared offset is averaged over the channels, then averaged over the texels
    where ``uv_mask`` is 1 (texels outside the mesh's UV islands are never seen and are free).
    """

    name = "offset-magnitude"
    inputs = ("texture_offset", "uv_mask")

    def __call__(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        offset, uv_mask = _offset_inputs(self, values)
        return _masked_mean(offset.pow(2).mean(1, keepdim=True), uv_mask)


class OffsetSmoothness(_BuiltinLoss):
    """Finite differences of the texture offset between neighbouring texels inside ``uv_mask``.

    Horizontal and vertical neighbour pairs count when both texels are in the mask (so the
    offset may jump across UV seams); per pair ``|difference|^p`` is averaged over the
    channels, then over the pairs. ``p = 2`` (default) is the squared finite difference,
    ``p = 1`` the anisotropic total variation (keeps sharp edges).

    Options:
        p: 1 or 2.
    """

    name = "offset-smoothness"
    inputs = ("texture_offset", "uv_mask")

    def __init__(self, p: int = 2) -> None:
        if p not in (1, 2):
            raise ValueError(f"p must be 1 or 2, got {p!r}")
        self.p = p

    def _penalty(self, difference: torch.Tensor) -> torch.Tensor:
        return difference.pow(2) if self.p == 2 else difference.abs()

    def __call__(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        offset, uv_mask = _offset_inputs(self, values)
        batch = offset.shape[0]
        dx = self._penalty(offset[..., :, 1:] - offset[..., :, :-1]).mean(1, keepdim=True)
        dy = self._penalty(offset[..., 1:, :] - offset[..., :-1, :]).mean(1, keepdim=True)
        mx = torch.broadcast_to(uv_mask[..., :, 1:] * uv_mask[..., :, :-1], dx.shape)
        my = torch.broadcast_to(uv_mask[..., 1:, :] * uv_mask[..., :-1, :], dy.shape)
        total = (dx * mx).reshape(batch, -1).sum(1) + (dy * my).reshape(batch, -1).sum(1)
        pairs = mx.reshape(batch, -1).sum(1) + my.reshape(batch, -1).sum(1)
        return total / pairs.clamp_min(_EPS)


LOSSES: dict[str, type[Loss]] = {
    cls.name: cls
    for cls in (
        LandmarkLoss,
        RobustLandmarkLoss,
        PhotometricLoss,
        IdentityReg,
        ExpressionReg,
        PoseReg,
        TextureReg,
        LightingReg,
        ExposurePrior,
        OffsetMagnitude,
        OffsetSmoothness,
    )
}


@hookimpl
def register_losses(register) -> None:
    """Every loss above under its name (``landmark``, ``photometric``, ...)."""
    for name, cls in LOSSES.items():
        register(name, cls)
