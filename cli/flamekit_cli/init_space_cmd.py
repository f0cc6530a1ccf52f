"""``flamekit init-space``: an initial texture space from a coloured mesh or a BFM file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flamekit_cli.common import ModelOption


def init_space_command(
    mesh: Annotated[
        Path,
        typer.Argument(
            help="Coloured mesh: .ply or .obj with vertex colours, or a Basel Face Model .h5."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Texture-space .npz to write.")],
    model: ModelOption = None,
    texture_size: Annotated[
        int, typer.Option("--texture-size", min=8, max=8192, help="Side of the UV maps.")
    ] = 512,
    landmarks: Annotated[
        Path | None,
        typer.Option(
            help="68 landmarks on the mesh (.npy or .txt): vertex indices or (68,3) points; "
            "they initialise the fit of FLAME to a mesh of another topology."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="Torch device for the fit, e.g. cpu or cuda.")] = (
        "cpu"
    ),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress messages.")] = False,
) -> None:
    """Carry a mesh's vertex colours (and a BFM colour basis) onto FLAME's UV layout.

    Meshes in FLAME's topology map vertex to vertex; others are fitted with FLAME first. A
    plain coloured mesh gives a mean-only space (0 components). Exit code 2 for bad input.
    """
    from flamekit.model.data import FlameFileError
    from flamekit.texture.init_space import MeshReadError, init_space

    try:
        result = init_space(
            mesh,
            out,
            model=model,
            texture_size=texture_size,
            landmarks=landmarks,
            device=device,
            progress=not quiet,
        )
    except (MeshReadError, FlameFileError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    except (OSError, ValueError) as error:
        typer.echo(f"error: {mesh}: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"{result.path}: {result.space.num_components} components, "
        f"{texture_size}x{texture_size}, correspondence {result.correspondence}, "
        f"fit residual {result.fit_residual_mm:.2f} mm"
    )
