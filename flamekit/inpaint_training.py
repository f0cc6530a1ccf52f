"""Train the ``gmcnn`` inpainter on partial UV maps (self-supervised, no ground-truth fills).

UV albedo maps unwrapped from photos are only partly known (what the camera saw). There is no
complete map to learn from, so training hides more of what *is* known: random free-form brush
strokes (thick random polylines, the masks of DeepFill v2 and GMCNN) are drawn inside each
map's valid region, the network sees the map with both the never-seen texels and the strokes
removed, and learns to restore the stroke texels.

Loss: L1 on the stroke texels, plus a small L1 (weight :data:`VALID_WEIGHT`) on all valid
texels of the raw prediction so that it also stays faithful where it copies. The original
GMCNN weights its reconstruction loss by confidence (distance to the known border) and adds
an implicit-diversity MRF (ID-MRF) loss on VGG-19 features and WGAN-GP adversarial losses
from a global and a local discriminator. The ID-MRF and adversarial losses are left out on
purpose: ID-MRF needs pretrained VGG weights, which flamekit cannot download offline, and it
and the two discriminators multiply the cost far beyond a CPU budget; plain L1 keeps the
loss simple. Without them fills are smoother (less hallucinated detail), which suits albedo
maps that are averaged into a texture space anyway.

Checkpoints (atomic, see :mod:`flamekit.io.atomic`) hold the model, the optimizer, the step,
the settings, the loss history and the state of the random generator that draws batches and
strokes, so that a resumed run continues the same sequence. ``steps`` is the total target:
re-running a finished job does nothing.
"""

from __future__ import annotations

import io
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from flamekit.io.atomic import atomic_write

VALID_WEIGHT = 0.1

__all__ = ["VALID_WEIGHT", "TrainResult", "random_stroke_mask", "train_inpainter"]


