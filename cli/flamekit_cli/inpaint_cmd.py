"""``flamekit train-inpainter``: train the GMCNN inpainter on unwrapped UV maps (thin CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def train_inpainter_command(
    maps: Annotated[
        Path,
        typer.Argument(help=".npz with 'maps' [N,3,H,W] in 0..1 and 'valid' [N,1,H,W] (1 = seen)."),
    ],
    out: Annotated[
        Path | None,
        typer.Option(help="Checkpoint (default: $FLAMEKIT_HOME/weights/gmcnn_inpainter.pt)."),
    ] = None,
    steps: Annotated[int, typer.Option(min=0, help="Total training steps (resumes).")] = 2000,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 2e-4,
    base_channels: Annotated[int, typer.Option(min=4, help="Network width.")] = 16,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    fresh: Annotated[bool, typer.Option("--fresh", help="Start over instead of resuming.")] = (
        False
    ),
) -> None:
    """Train the `gmcnn` inpainter by masking random strokes inside each map's seen region.

    Checkpoints are written atomically every 100 steps and on Ctrl-C; a re-run resumes.
    """
    import numpy as np
    import torch

    from flamekit.inpaint_training import train_inpainter
    from flamekit_plugins.inpainters.gmcnn import default_weights_path

    try:
        with np.load(maps, allow_pickle=False) as npz:
            data = torch.from_numpy(np.asarray(npz["maps"], dtype=np.float32))
            valid = torch.from_numpy(np.asarray(npz["valid"], dtype=np.float32))
    except (OSError, KeyError, ValueError) as error:
        typer.echo(f"error: {maps}: cannot read 'maps' and 'valid' ({error})", err=True)
        raise typer.Exit(2) from error
    target = out or default_weights_path()
    try:
        result = train_inpainter(
            data,
            valid,
            target,
            steps,
            batch_size=batch_size,
            lr=lr,
            base_channels=base_channels,
            device=device,
            resume=not fresh,
        )
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    last = f", last loss {result.losses[-1]:.4f}" if result.losses else ""
    typer.echo(
        f"trained to step {result.steps_done} ({result.steps_run} this run{last}): "
        f"{result.checkpoint}"
    )
