"""Synthetic photos on disk, in the layout the ``file`` detector and segmenter read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def write_photo_files(
    folder: Path, rendered, landmarks: torch.Tensor, background: torch.Tensor, prefix: str
) -> None:
    """For each render i: ``<prefix>_<ii>.png`` (the render over ``background`` [1,3,1,1]),
    ``..._skin.png`` (its coverage as the skin mask) and ``..._lmk68.npy`` (landmarks [B,68,2]
    in pixels)."""
    image = rendered.image + background * (1 - rendered.mask)
    for i in range(image.shape[0]):
        stem = f"{prefix}_{i:02d}"
        pixels = (image[i].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{stem}.png")
        mask = (rendered.mask[i, 0].numpy() * 255).astype(np.uint8)
        Image.fromarray(mask).save(folder / f"{stem}_skin.png")
        np.save(folder / f"{stem}_lmk68.npy", landmarks[i].numpy().astype(np.float32))
