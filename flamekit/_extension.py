"""Lazy access to the compiled extension ``flamekit._C``.

flamekit must import on machines where the extension was not (or could not be) built, so
the module is loaded on first use and a missing build becomes an error that says how to
build it, instead of an ImportError at import time.
"""

from __future__ import annotations

import importlib
from types import ModuleType

BUILD_HINT = (
    "Build it from the flamekit source folder with the torch you use already installed:\n"
    "    pip install torch==2.13.0   # or your CUDA build of torch\n"
    "    pip install -e . --no-build-isolation\n"
    "(set FLAMEKIT_CUDA=1 to force the CUDA kernels, FLAMEKIT_CUDA=0 to skip them). "
    "Without it, use the pure-PyTorch renderer backend: Renderer(..., backend='torch')."
)


class ExtensionNotBuiltError(RuntimeError):
    """flamekit._C is missing or cannot be loaded."""


_module: ModuleType | None = None
_error: str | None = None


def load_extension() -> ModuleType:
    """Return ``flamekit._C``, importing it once; raise ExtensionNotBuiltError if absent."""
    global _module, _error
    if _module is not None:
        return _module
    if _error is None:
        try:
            import torch  # noqa: F401  (loads libc10/libtorch that _C links against)

            _module = importlib.import_module("flamekit._C")
            return _module
        except ImportError as exc:  # missing file, or built against another torch
            _error = str(exc)
    raise ExtensionNotBuiltError(
        f"flamekit's compiled extension (flamekit._C) is not available: {_error}\n{BUILD_HINT}"
    )


def extension_available() -> bool:
    """Whether ``flamekit._C`` can be loaded."""
    try:
        load_extension()
    except ExtensionNotBuiltError:
        return False
    return True
