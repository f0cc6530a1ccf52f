"""``flamekit detect``: 68 landmarks for photos (the logic is :mod:`flamekit.detect`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def detect_command(
    images: Annotated[
        list[str], typer.Argument(help="Image files, folders or glob patterns ('faces/*.jpg').")
    ],
    detector: Annotated[
        str | None,
        typer.Option(
            "--detector", "-d", help="Landmark detector: dlib (default), fan, file, or a plugin's."
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for <stem>_lmk68.npy and overlay PNGs.")
    ] = Path("landmarks"),
    fan_weights: Annotated[
        Path | None,
        typer.Option("--fan-weights", help="2D-FAN weights file for --detector fan."),
    ] = None,
    landmarks: Annotated[
        Path | None,
        typer.Option(
            "--landmarks",
            help="Landmark file (.npy/.pts/.txt/.json) or folder of them; implies --detector file.",
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="Torch device for --detector fan.")] = "cpu",
    overlay: Annotated[
        bool, typer.Option("--overlay/--no-overlay", help="Also write <stem>_lmk68.png.")
    ] = True,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Detect 68 face landmarks per image; writes <stem>_lmk68.npy and an overlay PNG.

    Bad images are skipped and listed at the end; the exit code is 1 when any failed.
    """
    from flamekit.detect import detect_images, landmark_detector
    from flamekit.plugin_types import PluginUnavailableError

    name = detector or ("file" if landmarks is not None else "dlib")
    options: dict[str, object] = {}
    if fan_weights is not None:
        if name != "fan":
            _usage_error(f"--fan-weights applies to --detector fan, not {name}")
        options["weights"] = fan_weights
    if name == "fan":
        options["device"] = device
    if landmarks is not None:
        if name != "file":
            _usage_error(f"--landmarks applies to --detector file, not {name}")
        if landmarks.is_file() and len(images) > 1:
            _usage_error(
                "--landmarks names one file but several images were given; "
                "pass a folder of <stem>.pts/.npy/... files instead"
            )
        options["path"] = landmarks
    try:
        built = landmark_detector(name, **options)
    except PluginUnavailableError as exc:
        typer.echo(f"error: landmark detector {name!r} cannot run: {exc}", err=True)
        raise typer.Exit(2) from exc
    except (KeyError, ValueError, TypeError) as exc:  # unknown name or option
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc

    try:
        summary = detect_images(images, built, out, overlay=overlay, progress=progress)
    except OSError as exc:  # unwritable --out folder, full disk: every image would fail
        typer.echo(f"error: cannot write landmarks to {out}: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(summary.format())
    if summary.interrupted:
        raise typer.Exit(130)
    if not summary.ok:
        raise typer.Exit(1)


def _usage_error(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)
