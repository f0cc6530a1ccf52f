"""A picture of what a texture space can do: each component swept over +-2 sd, plus samples.

Numbers such as compactness say how much variance a space holds, not whether that variance
looks like skin; a grid of rendered heads shows at a glance which components carry lighting,
beards or seams, and whether random samples look plausible.

Picture layout (every cell is ``size`` x ``size``):

* one column per component (the first ``num_components``), one row per entry of ``sigmas``:
  the mean head with that component's coefficient at ``sigma * std_k``;
* then a block of ``num_random`` random samples (coefficients ~ N(0, std^2) over all
  components), ``columns`` per row, where ``columns`` is the number of component columns
  (``num_random`` when there are none);
* each cell is labelled (``PC3 -2sd``, ``sample 2``).

Spaces without a stored ``std`` use ``std_k = 1``: their components are then taken to be
scaled so that one unit of coefficient is one standard deviation (the BFM-derived convention).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from flamekit.io.atomic import atomic_write
from flamekit.model.texture_space import TextureSpace

__all__ = ["coefficient_std", "grid_shape", "sample_space_picture", "write_sample_space"]

_BACKGROUND = (0.93, 0.94, 0.96)
_RENDER_CHUNK = 8  # views per renderer call: bounds memory at large sizes


def coefficient_std(space: TextureSpace) -> torch.Tensor:
    """[K] standard deviation of each coefficient; ones when the space stores none."""
    if space.std is not None:
        return space.std
    return torch.ones(space.num_components, dtype=space.mean.dtype, device=space.mean.device)


def grid_shape(num_components: int, num_random: int, num_sigmas: int) -> tuple[int, int]:
    """(rows, columns) of cells in the picture, so callers and tests can predict its size."""
    columns = num_components if num_components > 0 else max(num_random, 1)
    rows = (num_sigmas if num_components > 0 else 0) + math.ceil(num_random / columns)
    return max(rows, 1), columns


def _uv_layout(space: TextureSpace, head) -> tuple[torch.Tensor, torch.Tensor]:
    """The UV layout the space's maps are painted for, checked against the head's mesh."""
    faces = head.faces
    if space.uvs is not None:
        if tuple(space.uv_faces.shape) != tuple(faces.shape):
            raise ValueError(
                f"the texture space's UV layout has {space.uv_faces.shape[0]} faces but the head "
                f"has {faces.shape[0]}: the space was built for a different mesh (use the head "
                "it was built for, e.g. --model)"
            )
        if head.uvs is not None and tuple(head.uvs.shape) != tuple(space.uvs.shape):
            raise ValueError(
                f"the texture space's UV layout has {space.uvs.shape[0]} texture coordinates but "
                f"the head's has {head.uvs.shape[0]}: the space was built for a different UV "
                "layout"
            )
        return space.uvs, space.uv_faces
    if head.uvs is None:
        raise ValueError(
            "neither the head nor the texture space has a UV layout, so the albedo maps cannot "
            "be put on the mesh; register a UV template (`flamekit models add head_template.obj`)"
            " or use a space that stores 'vt'/'ft'"
        )
    return head.uvs, head.uv_faces


def _label_cells(picture: np.ndarray, labels: list[tuple[int, int, str]], size: int) -> None:
    """Write each label in the top-left corner of its cell, on a light box for contrast."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.fromarray(picture)
    draw = ImageDraw.Draw(image)
    font_size = max(8, size // 14)
    try:
        font = ImageFont.load_default(font_size)
    except TypeError:  # Pillow < 10.1: a fixed-size bitmap font
        font = ImageFont.load_default()
    for row, col, text in labels:
        x, y = col * size + 3, row * size + 2
        box = draw.textbbox((x, y), text, font=font)
        draw.rectangle((box[0] - 2, box[1] - 1, box[2] + 2, box[3] + 1), fill=(255, 255, 255))
        draw.text((x, y), text, fill=(20, 20, 20), font=font)
    picture[:] = np.asarray(image)


def sample_space_picture(
    space: TextureSpace,
    head,
    num_components: int = 5,
    num_random: int = 5,
    size: int = 192,
    sigmas: Sequence[float] = (-2, -1, 0, 1, 2),
    seed: int = 0,
    device: str | torch.device = "cpu",
    yaw: float = 20.0,
    backend: str | None = None,
) -> np.ndarray:
    """Render the grid described in the module docstring; returns (H,W,3) uint8.

    ``head`` is a :class:`~flamekit.model.FlameModel` (e.g. from ``load_head``), rendered with
    neutral shape and expression, turned by ``yaw`` degrees so that shading shows relief.
    The space's UV layout is used when it has one (it must match the head's shapes, else
    ValueError); otherwise the head's. The picture is ``rows*size`` x ``columns*size`` with
    (rows, columns) from :func:`grid_shape`. ``backend`` defaults to ``flamekit`` when the
    compiled extension is built, else ``torch``.
    """
    from flamekit import extension_available
    from flamekit.demo import DEFAULT_SH
    from flamekit.render import OrthographicCamera, Renderer

    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    if num_components < 0 or num_random < 0:
        raise ValueError("num_components and num_random must be >= 0")
    dev = torch.device(device)
    uvs, uv_faces = _uv_layout(space, head)
    n_comp = min(num_components, space.num_components)
    sigmas = [float(s) for s in sigmas] if n_comp else []
    rows, columns = grid_shape(n_comp, num_random, len(sigmas))

    # Coefficients of every cell, in row-major cell order.
    std = coefficient_std(space).detach().to("cpu", torch.float64)
    k = space.num_components
    coeffs, cells = [], []
    for r, sigma in enumerate(sigmas):
        for c in range(n_comp):
            row = torch.zeros(k, dtype=torch.float64)
            row[c] = sigma * std[c]
            coeffs.append(row)
            cells.append((r, c, f"PC{c + 1} {sigma:+g}sd"))
    generator = torch.Generator().manual_seed(int(seed))
    for i in range(num_random):
        coeffs.append(torch.randn(k, generator=generator, dtype=torch.float64) * std)
        cells.append((len(sigmas) + i // columns, i % columns, f"sample {i + 1}"))

    picture = np.empty((rows * size, columns * size, 3), dtype=np.uint8)
    picture[:] = np.round(np.array(_BACKGROUND) * 255).astype(np.uint8)
    if not cells:
        return picture

    with torch.no_grad():
        zero = torch.zeros(1, 3)
        verts = head(global_pose=torch.tensor([[0.0, math.radians(yaw), 0.0]]), jaw_pose=zero)
        verts = verts.vertices
        lo, hi = verts.amin(1), verts.amax(1)
        verts = (verts - (lo + hi)[:, None] / 2).to(dev)
        extent = float((hi - lo).max())
        renderer = Renderer(
            head.faces,
            uvs.to(head.faces.device),
            uv_faces.to(head.faces.device),
            (size, size),
            backend=backend or ("flamekit" if extension_available() else "torch"),
        ).to(dev)
        # Local copies: TextureSpace.to() would move the caller's space in place.
        mean = space.mean.to(dev).reshape(1, -1)
        basis = space.components.to(dev).reshape(k, -1)
        all_coeffs = torch.stack(coeffs).to(dev, space.mean.dtype)
        background = torch.tensor(_BACKGROUND, device=dev).view(1, 3, 1, 1)
        for start in range(0, len(cells), _RENDER_CHUNK):
            chunk = all_coeffs[start : start + _RENDER_CHUNK]
            b = chunk.shape[0]
            albedo = torch.addmm(mean, chunk, basis) if k else mean.expand(b, -1)
            albedo = albedo.view(b, *space.mean.shape).clamp(0, 1).float()
            camera = OrthographicCamera(
                scale=torch.full((b,), 1.8 / extent, device=dev),
                translation=torch.zeros(b, 2, device=dev),
            )
            result = renderer(
                verts.expand(b, -1, -1),
                albedo,
                DEFAULT_SH[None].expand(b, -1, -1).to(dev),
                camera,
                background=background.expand(b, 3, size, size),
            )
            images = result.image.clamp(0, 1).mul(255).round().to(torch.uint8)
            images = images.permute(0, 2, 3, 1).cpu().numpy()
            for (r, c, _), image in zip(cells[start : start + b], images, strict=True):
                picture[r * size : (r + 1) * size, c * size : (c + 1) * size] = image
    _label_cells(picture, cells, size)
    return picture


def write_sample_space(
    space_path_or_name: str | os.PathLike | TextureSpace,
    out_png: str | os.PathLike,
    head_spec: str | os.PathLike | None = None,
    num_components: int = 5,
    num_random: int = 5,
    size: int = 192,
    sigmas: Sequence[float] = (-2, -1, 0, 1, 2),
    seed: int = 0,
    device: str | torch.device = "cpu",
    backend: str | None = None,
) -> Path:
    """Load a space (registry name, path or a loaded space) and a head, write the PNG atomically.

    ``head_spec`` is a registered FLAME model name or path; None uses the registry default, or
    the built-in demo head (with a DemoHeadWarning) when no FLAME model is registered. All
    components are loaded because random samples use every one. Returns the written path.
    """
    from PIL import Image

    from flamekit.model.data import FlameFileError
    from flamekit.model.registry import load_head, resolve_file
    from flamekit.model.texture_space import load_texture_space

    if isinstance(space_path_or_name, TextureSpace):
        space = space_path_or_name
    else:
        files = resolve_file(space_path_or_name, "texture-space")
        if files is None:
            raise FlameFileError("no texture space given and none is registered")
        space = load_texture_space(files[0])
    head = load_head(head_spec)
    picture = sample_space_picture(
        space,
        head,
        num_components=num_components,
        num_random=num_random,
        size=size,
        sigmas=sigmas,
        seed=seed,
        device=device,
        backend=backend,
    )
    image = Image.fromarray(picture)
    return atomic_write(out_png, lambda handle: image.save(handle, format="PNG"))
