"""``example-landmark-l1``: a landmark loss that shows the loss contract."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from flamekit.plugin_types import Loss

__all__ = ["LandmarkL1Loss"]


class LandmarkL1Loss(Loss):
    """Mean over points of ``|dx| + |dy|`` in pixels: linear, so less outlier-driven than L2.

    Reads the standard ``landmarks2d`` and ``target_landmarks`` ([B,68,2]) and returns [B].
    """

    name = "example-landmark-l1"
    inputs = ("landmarks2d", "target_landmarks")

    def __call__(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        difference = values["landmarks2d"] - values["target_landmarks"]
        return difference.abs().sum(-1).mean(-1)
