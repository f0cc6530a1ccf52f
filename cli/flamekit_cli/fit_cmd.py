"""``flamekit fit`` and ``flamekit demo``: thin option parsing over flamekit.fitting.pipeline."""

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


def _config(config_file: Path | None, overrides: list[str], shortcuts: dict):
    from flamekit.fitting.config import ConfigError, load_config

    extra = [f"{k}={v}" for k, v in shortcuts.items() if v is not None]
    try:
        return load_config(config_file, [*extra, *(overrides or [])])
    except (ConfigError, OSError) as error:
        fail(str(error), 2)


def _run(images: list[str], config, out: Path, quiet: bool, **kwargs) -> None:
    import warnings

    from flamekit.fitting.pipeline import fit_images
    from flamekit.model.data import FlameFileError
    from flamekit.plugin_types import PluginUnavailableError
    from flamekit.plugins import PluginNotFoundError

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            summary = fit_images(images, config, out, progress=not quiet, **kwargs)
        echo_warnings(caught, quiet, UserWarning)
    except (FlameFileError, PluginUnavailableError, PluginNotFoundError, ValueError) as error:
        fail(str(error).strip('"'), 2)
    if not quiet or not summary.ok:
        typer.echo(summary.format(), err=not summary.ok)
    if summary.interrupted:
        raise typer.Exit(130)
    raise typer.Exit(0 if summary.ok else 1)


def fit_command(
    images: Annotated[
        list[str] | None, typer.Argument(help="Photos: files, folders or glob patterns.")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Outputs go to OUT/<stem>/.")] = Path(
        "flamekit_fits"
    ),
    config_file: Annotated[
        Path | None, typer.Option("--config", "-c", help="A YAML or TOML fit configuration.")
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            "-s",
            help="Dotted override, repeatable: -s stages.full.iterations=400 -s camera.type="
            "perspective. See --print-config for every key.",
        ),
    ] = None,
    print_config: Annotated[
        bool, typer.Option("--print-config", help="Print the configuration and exit.")
    ] = False,
    config_format: Annotated[
        str, typer.Option("--format", help="--print-config format: yaml or toml.")
    ] = "yaml",
    model: ModelOption = None,
    texture_space: TextureSpaceOption = None,
    landmarks: LandmarksOption = None,
    mask: MaskOption = None,
    device: DeviceOption = None,
    detector: Annotated[str | None, typer.Option(help="Landmark detector plugin.")] = None,
    segmenter: Annotated[str | None, typer.Option(help="Skin segmenter plugin.")] = None,
    camera: Annotated[
        str | None, typer.Option(help="orthographic (default) or perspective.")
    ] = None,
    texture_size: Annotated[
        int | None, typer.Option(help="texture.png size (default 512).")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images fitted together.")] = 8,
    quiet: QuietOption = False,
) -> None:
    """Fit FLAME to photos: shape, expression, pose, camera, albedo and lighting.

    Exit code 0 when every image succeeded, 1 when some failed (the others are written and
    a summary says which and why), 2 for usage errors, 130 after Ctrl-C.
    """
    shortcuts = {
        "device": device,
        "detector": detector,
        "segmenter": segmenter,
        "camera.type": camera,
        "texture.output_size": texture_size,
    }
    config = _config(config_file, overrides or [], shortcuts)
    if print_config:
        from flamekit.fitting.config import format_config

        if config_format not in ("yaml", "toml"):
            fail(f"--format must be yaml or toml, not {config_format!r}", 2)
        typer.echo(format_config(config, config_format))
        return
    if not images:
        fail("give at least one photo (file, folder or glob), or --print-config", 2)
    _run(
        images,
        config,
        out,
        quiet,
        model=model,
        texture_space=texture_space,
        landmarks=landmarks,
        masks=mask,
        batch_size=batch_size,
    )


def demo_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path(
        "flamekit_demo"
    ),
    device: DeviceOption = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", "-s", help="Dotted config override, repeatable.")
    ] = None,
    quiet: QuietOption = False,
) -> None:
    """Fit the astronaut portrait that ships with scikit-image (public domain) and show
    where the outputs are: the registered FLAME model, or the built-in demo head."""
    import numpy as np
    from PIL import Image

    try:
        from skimage import data
    except ImportError:  # pragma: no cover - scikit-image comes with face-alignment
        fail("the demo photo comes from scikit-image: pip install scikit-image", 2)
    out.mkdir(parents=True, exist_ok=True)
    photo = out / "astronaut.png"
    Image.fromarray(np.asarray(data.astronaut())).save(photo)
    config = _config(None, overrides or [], {"device": device})
    typer.echo(f"fitting {photo} (outputs in {out / 'astronaut'})")
    _run([str(photo)], config, out, quiet)
