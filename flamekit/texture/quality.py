"""The standard morphable-model measures for texture spaces: compactness, generalization,
specificity (Styner et al. 2003; as used for the BFM and FLAME albedo models).

* compactness: how much variance the first k components hold — fewer components for the same
  variance is a more compact model;
* generalization: how well the first k components reconstruct maps the space has not seen
  (mean absolute error of the least-squares fit) — a space that cannot represent new faces is
  useless for fitting;
* specificity: how close random samples come to real maps (mean error to the nearest training
  map) — a space whose samples are not faces lets fitting explain lighting or occlusions with
  implausible albedo.

All errors are mean absolute errors in albedo units (0..1), over the texels of an optional
region mask [1,1,H,W] (e.g. the skin in UV space; soft weights are allowed) and the 3
channels. Everything streams over texels in chunks and runs in float64 on the space's device,
so full-size spaces (512x512, 200 components) fit in memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from flamekit.model.texture_space import TextureSpace
from flamekit.texture.sampling import coefficient_std

__all__ = [
    "compactness",
    "default_k_values",
    "evaluate_space",
    "format_quality",
    "generalization",
    "specificity",
]

_CHUNK_ELEMENTS = 1 << 22  # values of one [rows, chunk] block streamed at a time (32 MB f64)


def default_k_values(num_components: int) -> list[int]:
    """0 (the mean alone), a roughly logarithmic ladder, and all components."""
    ladder = [0, 1, 2, 3, 5, 10, 20, 50, 100, 150, 200, 300]
    return sorted({k for k in ladder if k <= num_components} | {num_components})


def _check_maps(space: TextureSpace, maps: torch.Tensor, name: str = "maps") -> torch.Tensor:
    if maps.dim() != 4 or maps.shape[1:] != space.mean.shape:
        raise ValueError(
            f"{name} must be [N,{','.join(map(str, space.mean.shape))}] like the space's mean, "
            f"got {tuple(maps.shape)} (resize maps to the space's resolution first)"
        )
    if maps.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    return maps.reshape(maps.shape[0], -1)


def _texel_weights(space: TextureSpace, mask: torch.Tensor | None) -> torch.Tensor | None:
    """[3*H*W] float64 weight per flattened value (channel-major), or None for all ones."""
    if mask is None:
        return None
    h, w = space.resolution
    if mask.numel() != h * w:
        raise ValueError(f"mask must be [1,1,{h},{w}], got {tuple(mask.shape)}")
    weights = mask.detach().reshape(-1).to(space.mean.device, torch.float64).clamp(min=0)
    if float(weights.sum()) <= 0:
        raise ValueError("the mask selects no texels")
    return weights.repeat(3)


def _chunks(
    space: TextureSpace, weights: torch.Tensor | None, rows: int
) -> Iterator[tuple[Any, torch.Tensor | None]]:
    """Selectors (slices, or index tensors of the masked values) of at most ~_CHUNK_ELEMENTS
    values per row block, with their weights."""
    total = space.mean.numel()
    step = max(256, _CHUNK_ELEMENTS // max(rows, 1))
    if weights is None:
        for start in range(0, total, step):
            yield slice(start, min(start + step, total)), None
        return
    index = torch.nonzero(weights > 0).squeeze(1)
    for start in range(0, index.numel(), step):
        sel = index[start : start + step]
        yield sel, weights[sel]


def _weight_total(space: TextureSpace, weights: torch.Tensor | None) -> float:
    return float(space.mean.numel()) if weights is None else float(weights.sum())


def _f64(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    return tensor.to(device, torch.float64)


def _normal_equations(
    space: TextureSpace, flat_maps: torch.Tensor, weights: torch.Tensor | None, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gram C W C^T [k,k], C W (x - mean) [k,N] and per-map weighted energy of x - mean [N]."""
    dev = space.mean.device
    comps = space.components.reshape(space.num_components, -1)[:k]
    mean = space.mean.reshape(-1)
    n = flat_maps.shape[0]
    gram = torch.zeros(k, k, dtype=torch.float64, device=dev)
    rhs = torch.zeros(k, n, dtype=torch.float64, device=dev)
    energy = torch.zeros(n, dtype=torch.float64, device=dev)
    for sel, w in _chunks(space, weights, max(k, n)):
        c = _f64(comps[:, sel], dev)
        b = _f64(flat_maps[:, sel], dev) - _f64(mean[sel], dev)
        cw = c if w is None else c * w
        gram += cw @ c.T
        rhs += cw @ b.T
        energy += (b * b).sum(1) if w is None else (b * b * w).sum(1)
    return gram, rhs, energy


