"""``flamekit fit-texture``: thin option parsing over flamekit.texture.fit_texture."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flamekit_cli.common import (
    DeviceOption,
    LandmarksOption,
    MaskOption,
    ModelOption,
    QuietOption,
    TextureSpaceOption,
    echo_warnings,
    fail,
)
from flamekit_cli.fit_cmd import _config


def fit_texture_command(
    image: Annotated[Path, typer.Argument(help="One photo.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Outputs go to OUT/<stem>/.")] = Path(
        "flamekit_textures"
    ),
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="A YAML or TOML fit configuration.")
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set", "-s", help="Dotted fit override, repeatable: -s stages.full.iterations=400."
        ),
    ] = None,
    model: ModelOption = None,
    texture_space: TextureSpaceOption = None,
    landmarks: LandmarksOption = None,
    mask: MaskOption = None,
    texture_size: Annotated[
        int, typer.Option(min=8, help="Size of the optimized texture.png.")
    ] = 512,
    iterations: Annotated[
        int, typer.Option(min=0, help="Adam steps of the texture optimization.")
    ] = 300,
    smoothness: Annotated[
        float, typer.Option(min=0.0, help="Weight of the texture's total variation.")
    ] = 1.0,
    render_size: Annotated[
        int,
        typer.Option(
            min=8, help="Render size of the texture stage (at least the fit's; larger: detail)."
        ),
    ] = 512,
    device: DeviceOption = None,
    quiet: QuietOption = False,
) -> None:
    """Fit FLAME to a photo, then optimize its full UV texture against the photo.

    Writes texture.png, mesh.obj + mesh.mtl, render.png, compare.jpg and metrics.json
    (errors before and after) into OUT/<stem>/. Exit code 0 on success, 2 for usage errors
    and bad input (the message names the file), 130 after Ctrl-C.
    """
    import warnings

    from flamekit.model.data import FlameFileError
    from flamekit.plugin_types import PluginUnavailableError
    from flamekit.plugins import PluginNotFoundError
    from flamekit.texture.fit_texture import fit_texture

    settings = _config(config, overrides or [], {"device": device})
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            result = fit_texture(
                image,
                out,
                settings,
                model=model,
                texture_space=texture_space,
                landmarks=landmarks,
                mask=mask,
                texture_size=texture_size,
                iterations=iterations,
                smoothness=smoothness,
                render_size=render_size,
                progress=not quiet,
            )
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except (FlameFileError, PluginUnavailableError, PluginNotFoundError, ValueError) as error:
        fail(str(error).strip('"'), 2)
    echo_warnings(caught, quiet, UserWarning)
    if not quiet:
        typer.echo(
            f"texture of {image} in {result.folder}: photometric error "
            f"{result.error_before:.4f} -> {result.error_after:.4f} in {result.seconds:.1f} s"
        )
