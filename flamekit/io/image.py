"""Image writing: torch images to PNG/JPEG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["to_uint8", "save_image"]


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
