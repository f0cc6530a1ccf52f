"""Atomic file writes: a file is either the old one or complete, never half written.

Every file flamekit writes for a user (models, texture spaces, meshes, fit outputs,
landmarks, masks, the registry) goes through :func:`atomic_write`, so a crash or Ctrl-C in
a long job never leaves a truncated file that a later run would trust.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = ["atomic_write"]


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path``, then rename it into place.

    The temporary file is created exclusively with the usual umask permissions (outputs are
    meant to be shared), flushed to disk, and removed on any error, KeyboardInterrupt
    included. Creates the parent folder. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
