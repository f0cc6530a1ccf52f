"""``flamekit space build``: thin option parsing over :func:`flamekit.texture.build.build_space`.

Exit codes as ``flamekit fit``: 0 all images used, 1 some failed (the space is still built
from the others when at least two completed), 2 usage errors, 130 after Ctrl-C.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flamekit_cli.common import DeviceOption, echo_warnings, fail


def build_space_command(
    images: Annotated[list[str], typer.Argument(help="Photos: files, folders or glob patterns.")],
    init: Annotated[
        str, typer.Option("--init", help="The texture space fits start from: a file or name.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The new texture space (.npz).")],
    work: Annotated[
        Path | None,
        typer.Option(help="Per-image intermediate files, reused to resume (default OUT.work)."),
    ] = None,
    components: Annotated[int, typer.Option(min=1, help="Principal components kept.")] = 50,
    inpainter: Annotated[str, typer.Option(help="Fills texels no photo saw.")] = "harmonic",
    texture_size: Annotated[int, typer.Option(min=8, help="Size of the space's maps.")] = 256,
    landmarks: Annotated[
        Path | None, typer.Option(help="Landmark file or folder instead of a detector.")
    ] = None,
    mask: Annotated[
        Path | None, typer.Option(help="Skin mask file or folder instead of a segmenter.")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="FLAME model: a registered name or a file.")
    ] = None,
    device: DeviceOption = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images fitted together.")] = 8,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            "-s",
            help="Dotted fit-config override, repeatable; applied after build-space's own "
            "(stages.full.losses.exposure-prior=1.0).",
        ),
    ] = None,
    executor: Annotated[
        str, typer.Option(help="Where fit and unwrap run: local, or ray (one task per batch).")
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(help="Ray cluster to join (default: a local Ray instance)."),
    ] = None,
    ray_cpus: Annotated[
        int | None, typer.Option(min=1, help="CPUs of a local Ray instance (default: all).")
    ] = None,
    inpainter_steps: Annotated[
        int,
        typer.Option(min=0, help="Training steps when --inpainter gmcnn has no weights yet."),
    ] = 500,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Build a texture space from photos: fit each, unwrap its albedo into UV, fill the
    unseen texels, and take the principal components. Re-running resumes from WORK."""
    import warnings

    from flamekit.fitting.config import ConfigError
    from flamekit.model.data import FlameFileError
    from flamekit.plugin_types import PluginUnavailableError
    from flamekit.plugins import PluginNotFoundError
    from flamekit.texture.build import build_config, build_space

    if not images:
        fail("give at least one photo (file, folder or glob)", 2)
    try:
        config = build_config([*([f"device={device}"] if device else []), *(overrides or [])])
    except (ConfigError, OSError) as error:
        fail(str(error), 2)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            report = build_space(
                images,
                init,
                out,
                work_dir=work,
                num_components=components,
                config=config,
                model=model,
                landmarks=landmarks,
                masks=mask,
                inpainter=inpainter,
                texture_size=texture_size,
                batch_size=batch_size,
                device=device,
                progress=not quiet,
                executor=executor,
                ray_address=ray_address,
                ray_num_cpus=ray_cpus,
                inpainter_steps=inpainter_steps,
            )
        echo_warnings(caught, quiet)
    except (NotImplementedError, ImportError) as error:  # e.g. --executor ray without Ray
        fail(str(error), 2)
    except (FlameFileError, PluginUnavailableError, PluginNotFoundError, ValueError) as error:
        fail(str(error).strip('"'), 2)
    if not quiet or not report.ok:  # the summary includes the quality table
        typer.echo(report.format(), err=not report.ok)
    elif report.quality is not None:
        from flamekit.texture.quality import format_quality

        typer.echo(format_quality(report.quality))
    if report.interrupted:
        raise typer.Exit(130)
    raise typer.Exit(0 if report.ok else 1)
