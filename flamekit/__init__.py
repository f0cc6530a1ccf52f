"""flamekit: fit the FLAME 3D head model to photos by analysis-by-synthesis.

Importing flamekit never needs the compiled extension; the first call that needs
``flamekit._C`` raises :class:`flamekit.ExtensionNotBuiltError` with the build command.
"""

from flamekit._extension import ExtensionNotBuiltError, extension_available
from flamekit.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["ExtensionNotBuiltError", "extension_available", "hookimpl", "__version__"]
