"""The ``flamekit`` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flamekit_cli.build_cmd import build_space_command
from flamekit_cli.detect_cmd import detect_command
from flamekit_cli.fit_cmd import demo_command, fit_command
from flamekit_cli.fit_texture_cmd import fit_texture_command
from flamekit_cli.init_space_cmd import init_space_command
from flamekit_cli.inpaint_cmd import train_inpainter_command
from flamekit_cli.models import app as models_app
from flamekit_cli.plugins_cmd import plugins_command
from flamekit_cli.segment_cmd import segment_command
from flamekit_cli.space_cmd import eval_space_command, sample_space_command

app = typer.Typer(
    name="flamekit",
    help="Fit the FLAME 3D head model to photos and build texture spaces.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(models_app, name="models")
app.command("segment")(segment_command)
app.command("plugins")(plugins_command)
app.command("detect")(detect_command)
app.command("fit")(fit_command)
app.command("sample-space")(sample_space_command)
app.command("eval-space")(eval_space_command)
app.command("demo")(demo_command)
app.command("fit-texture")(fit_texture_command)
app.command("train-inpainter")(train_inpainter_command)
app.command("init-space")(init_space_command)
app.command("build-space")(build_space_command)


@app.command("render-demo")
def render_demo_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG to write.")] = Path(
        "flamekit_demo.png"
    ),
    size: Annotated[
        int, typer.Option(min=16, max=4096, help="Height and width of each view.")
    ] = 512,
    backend: Annotated[str, typer.Option(help="Renderer backend: flamekit or torch.")] = "flamekit",
    device: Annotated[str, typer.Option(help="Torch device, e.g. cpu or cuda.")] = "cpu",
    model: Annotated[
        str | None,
        typer.Option(
            help="A registered FLAME model name or a model file (default: the built-in demo "
            "head, which is not FLAME)."
        ),
    ] = None,
    jaw_open: Annotated[
        float, typer.Option(help="Jaw rotation (radians) of the last view; 0 keeps it shut.")
    ] = 0.25,
) -> None:
    """Render a head from three views to a PNG: the built-in demo head (not FLAME) by default,
    or a FLAME model with --model. The last view opens the jaw."""
    import torch

    from flamekit.demo import render_demo
    from flamekit.model.data import FlameFileError
    from flamekit.render import BackendUnavailableError

    if device.startswith("cuda") and not torch.cuda.is_available():
        typer.echo(
            f"error: --device {device} was asked for but torch sees no CUDA device "
            f"(torch {torch.__version__}); use --device cpu or install a CUDA build of torch",
            err=True,
        )
        raise typer.Exit(2)
    try:
        path = render_demo(
            out, size=size, backend=backend, device=device, model=model, jaw_open=jaw_open
        )
    except FlameFileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except BackendUnavailableError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except (OSError, ValueError) as exc:  # unwritable folder, unknown image suffix
        typer.echo(f"error: cannot write {out}: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"wrote {path}")


@app.command("info")
def info_command() -> None:
    """Show the flamekit version, the compiled extension and the renderer backends."""
    import torch

    import flamekit
    from flamekit._extension import load_extension
    from flamekit.render import list_backends

    typer.echo(f"flamekit {flamekit.__version__}, torch {torch.__version__}")
    if flamekit.extension_available():
        cuda = "with CUDA" if load_extension().built_with_cuda() else "CPU only"
        typer.echo(f"extension flamekit._C: built ({cuda})")
    else:
        typer.echo("extension flamekit._C: not built (pip install -e . --no-build-isolation)")
    typer.echo(f"CUDA device available: {torch.cuda.is_available()}")
    for name, (usable, reason) in list_backends().items():
        typer.echo(
            f"renderer backend {name}: {'usable' if usable else 'unavailable'}"
            + (f" ({reason.splitlines()[0]})" if reason else "")
        )


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
