"""Photometric fitting of FLAME to photos: the configuration (:mod:`flamekit.fitting.config`)
holds every number of the fit, so a run is described by one YAML or TOML file plus overrides.
"""
