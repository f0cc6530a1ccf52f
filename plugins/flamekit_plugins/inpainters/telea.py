"""``telea``: OpenCV's fast-marching inpainting (Telea 2004), the quick option.

Why it exists: it is fast and needs no mesh, which suits previews and photos. It is NOT
seam-aware: it works on the map as a flat image, so a hole that crosses a UV cut is filled
from each side independently and can leave a visible seam on the head; use ``harmonic`` with
the mesh's UV layout for texture spaces. OpenCV inpaints 8-bit images, so the filled texels
are quantized to 1/255 (known texels are returned untouched, in the input's precision).
"""

from __future__ import annotations

import numpy as np
import torch

from flamekit.plugin_types import Inpainter
from flamekit_plugins.inpainters.harmonic import check_inputs, no_known_error

__all__ = ["TeleaInpainter"]


class TeleaInpainter(Inpainter):
    """``cv2.inpaint(..., cv2.INPAINT_TELEA)`` per image and the known texels put back."""

    name = "telea"

    def __init__(self, radius: float = 3.0) -> None:
        """Args:
        radius: OpenCV's inpaint radius in texels (the neighbourhood each fill looks at).
        """
        if not radius > 0:
            raise ValueError(f"radius must be positive, got {radius}")
        self.radius = float(radius)

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            import cv2  # noqa: F401
        except Exception as exc:
            return False, f"OpenCV is not importable ({exc}); pip install opencv-python"
        return True, ""

    def inpaint(self, image: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        import cv2

        known = check_inputs(image, known)
        if image.shape[1] not in (1, 3):
            raise ValueError(f"telea inpaints 1- or 3-channel images, got {image.shape[1]}")
        if bool(known.all()):
            return image.clone()
        values = image.detach().to("cpu", torch.float32).clamp(0, 1)
        # Unknown texels may hold anything (NaN included); OpenCV must not see it.
        values = torch.where(known.cpu(), values, torch.zeros(())).numpy()
        holes = (~known).cpu().numpy()[:, 0].astype(np.uint8) * 255
        filled = np.empty_like(values)
        for b in range(values.shape[0]):
            if holes[b].all():
                raise no_known_error(b)
            src = np.rint(values[b].transpose(1, 2, 0) * 255).astype(np.uint8)
            out = cv2.inpaint(src, holes[b], self.radius, cv2.INPAINT_TELEA)
            out = out.reshape(src.shape).astype(np.float32) / 255.0
            filled[b] = out.transpose(2, 0, 1)
        result = torch.from_numpy(filled).to(device=image.device, dtype=image.dtype)
        return torch.where(known, image, result)
