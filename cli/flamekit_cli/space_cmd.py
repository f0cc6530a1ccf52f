"""``flamekit sample-space`` and ``flamekit eval-space``: look at and measure a texture space."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from flamekit_cli.common import fail

_MAP_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _load_space(spec: str):
    from flamekit.model.registry import resolve_file
    from flamekit.model.texture_space import load_texture_space

    files = resolve_file(spec, "texture-space")
    if files is None:  # pragma: no cover - spec is a required argument
        fail("no texture space given")
    return load_texture_space(files[0])


def _resize(maps, resolution: tuple[int, int]):
    import torch.nn.functional as F

    if tuple(maps.shape[-2:]) == resolution:
        return maps
    shrink = maps.shape[-2] > resolution[0] or maps.shape[-1] > resolution[1]
    return F.interpolate(maps, size=resolution, mode="bilinear", antialias=shrink)


def load_maps(path: Path, resolution: tuple[int, int]):
    """UV albedo maps [N,3,H,W] 0..1 at the space's resolution, from an .npz (``maps``
    [N,3,H,W] or ``textures`` (N,H,W,3); integer arrays are read as 0..255) or a folder of
    images (sorted by name; resized, since exported maps rarely match the space's size)."""
    import numpy as np
    import torch
    from PIL import Image

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in _MAP_SUFFIXES)
        if not files:
            raise ValueError(f"{path} holds no UV map images ({', '.join(_MAP_SUFFIXES)})")
        maps = []
        for file in files:
            with Image.open(file) as image:
                array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
            maps.append(_resize(torch.from_numpy(array).permute(2, 0, 1)[None], resolution))
        return torch.cat(maps)
    with np.load(path, allow_pickle=False) as archive:
        if "maps" in archive.files:
            array = archive["maps"]
            channels_last = False
        elif "textures" in archive.files:
            array = archive["textures"]
            channels_last = True
        else:
            raise ValueError(
                f"{path} has keys {sorted(archive.files)}; expected 'maps' [N,3,H,W] or "
                "'textures' (N,H,W,3)"
            )
    if array.ndim != 4 or array.shape[-1 if channels_last else 1] != 3:
        expected = "(N,H,W,3)" if channels_last else "[N,3,H,W]"
        raise ValueError(f"{path}: maps have shape {array.shape}, expected {expected}")
    scale = 255.0 if array.dtype.kind in "iu" else 1.0
    maps = torch.from_numpy(np.asarray(array, dtype=np.float32) / np.float32(scale))
    if channels_last:
        maps = maps.permute(0, 3, 1, 2)
    return _resize(maps.contiguous(), resolution)


def _load_mask(path: Path, resolution: tuple[int, int]):
    import numpy as np
    import torch
    from PIL import Image

    with Image.open(path) as image:
        array = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    return _resize(torch.from_numpy(array)[None, None], resolution)


def sample_space_command(
    space: Annotated[str, typer.Argument(help="A texture-space file or registered name.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG to write.")],
    components: Annotated[
        int, typer.Option("--components", min=0, help="Components shown (one column each).")
    ] = 5,
    random: Annotated[int, typer.Option("--random", min=0, help="Random samples shown.")] = 5,
    size: Annotated[int, typer.Option(min=16, max=2048, help="Side of each cell.")] = 192,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="FLAME model name or file (default: registered, else the demo head)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random samples.")] = 0,
    device: Annotated[str, typer.Option(help="Torch device, e.g. cpu or cuda.")] = "cpu",
) -> None:
    """Render the mean head at -2..+2 sd of each component, plus random samples, to a PNG."""
    import warnings

    from flamekit.model.data import FlameFileError
    from flamekit.model.registry import DemoHeadWarning
    from flamekit.texture.sampling import write_sample_space

    try:
        loaded = _load_space(space)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DemoHeadWarning)
            path = write_sample_space(
                loaded,
                out,
                head_spec=model,
                num_components=components,
                num_random=random,
                size=size,
                seed=seed,
                device=device,
            )
    except (FlameFileError, ValueError) as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot write {out}: {error}", 1)
    for warning in caught:
        if issubclass(warning.category, DemoHeadWarning):
            typer.echo(f"warning: {warning.message}", err=True)
    typer.echo(f"wrote {path}")


def eval_space_command(
    space: Annotated[str, typer.Argument(help="A texture-space file or registered name.")],
    images: Annotated[
        Path | None,
        typer.Option(
            "--images",
            help="UV albedo maps: an .npz ('maps' [N,3,H,W] or 'textures' (N,H,W,3), 0..1) or "
            "a folder of UV map images. Without it only the model compactness is shown.",
        ),
    ] = None,
    mask: Annotated[
        Path | None, typer.Option("--mask", help="Grayscale UV image: region to measure.")
    ] = None,
    held_out: Annotated[
        float, typer.Option("--held-out", min=0.0, max=1.0, help="Fraction of maps held out.")
    ] = 0.2,
    samples: Annotated[int, typer.Option(min=1, help="Random samples for specificity.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the split and the samples.")] = 0,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the report as JSON here.")
    ] = None,
) -> None:
    """Compactness, generalization and specificity of a texture space, as a table."""
    from flamekit.io.atomic import atomic_write
    from flamekit.model.data import FlameFileError
    from flamekit.texture.quality import evaluate_space, format_quality

    try:
        loaded = _load_space(space)
        maps = None if images is None else load_maps(images, loaded.resolution)
        region = None if mask is None else _load_mask(mask, loaded.resolution)
        report = evaluate_space(
            loaded, maps, region, held_out_fraction=held_out, num_samples=samples, seed=seed
        )
    except (FlameFileError, ValueError, OSError) as error:
        fail(str(error))
    report["space"] = str(loaded.source or space)
    typer.echo(format_quality(report))
    if json_out is not None:
        text = json.dumps(report, indent=2).encode()
        try:
            atomic_write(json_out, lambda handle: handle.write(text))
        except OSError as error:
            fail(f"cannot write {json_out}: {error}", 1)
        typer.echo(f"wrote {json_out}")
