"""flamekit's built-in plugins.

They are packaged separately from the core library so that they load exactly like a
third-party plugin package would. The plugin system itself (hook specifications, the
``flamekit`` entry-point group, detectors, segmenters, inpainters, losses) is not built yet;
the renderer backends currently register through :func:`flamekit.render.register_backend`.
"""
