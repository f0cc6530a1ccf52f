"""Photometric fitting of FLAME to photos.

* :func:`fit` (= :func:`flamekit.fitting.pipeline.fit_images`): photos in, fitted heads and
  their output files out; what ``flamekit fit`` runs.
* :class:`Fitter`: the optimization on already cropped tensors.
* :mod:`flamekit.fitting.config`: every number of the fit (one YAML or TOML file plus
  dotted overrides).
"""

from flamekit.fitting.config import FitConfig, default_config, load_config
from flamekit.fitting.fitter import FitResult, Fitter
from flamekit.fitting.pipeline import FitSummary, fit_images

fit = fit_images

__all__ = [
    "FitConfig",
    "FitResult",
    "FitSummary",
    "Fitter",
    "default_config",
    "fit",
    "fit_images",
    "load_config",
]