@dataclass
class TrainResult:
    """What :func:`train_inpainter` did.

    Attributes:
        losses: the loss of every step since the checkpoint was started (resumed runs
            include the earlier steps, read back from the checkpoint).
        checkpoint: where the checkpoint is.
        steps_done: the total number of training steps the checkpoint has.
        steps_run: how many of them this call ran (0 when the target was already met).
    """

    losses: list[float]
    checkpoint: Path
    steps_done: int
    steps_run: int = 0
    settings: dict[str, Any] = field(default_factory=dict)


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _randint(generator: torch.Generator, low: int, high: int) -> int:
    """An integer in [low, high]."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def random_stroke_mask(
    valid: np.ndarray | torch.Tensor,
    generator: torch.Generator,
    max_strokes: int = 4,
    max_vertices: int = 6,
) -> np.ndarray:
    """(H,W) bool free-form brush strokes inside ``valid`` ((H,W) bool).

    Each stroke starts on a random valid texel and turns through a few random vertices with
    a random brush width (DeepFill v2's free-form masks); widths and lengths scale with the
    map so that holes look alike at any resolution. The result is cut to ``valid``.
    """
    valid = valid.detach().cpu().numpy() if isinstance(valid, torch.Tensor) else valid
    valid = np.asarray(valid, dtype=bool).reshape(valid.shape[-2:])
    height, width = valid.shape
    mask = np.zeros((height, width), np.uint8)
    points = np.argwhere(valid)
    if len(points) == 0:
        return mask.astype(bool)
    size = min(height, width)
    min_width, max_width = max(1.0, size / 24), max(2.0, size / 8)
    min_length, max_length = max(1.0, size / 16), max(2.0, size / 4)
    for _ in range(_randint(generator, 1, max_strokes)):
        y, x = (int(v) for v in points[_randint(generator, 0, len(points) - 1)])
        angle = _uniform(generator, 0.0, 2.0 * math.pi)
        brush = max(1, round(_uniform(generator, min_width, max_width)))
        cv2.circle(mask, (x, y), brush // 2, 1, -1)
        for _ in range(_randint(generator, 1, max_vertices)):
            angle += _uniform(generator, -math.pi / 3, math.pi / 3)
            length = _uniform(generator, min_length, max_length)
            nx = int(np.clip(x + length * math.cos(angle), 0, width - 1))
            ny = int(np.clip(y + length * math.sin(angle), 0, height - 1))
            cv2.line(mask, (x, y), (nx, ny), 1, brush)
            cv2.circle(mask, (nx, ny), brush // 2, 1, -1)
            x, y = nx, ny
    return mask.astype(bool) & valid


def _checked_inputs(maps: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    maps = torch.as_tensor(maps)
    valid = torch.as_tensor(valid)
    if maps.ndim != 4 or maps.shape[1] != 3:
        raise ValueError(f"maps must be [N,3,H,W], got {tuple(maps.shape)}")
    if valid.ndim == 3:
        valid = valid[:, None]
    if valid.shape != (maps.shape[0], 1, *maps.shape[-2:]):
        raise ValueError(f"valid {tuple(valid.shape)} does not match maps {tuple(maps.shape)}")
    height, width = maps.shape[-2:]
    if height % 4 or width % 4:
        raise ValueError(f"map size {height}x{width}: height and width must be divisible by 4")
    if maps.shape[0] == 0:
        raise ValueError("no maps to train on")
    valid = valid.bool() if valid.dtype == torch.bool else valid > 0.5
    if not bool(valid.any()):
        raise ValueError("no valid texels in any map: nothing to learn from")
    return maps.detach().float().clamp(0.0, 1.0).cpu(), valid.cpu()


def _save(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, lambda handle: handle.write(buffer.getvalue()))


def train_inpainter(
    maps: torch.Tensor,
    valid: torch.Tensor,
    out: str | Path,
    steps: int,
    batch_size: int = 8,
    lr: float = 2e-4,
    base_channels: int = 16,
    device: str | torch.device = "cpu",
    resume: bool = True,
    seed: int = 0,
    progress: bool = True,
    save_every: int = 100,
) -> TrainResult:
    """Train a GMCNN to fill holes in ``maps`` and write its checkpoint to ``out``.

    Args:
        maps: [N,3,H,W] partial UV maps in 0..1 (H, W divisible by 4).
        valid: [N,1,H,W] bool or 0/1, where each map is known.
        out: the checkpoint file (``GmcnnInpainter(weights=out)`` reads it).
        steps: the total number of steps the checkpoint should reach.
        batch_size, lr: Adam's batch size and learning rate.
        base_channels: network width (see :class:`GMCNN`).
        device: where to train.
        resume: continue from the checkpoint at ``out`` if there is one (its architecture
            must match); False starts over and replaces it.
        seed: seeds the initial weights and the batch/stroke generator of a new run.
        progress: show a progress bar on stderr.
        save_every: also checkpoint every this many steps (0: only at the end).
    Raises:
        ValueError: bad inputs, or a checkpoint at ``out`` with another architecture.
        KeyboardInterrupt: after saving a checkpoint of the steps done so far.
    """
    from flamekit_plugins.inpainters.gmcnn import (
        CHECKPOINT_FORMAT,
        CHECKPOINT_VERSION,
        GMCNN,
        gmcnn_from_checkpoint,
        load_checkpoint,
    )

    out = Path(out).expanduser()
    maps, valid = _checked_inputs(maps, valid)
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # seed the initial weights, leave global RNG alone
        torch.manual_seed(seed)
        net = GMCNN(base_channels=base_channels)
    step, losses = 0, []
    checkpoint = None
    if resume and out.is_file():
        checkpoint = load_checkpoint(out)
        if checkpoint["settings"].get("base_channels") != net.settings["base_channels"] or any(
            list(checkpoint["settings"][key]) != net.settings[key]
            for key in ("kernel_sizes", "dilations")
        ):
            raise ValueError(
                f"{out}: the checkpoint's network {checkpoint['settings']} differs from the "
                f"requested {net.settings}; pass the same base_channels, another --out, or "
                "resume=False to start over"
            )
        net = gmcnn_from_checkpoint(checkpoint, out)
        step, losses = int(checkpoint["step"]), [float(v) for v in checkpoint.get("losses", [])]
        if "rng" in checkpoint:
            generator.set_state(checkpoint["rng"])
    net = net.to(device).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.5, 0.9))
    if checkpoint is not None and "optimizer" in checkpoint:
        optimizer.load_state_dict(checkpoint["optimizer"])
        for group in optimizer.param_groups:
            group["lr"] = lr
    settings = {
        **net.settings,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "valid_weight": VALID_WEIGHT,
        "map_size": list(maps.shape[-2:]),
    }
    steps_run = 0

    def save() -> None:
        _save(
            out,
            {
                "format": CHECKPOINT_FORMAT,
                "version": CHECKPOINT_VERSION,
                "settings": settings,
                "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
                "optimizer": optimizer.state_dict(),
                "step": step,
                "losses": list(losses),
                "rng": generator.get_state(),
            },
        )

    if step >= steps:
        if checkpoint is None:
            save()  # steps=0 on a new run: still leave a usable (untrained) checkpoint
        return TrainResult(list(losses), out, step, 0, settings)

    bar = _Bar(progress, steps, step)
    try:
        with bar:
            while step < steps:
                index = torch.randint(0, maps.shape[0], (batch_size,), generator=generator)
                target = maps[index].to(device)
                region = valid[index]
                strokes = torch.from_numpy(
                    np.stack([random_stroke_mask(v[0], generator) for v in region])
                )[:, None].to(device)
                region = region.to(device).float()
                holes = strokes.float()
                pred = net(target, region * (1.0 - holes), blend=False)
                error = (pred - target).abs()
                hole_loss = (error * holes).sum() / (3.0 * holes.sum()).clamp_min(1.0)
                valid_loss = (error * region).sum() / (3.0 * region.sum()).clamp_min(1.0)
                loss = hole_loss + VALID_WEIGHT * valid_loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                steps_run += 1
                losses.append(float(loss.detach()))
                bar.advance(losses[-1])
                if save_every > 0 and step % save_every == 0 and step < steps:
                    save()
    except KeyboardInterrupt:
        save()
        raise
    save()
    return TrainResult(list(losses), out, step, steps_run, settings)


class _Bar:
    """A rich progress bar with the running loss, or nothing."""

    def __init__(self, enabled: bool, total: int, done: int) -> None:
        self.enabled = enabled and sys.stderr is not None
        self.total, self.done = total, done
        self._progress = None
        self._task = None

    def __enter__(self) -> _Bar:
        if self.enabled:
            from flamekit.batch import progress_bar

            self._progress = progress_bar()
            self._progress.__enter__()
            self._task = self._progress.add_task(
                "train inpainter", total=self.total, completed=self.done
            )
        return self

    def advance(self, loss: float) -> None:
        if self._progress is not None:
            self._progress.update(
                self._task, advance=1, description=f"train inpainter (loss {loss:.4f})"
            )

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
