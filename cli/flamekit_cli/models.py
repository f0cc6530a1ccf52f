"""``flamekit models``: register, list, inspect and remove FLAME files (thin over the registry)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="models",
    help=(
        "Register the FLAME files you downloaded (models, landmark embeddings, texture "
        "spaces, template meshes). State lives in $FLAMEKIT_HOME (default ~/.flamekit)."
    ),
    no_args_is_help=True,
    add_completion=False,
)

HomeOption = Annotated[
    Path | None,
    typer.Option("--home", help="flamekit home folder (default: $FLAMEKIT_HOME or ~/.flamekit)."),
]


def _registry(home: Path | None):
    from flamekit.model.data import FlameFileError
    from flamekit.model.registry import Registry

    try:
        return Registry(home)
    except FlameFileError as error:
        _fail(error)


def _fail(error: Exception, code: int = 1) -> None:
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(code)


def _size(num_bytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if num_bytes < 1024 or unit == "GB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return f"{num_bytes} B"  # pragma: no cover


@app.command("add")
def add_command(
    path: Annotated[Path, typer.Argument(help="A file, a folder, or the zip from the website.")],
    name: Annotated[
        str | None, typer.Option(help="Name for a single file (default: from the release).")
    ] = None,
    link: Annotated[
        bool, typer.Option("--link", help="Register the file where it is instead of copying.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an entry of the same name.")] = (
        False
    ),
    default: Annotated[
        bool, typer.Option("--default", help="Make it the default of its kind.")
    ] = False,
    home: HomeOption = None,
) -> None:
    """Identify and register FLAME files (copied into the flamekit home with a checksum)."""
    from flamekit.model.data import FlameFileError

    registry = _registry(home)
    try:
        added, skipped = registry.add(
            path, name=name, copy=not link, force=force, make_default=default
        )
    except FlameFileError as error:
        _fail(error)
    for entry in added:
        marker = " (default)" if registry.is_default(entry) else ""
        typer.echo(f"added {entry.name}: {entry.kind}, {entry.release}{marker}")
    for file, reason in skipped:
        typer.echo(f"skipped {file}: {reason}", err=True)


@app.command("list")
def list_command(home: HomeOption = None) -> None:
    """List registered files; '*' marks the default of each kind."""
    registry = _registry(home)
    entries = registry.entries()
    if not entries:
        typer.echo(
            f"no files registered in {registry.home}. Download FLAME from "
            "https://flame.is.tue.mpg.de (after accepting its license) and run "
            "`flamekit models add PATH`. Until then flamekit uses its demo head (not FLAME)."
        )
        return
    width = max(len(e.name) for e in entries)
    for entry in entries:
        star = "*" if registry.is_default(entry) else " "
        typer.echo(
            f"{star} {entry.name:<{width}}  {entry.kind:<13}  {entry.release:<28}  "
            f"{_size(entry.size):>9}  {entry.path}"
        )


@app.command("show")
def show_command(
    name: Annotated[str, typer.Argument(help="A registered name (see `flamekit models list`).")],
    home: HomeOption = None,
) -> None:
    """Release, counts, files and checksum of a registered entry (the checksum is re-verified)."""
    from flamekit.model.data import FlameFileError

    registry = _registry(home)
    try:
        entry = registry.get(name)
    except FlameFileError as error:
        _fail(error)
    status = registry.verify(entry)
    typer.echo(f"name:     {entry.name}{' (default)' if registry.is_default(entry) else ''}")
    typer.echo(f"kind:     {entry.kind}")
    typer.echo(f"release:  {entry.release}")
    for key, value in entry.details.items():
        typer.echo(f"{key + ':':<10}{value}")
    for file in entry.files:
        typer.echo(f"file:     {file}")
    typer.echo(f"size:     {_size(entry.size)}")
    typer.echo(f"sha256:   {entry.sha256} ({status})")
    typer.echo(f"added:    {entry.added} from {entry.origin}")
    if status != "ok":
        typer.echo(
            f"warning: the file is {status}; register it again with `flamekit models add PATH "
            "--force`",
            err=True,
        )
        raise typer.Exit(1)


@app.command("remove")
def remove_command(
    name: Annotated[str, typer.Argument(help="A registered name.")],
    keep_files: Annotated[
        bool, typer.Option("--keep-files", help="Keep the copied files on disk.")
    ] = False,
    home: HomeOption = None,
) -> None:
    """Unregister an entry and delete the copy flamekit made (never the original)."""
    from flamekit.model.data import FlameFileError

    registry = _registry(home)
    try:
        entry = registry.remove(name, keep_files=keep_files)
    except FlameFileError as error:
        _fail(error)
    typer.echo(f"removed {entry.name}")


@app.command("default")
def default_command(
    name: Annotated[str, typer.Argument(help="A registered name.")],
    home: HomeOption = None,
) -> None:
    """Make an entry the default of its kind (used when no --model / variable is given)."""
    from flamekit.model.data import FlameFileError

    registry = _registry(home)
    try:
        entry = registry.set_default(name)
    except FlameFileError as error:
        _fail(error)
    typer.echo(f"default {entry.kind}: {entry.name}")


@app.command("convert")
def convert_command(
    source: Annotated[Path, typer.Argument(help="A FLAME .pkl (any release) or .npz.")],
    destination: Annotated[Path, typer.Argument(help="The flamekit .npz to write.")],
    uv_template: Annotated[
        Path | None,
        typer.Option(help="Add the UV layout from this OBJ or texture-space .npz."),
    ] = None,
) -> None:
    """Convert a FLAME pickle to flamekit's plain-array .npz (no pickle, loads faster)."""
    from flamekit.model.data import FlameFileError
    from flamekit.model.loader import convert_flame_to_npz

    try:
        path = convert_flame_to_npz(
            source, destination, None if uv_template is None else str(uv_template)
        )
    except FlameFileError as error:
        _fail(error)
    typer.echo(f"wrote {path}")
