"""What several commands share: the error exit, the echo of recorded warnings, and the
option declarations that mean the same in every command that has them."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import typer


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` to stderr and exit with ``code`` (2: usage or bad input)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def echo_warnings(caught: Iterable, quiet: bool, category: type[Warning] = Warning) -> None:
    """Echo recorded warnings of ``category`` to stderr once each (the demo head, a missing
    UV layout, several faces, ...), unless ``quiet``."""
    if quiet:
        return
    shown = set()
    for warning in caught:
        text = str(warning.message)
        if issubclass(warning.category, category) and text not in shown:
            shown.add(text)
            typer.echo(f"warning: {text}", err=True)


ModelOption = Annotated[
    str | None,
    typer.Option(help="FLAME model: a registered name or a file (default: the registry)."),
]
TextureSpaceOption = Annotated[
    str | None, typer.Option(help="Texture space: a registered name or a file.")
]
LandmarksOption = Annotated[
    Path | None,
    typer.Option(
        help="Landmark file or folder (<stem>_lmk68.npy, .pts, ...) instead of a detector."
    ),
]
MaskOption = Annotated[
    Path | None,
    typer.Option(help="Skin mask file or folder (<stem>_skin.png, ...) instead of a segmenter."),
]
DeviceOption = Annotated[
    str | None, typer.Option(help="cpu or cuda (default: cuda when available).")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
