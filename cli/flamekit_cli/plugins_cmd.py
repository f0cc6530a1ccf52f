"""``flamekit plugins``: every plugin, the distribution it came from, and whether it runs here."""

from __future__ import annotations

import warnings
from typing import Annotated

import typer

_KIND_HELP = "Only this kind: landmark-detector, segmenter, inpainter, loss or renderer."


def plugins_command(
    kind: Annotated[str | None, typer.Option("--kind", "-k", help=_KIND_HELP)] = None,
) -> None:
    """List plugins: kind, name, distribution, version, and whether each is usable here."""
    from flamekit.plugins import KINDS, get_manager

    if kind is not None and kind not in KINDS:
        typer.echo(f"error: unknown plugin kind {kind!r}; kinds: {', '.join(KINDS)}", err=True)
        raise typer.Exit(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the manager keeps them; they are printed below
        manager = get_manager()

    rows = [("KIND", "NAME", "DISTRIBUTION", "VERSION", "STATUS")]
    for info in manager.list(kind):
        usable, reason = info.availability()
        status = "usable" if usable else "unavailable"
        if reason:
            status += f": {reason.strip().splitlines()[0]}"
        rows.append((info.kind, info.name, info.distribution, info.version or "-", status))
    if len(rows) == 1:
        typer.echo(f"no {kind + ' ' if kind else ''}plugins are registered")
    else:
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            typer.echo("  ".join([*cells, row[4]]))
    for entry in manager.disabled:
        typer.echo(
            f"disabled: entry point {entry.entry_point!r} of {entry.distribution} "
            f"{entry.version} ({entry.reason})"
        )
    for problem in manager.problems:
        typer.echo(f"warning: {problem}", err=True)
