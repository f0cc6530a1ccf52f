"""flamekit's built-in plugins: landmark detectors, segmenters, losses, renderer backends.

They are packaged apart from the core library and registered through the ``flamekit``
entry-point group by flamekit's own ``pyproject.toml``, so they load exactly like a
third-party plugin package (see docs/PLUGINS.md).
"""
