"""Looking at and measuring texture (albedo) spaces.

A texture space is only useful if its components mean something and its samples look like
skin; these tools make that visible (:func:`sample_space_picture`: the mean head at +-k
standard deviations of each component, plus random samples) and measurable with the standard
morphable-model measures (:func:`compactness`, :func:`generalization`, :func:`specificity`,
combined by :func:`evaluate_space`), so spaces built with different data or settings can be
compared by numbers rather than by eye alone.
"""

from __future__ import annotations

from flamekit.texture.quality import (
    compactness,
    evaluate_space,
    format_quality,
    generalization,
    specificity,
)
from flamekit.texture.sampling import sample_space_picture, write_sample_space

__all__ = [
    "compactness",
    "evaluate_space",
    "format_quality",
    "generalization",
    "sample_space_picture",
    "specificity",
    "write_sample_space",
]
