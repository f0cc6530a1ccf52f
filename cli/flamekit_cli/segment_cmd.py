"""``flamekit segment``: skin masks for photos (the logic is :mod:`flamekit.segment`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def segment_command(
    images: Annotated[
        list[str], typer.Argument(help="Image files, folders or glob patterns ('faces/*.jpg').")
    ],
    segmenter: Annotated[
        str,
        typer.Option(
            "--segmenter", "-s", help="Skin segmenter: skin (default), file, face-parsing, ..."
        ),
    ] = "skin",
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for <stem>_mask.png and overlay PNGs.")
    ] = Path("masks"),
    landmarks_dir: Annotated[
        Path | None,
        typer.Option(
            "--landmarks-dir",
            help="Folder of <stem>_lmk68.npy files (searched before the image's own folder).",
        ),
    ] = None,
    detector: Annotated[
        str,
        typer.Option(
            "--detector", "-d", help="Landmark detector for images without a landmark file."
        ),
    ] = "dlib",
    parsing_weights: Annotated[
        Path | None,
        typer.Option(
            "--parsing-weights", help="BiSeNet weights (79999_iter.pth) for face-parsing."
        ),
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Write a skin mask per image: <stem>_mask.png (255 = skin) and an overlay PNG.

    Landmarks (for the skin segmenter) come from <stem>_lmk68.npy files, else from --detector.
    Bad images are skipped and listed at the end; the exit code is 1 when any failed.
    """
    from flamekit.plugin_types import PluginUnavailableError
    from flamekit.plugins import landmark_detector
    from flamekit.plugins import segmenter as build_segmenter
    from flamekit.segment import segment_images

    options: dict[str, object] = {}
    if parsing_weights is not None:
        if segmenter != "face-parsing":
            _usage_error(f"--parsing-weights applies to --segmenter face-parsing, not {segmenter}")
        options["weights"] = parsing_weights
    try:
        built = build_segmenter(segmenter, **options)
    except PluginUnavailableError as exc:
        typer.echo(f"error: segmenter {segmenter!r} cannot run: {exc}", err=True)
        raise typer.Exit(2) from exc
    except (KeyError, ValueError, TypeError) as exc:  # unknown name or option
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc

    try:
        summary = segment_images(
            images,
            built,
            out,
            detector=lambda: landmark_detector(detector),  # built only if a file is missing
            landmarks_dir=landmarks_dir,
            progress=progress,
        )
    except PluginUnavailableError as exc:  # e.g. weights that do not load: all would fail
        typer.echo(f"error: segmenter {segmenter!r} cannot run: {exc}", err=True)
        raise typer.Exit(2) from exc
    except OSError as exc:  # unwritable --out folder, full disk: every image would fail
        typer.echo(f"error: cannot write masks to {out}: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(summary.format())
    if summary.interrupted:
        raise typer.Exit(130)
    if not summary.ok:
        raise typer.Exit(1)


def _usage_error(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)