def _solve(gram: torch.Tensor, rhs: torch.Tensor, k: int) -> torch.Tensor:
    """Least-squares coefficients [k,N] for the first k components (pinv: components may be
    redundant or zero inside the mask)."""
    if k == 0:
        return rhs[:0]
    return torch.linalg.pinv(gram[:k, :k], hermitian=True) @ rhs[:k]


def compactness(
    space: TextureSpace,
    k_max: int | None = None,
    maps: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """[k_max] cumulative fraction of variance held by the first 1..k_max components.

    Without ``maps``: the model's own variance, ``std_k^2 * ||c_k||^2`` per component (the
    texel-space variance along an orthogonal component; ``std_k^2`` for orthonormal ones),
    over the total of all K components. A space without ``std`` uses ``std_k = 1`` (the
    convention where components are scaled by their standard deviation), so the stored norms
    carry the variance. With ``maps``: the fraction of the maps' variance about the space's
    mean explained by their least-squares projection onto the first k components — valid for
    non-orthogonal components and for data the space was not built from.
    """
    k_total = space.num_components
    k_max = k_total if k_max is None else int(k_max)
    if not 0 <= k_max <= k_total:
        raise ValueError(f"k_max must be in 0..{k_total}, got {k_max}")
    weights = _texel_weights(space, mask)
    dev = space.mean.device
    if maps is None:
        comps = space.components.reshape(k_total, -1)
        norms = torch.zeros(k_total, dtype=torch.float64, device=dev)
        for sel, w in _chunks(space, weights, k_total):
            c = _f64(comps[:, sel], dev)
            norms += (c * c).sum(1) if w is None else (c * c * w).sum(1)
        variance = _f64(coefficient_std(space), dev) ** 2 * norms
        total = float(variance.sum())
        if total <= 0:
            raise ValueError("the space has no variance (all components or std are zero)")
        return (torch.cumsum(variance, 0) / total)[:k_max]
    flat = _check_maps(space, maps)
    gram, rhs, energy = _normal_equations(space, flat, weights, k_max)
    total = float(energy.sum())
    if total <= 0:
        raise ValueError("the maps do not vary about the space's mean")
    out = torch.empty(k_max, dtype=torch.float64, device=dev)
    for k in range(1, k_max + 1):
        coeffs = _solve(gram, rhs, k)
        out[k - 1] = (rhs[:k] * coeffs).sum() / total
    return out


def generalization(
    space: TextureSpace,
    maps: torch.Tensor,
    mask: torch.Tensor | None = None,
    k_values: Sequence[int] | None = None,
) -> dict[int, float]:
    """k -> mean absolute error of the best reconstruction of ``maps`` by the first k components.

    The reconstruction is the (mask-weighted) least-squares projection, solved by the normal
    equations, so components need not be orthonormal. Pass maps the space was not built from:
    on its own training maps the error only measures compression.
    """
    flat = _check_maps(space, maps)
    k_values = default_k_values(space.num_components) if k_values is None else list(k_values)
    for k in k_values:
        if not 0 <= k <= space.num_components:
            raise ValueError(f"k values must be in 0..{space.num_components}, got {k}")
    weights = _texel_weights(space, mask)
    k_top = max(k_values, default=0)
    gram, rhs, _ = _normal_equations(space, flat, weights, k_top)
    solutions = {k: _solve(gram, rhs, k) for k in k_values}
    dev = space.mean.device
    comps = space.components.reshape(space.num_components, -1)
    mean = space.mean.reshape(-1)
    errors = {k: torch.zeros(flat.shape[0], dtype=torch.float64, device=dev) for k in k_values}
    for sel, w in _chunks(space, weights, max(k_top, flat.shape[0])):
        c = _f64(comps[:k_top, sel], dev)
        b = _f64(flat[:, sel], dev) - _f64(mean[sel], dev)
        for k, coeffs in solutions.items():
            residual = (b - coeffs.T @ c[:k]).abs()
            errors[k] += residual.sum(1) if w is None else (residual * w).sum(1)
    total = _weight_total(space, weights)
    return {k: float(err.mean()) / total for k, err in errors.items()}


def specificity(
    space: TextureSpace,
    train_maps: torch.Tensor,
    mask: torch.Tensor | None = None,
    num_samples: int = 100,
    seed: int = 0,
) -> float:
    """Mean over random samples (coefficients ~ N(0, std^2), all components) of the mean
    absolute error to the nearest training map. Samples are not clamped to 0..1, so values the
    space produces outside the range count against it."""
    flat = _check_maps(space, train_maps, "train_maps")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    weights = _texel_weights(space, mask)
    dev = space.mean.device
    k = space.num_components
    generator = torch.Generator().manual_seed(int(seed))
    coeffs = torch.randn(num_samples, k, generator=generator, dtype=torch.float64).to(dev)
    coeffs = coeffs * _f64(coefficient_std(space), dev)
    comps = space.components.reshape(k, -1)
    mean = space.mean.reshape(-1)
    n = flat.shape[0]
    distance = torch.zeros(num_samples, n, dtype=torch.float64, device=dev)
    for sel, w in _chunks(space, weights, max(k, n, num_samples)):
        samples = _f64(mean[sel], dev) + coeffs @ _f64(comps[:, sel], dev)  # [S,d]
        train = _f64(flat[:, sel], dev)  # [N,d]
        block = max(1, _CHUNK_ELEMENTS // max(1, n * samples.shape[1]))
        for s in range(0, num_samples, block):
            diff = (samples[s : s + block, None] - train[None]).abs()
            distance[s : s + block] += diff.sum(-1) if w is None else (diff * w).sum(-1)
    distance /= _weight_total(space, weights)
    return float(distance.min(1).values.mean())


def evaluate_space(
    space: TextureSpace,
    maps: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    held_out_fraction: float = 0.2,
    k_values: Sequence[int] | None = None,
    num_samples: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    """All measures in one JSON-ready dict.

    Without maps only the model's compactness is known. With maps, a seeded random
    ``held_out_fraction`` of them (at least one, at most all but one) measures
    generalization, and the rest are the reference set for specificity and the data
    compactness, so that no map is both reconstructed and a nearest-neighbour target. With
    one map, or ``held_out_fraction`` <= 0, all maps serve both roles.
    """
    k_total = space.num_components
    k_values = default_k_values(k_total) if k_values is None else sorted(set(k_values))
    report: dict[str, Any] = {
        "num_components": k_total,
        "resolution": list(space.resolution),
        "std_stored": space.std is not None,
        "masked": mask is not None,
        "k_values": list(k_values),
        "compactness": {k: 0.0 if k == 0 else None for k in k_values},
    }
    if k_total:
        model = compactness(space, mask=mask)
        report["compactness"] = {k: float(model[k - 1]) if k else 0.0 for k in k_values}
    if maps is None:
        return report
    n = maps.shape[0]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    if n < 2 or held_out_fraction <= 0:
        held, train = order, order
    else:
        n_held = min(n - 1, max(1, round(held_out_fraction * n)))
        held, train = order[:n_held], order[n_held:]
    train_maps, held_maps = maps[train.to(maps.device)], maps[held.to(maps.device)]
    report.update(num_maps=n, num_train=int(train.numel()), num_held_out=int(held.numel()))
    k_data = max(k_values, default=0)
    data = compactness(space, k_data, maps=train_maps, mask=mask) if k_data else None
    report["compactness_data"] = {k: float(data[k - 1]) if k else 0.0 for k in k_values}
    report["generalization"] = generalization(space, held_maps, mask, k_values)
    report["specificity"] = specificity(space, train_maps, mask, num_samples, seed)
    report["specificity_samples"] = int(num_samples)
    return report


def format_quality(report: dict[str, Any]) -> str:
    """A small text table of :func:`evaluate_space`'s report (also after a JSON round trip)."""

    def by_k(name: str) -> dict[int, Any]:
        return {int(k): v for k, v in (report.get(name) or {}).items()}

    h, w = report["resolution"]
    std = "std stored" if report["std_stored"] else "no std stored (std_k = 1 assumed)"
    lines = [f"texture space: {report['num_components']} components, {h}x{w}, {std}"]
    has_maps = "generalization" in report
    if has_maps:
        lines.append(
            f"maps: {report['num_maps']} ({report['num_train']} reference, "
            f"{report['num_held_out']} held out)" + (", masked" if report["masked"] else "")
        )
    model, data, gen = by_k("compactness"), by_k("compactness_data"), by_k("generalization")
    header = f"{'k':>5}  {'compactness':>11}"
    if has_maps:
        header += f"  {'compact.(data)':>14}  {'generalization MAE':>18}"
    lines += [header, "-" * len(header)]
    for k in report["k_values"]:
        value = model.get(k)
        row = f"{k:>5}  {'-' if value is None else f'{value:.4f}':>11}"
        if has_maps:
            row += f"  {data[k]:>14.4f}  {gen[k]:>18.5f}"
        lines.append(row)
    if has_maps:
        lines.append(
            f"specificity (MAE to nearest reference map, {report['specificity_samples']} "
            f"samples): {report['specificity']:.5f}"
        )
    return "\n".join(lines)
