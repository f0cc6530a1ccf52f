"""``gmcnn``: a learned inpainter in the style of GMCNN (Wang et al., NeurIPS 2018).

"Image Inpainting via Generative Multi-column Convolutional Neural Networks" fills holes with
three parallel encoder-decoder columns whose kernels (7, 5, 3) and dilated middle layers give
them different receptive fields: the wide column carries colour from far away, the narrow one
keeps fine structure. Their features are concatenated and fused by a few convolutions to RGB.
:class:`GMCNN` follows that layout with ELU activations, as the original, but its width is a
parameter (``base_channels``, 16 by default, narrower than the original) so that it trains
on a CPU on UV albedo maps. It is fully convolutional: any height and width divisible by 4 (two
stride-2 stages); :class:`GmcnnInpainter` resizes other sizes to a multiple of 8 and back.

The network input is the image scaled to -1..1 with unknown pixels set to 0 (the mean), plus
the known mask: 4 channels. The output is blended so that known pixels are kept.

There are no released weights for UV maps: ``flamekit train-inpainter`` (Python:
:func:`flamekit.inpaint_training.train_inpainter`) trains one from a set of partial maps and
writes the checkpoint that ``weights=PATH`` (default
``$FLAMEKIT_HOME/weights/gmcnn_inpainter.pt``) reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from flamekit.plugin_types import Inpainter, PluginUnavailableError

WEIGHTS_NAME = "gmcnn_inpainter.pt"
CHECKPOINT_FORMAT = "flamekit-gmcnn-inpainter"
CHECKPOINT_VERSION = 1
#: Architecture settings a checkpoint must store; they rebuild the exact network.
SETTINGS_KEYS = ("base_channels", "kernel_sizes", "dilations")
#: Keys every checkpoint written by the trainer has.
CHECKPOINT_KEYS = ("format", "version", "settings", "model", "step")
DEFAULT_KERNEL_SIZES = (7, 5, 3)
DEFAULT_DILATIONS = (2, 4, 8, 16)

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "GMCNN",
    "SETTINGS_KEYS",
    "WEIGHTS_NAME",
    "GmcnnInpainter",
    "default_weights_path",
    "gmcnn_from_checkpoint",
    "load_checkpoint",
    "load_gmcnn",
]


# -- the network ---------------------------------------------------------------------------------


def _conv(cin: int, cout: int, k: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """'Same' convolution + ELU (the original's activation)."""
    padding = dilation * (k - 1) // 2
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, padding, dilation), nn.ELU())


class Column(nn.Module):
    """One column: two stride-2 stages, a dilated middle at 1/4, and its own way back up.

    Every column sees the same input; the kernel size gives it its receptive field. As in the
    original, the decoders differ: the widest column is only upsampled (it carries coarse
    colour), the next refines once at 1/2 resolution, the narrowest at 1/2 and 1/1 (fine
    structure). ``refine`` is that number of convolution stages (0, 1 or 2).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        kernel_size: int,
        dilations: tuple[int, ...],
        refine: int,
    ) -> None:
        super().__init__()
        c, k = channels, kernel_size
        self.encoder = nn.Sequential(
            _conv(in_channels, c, k),
            _conv(c, 2 * c, k, stride=2),
            _conv(2 * c, 2 * c, k),
            _conv(2 * c, 4 * c, k, stride=2),
            _conv(4 * c, 4 * c, k),
        )
        self.middle = nn.Sequential(*[_conv(4 * c, 4 * c, k, dilation=d) for d in dilations])
        self.refine = nn.ModuleList(_conv(4 * c >> i, 2 * c >> i, k) for i in range(refine))
        self.out_channels = 4 * c >> refine

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.middle(self.encoder(x))
        for stage in self.refine:
            x = stage(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        scale = 2 ** (2 - len(self.refine))
        return F.interpolate(x, scale_factor=float(scale), mode="nearest") if scale > 1 else x


class GMCNN(nn.Module):
    """The multi-column generator: three columns, concatenated, fused to RGB in 0..1.

    Args:
        base_channels: width of each column at full resolution (x2 and x4 deeper down).
        kernel_sizes: one column per kernel size (GMCNN: 7, 5, 3).
        dilations: dilation rates of each column's middle layers (at 1/4 resolution).
    """

    in_channels = 4  # RGB in -1..1 with holes at 0, plus the known mask

    def __init__(
        self,
        base_channels: int = 16,
        kernel_sizes: tuple[int, ...] = DEFAULT_KERNEL_SIZES,
        dilations: tuple[int, ...] = DEFAULT_DILATIONS,
    ) -> None:
        super().__init__()
        if base_channels < 1 or not kernel_sizes or any(k < 1 or k % 2 == 0 for k in kernel_sizes):
            raise ValueError(
                f"GMCNN needs base_channels >= 1 and odd kernel sizes, got {base_channels}, "
                f"{kernel_sizes}"
            )
        self.base_channels = int(base_channels)
        self.kernel_sizes = tuple(int(k) for k in kernel_sizes)
        self.dilations = tuple(int(d) for d in dilations)
        # Widest kernel first: it gets no refinement stage, the narrowest gets two.
        order = sorted(range(len(self.kernel_sizes)), key=lambda i: -self.kernel_sizes[i])
        refine = {column: min(rank, 2) for rank, column in enumerate(order)}
        self.columns = nn.ModuleList(
            Column(self.in_channels, self.base_channels, k, self.dilations, refine[i])
            for i, k in enumerate(self.kernel_sizes)
        )
        fused = sum(column.out_channels for column in self.columns)
        self.fuse = nn.Sequential(
            _conv(fused, self.base_channels, 3),
            nn.Conv2d(self.base_channels, 3, 3, padding=1),
        )

    @property
    def settings(self) -> dict[str, Any]:
        """What a checkpoint stores to rebuild this exact architecture."""
        return {
            "base_channels": self.base_channels,
            "kernel_sizes": list(self.kernel_sizes),
            "dilations": list(self.dilations),
        }

    def forward(self, image: torch.Tensor, known: torch.Tensor, blend: bool = True) -> torch.Tensor:
        """Fill ``image`` ([B,3,H,W], 0..1) where ``known`` ([B,1,H,W]) is 0.

        ``blend=False`` returns the raw prediction everywhere (the trainer's loss also looks
        at known pixels); otherwise known pixels are copied from ``image``.
        """
        height, width = image.shape[-2:]
        if height % 4 or width % 4:
            raise ValueError(f"GMCNN needs H and W divisible by 4, got {height}x{width}")
        known = known.to(image.dtype)
        x = torch.cat([(image * 2.0 - 1.0) * known, known], dim=1)
        features = torch.cat([column(x) for column in self.columns], dim=1)
        out = (torch.tanh(self.fuse(features)) + 1.0) * 0.5
        return image * known + out * (1.0 - known) if blend else out


# -- checkpoints ---------------------------------------------------------------------------------


def default_weights_path() -> Path:
    """``$FLAMEKIT_HOME/weights/gmcnn_inpainter.pt`` (where ``--out`` is usually pointed)."""
    from flamekit.model.registry import flamekit_home

    return flamekit_home() / "weights" / WEIGHTS_NAME


def _train_hint(where: Path) -> str:
    return (
        f"no trained GMCNN weights at {where}: run `flamekit train-inpainter MAPS --out ...` "
        "(or build-space trains one) and pass weights=PATH"
    )


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict at ``path``, checked; PluginUnavailableError naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise PluginUnavailableError(_train_hint(path))
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and unpickler-policy errors alike
        raise PluginUnavailableError(
            f"{path}: cannot read a GMCNN checkpoint ({type(exc).__name__}: {exc}); "
            "expected a file written by `flamekit train-inpainter`"
        ) from exc
    if not isinstance(loaded, dict):
        raise PluginUnavailableError(
            f"{path}: not a GMCNN checkpoint (found {type(loaded).__name__}, expected a dict "
            "written by `flamekit train-inpainter`)"
        )
    missing = [key for key in CHECKPOINT_KEYS if key not in loaded]
    if missing:
        raise PluginUnavailableError(
            f"{path}: not a GMCNN checkpoint: missing keys {', '.join(missing)} "
            "(expected a file written by `flamekit train-inpainter`)"
        )
    if loaded["format"] != CHECKPOINT_FORMAT:
        raise PluginUnavailableError(
            f"{path}: checkpoint format is {loaded['format']!r}, expected {CHECKPOINT_FORMAT!r}"
        )
    if loaded["version"] != CHECKPOINT_VERSION:
        raise PluginUnavailableError(
            f"{path}: GMCNN checkpoint version {loaded['version']!r}; this flamekit reads "
            f"version {CHECKPOINT_VERSION}"
        )
    settings = loaded["settings"]
    missing = [
        key for key in SETTINGS_KEYS if not isinstance(settings, dict) or key not in settings
    ]
    if missing:
        raise PluginUnavailableError(f"{path}: GMCNN checkpoint settings lack {', '.join(missing)}")
    return loaded


def _more(keys: list[str]) -> str:
    return f" and {len(keys) - 5} more ({len(keys)} in all)" if len(keys) > 5 else ""


def gmcnn_from_checkpoint(checkpoint: dict[str, Any], source: str | Path) -> GMCNN:
    """The network a checked checkpoint describes, with its weights (clear errors on misfit)."""
    settings = checkpoint["settings"]
    try:
        net = GMCNN(
            base_channels=int(settings["base_channels"]),
            kernel_sizes=tuple(settings["kernel_sizes"]),
            dilations=tuple(settings["dilations"]),
        )
    except (TypeError, ValueError) as exc:
        raise PluginUnavailableError(f"{source}: bad GMCNN settings {settings!r}: {exc}") from exc
    state = checkpoint["model"]
    if not isinstance(state, dict):
        raise PluginUnavailableError(f"{source}: 'model' is not a state dict")
    expected = set(net.state_dict())
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {', '.join(missing[:5])}" + _more(missing))
        if unexpected:
            parts.append(f"unexpected keys {', '.join(unexpected[:5])}" + _more(unexpected))
        raise PluginUnavailableError(
            f"{source}: weights do not match the GMCNN settings {settings}: {'; '.join(parts)}"
        )
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:  # shape mismatches
        raise PluginUnavailableError(
            f"{source}: weights do not fit the GMCNN settings {settings}: {exc}"
        ) from exc
    return net


def load_gmcnn(path: str | Path, device: str | torch.device = "cpu") -> GMCNN:
    """The trained network at ``path`` in eval mode on ``device``."""
    return gmcnn_from_checkpoint(load_checkpoint(path), path).to(device).eval()


# -- the inpainter -------------------------------------------------------------------------------


class GmcnnInpainter(Inpainter):
    """Fills holes with a GMCNN trained by ``flamekit train-inpainter`` (see the module doc).

    Options: ``weights`` (checkpoint path; default ``$FLAMEKIT_HOME/weights/gmcnn_inpainter.pt``),
    ``device`` (torch device).
    """

    name = "gmcnn"

    def __init__(self, weights: str | Path | None = None, device: str = "cpu") -> None:
        self.weights = Path(weights).expanduser() if weights is not None else None
        if self.weights is not None and not self.weights.is_file():
            raise PluginUnavailableError(_train_hint(self.weights))
        self.device = torch.device(device)
        self._net: GMCNN | None = None

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        path = default_weights_path()
        if path.is_file():
            return True, ""
        return False, _train_hint(path)

    @property
    def weights_path(self) -> Path:
        return self.weights if self.weights is not None else default_weights_path()

    def load(self) -> GMCNN:
        """The network, loaded on first use (PluginUnavailableError for bad weights)."""
        if self._net is None:
            self._net = load_gmcnn(self.weights_path, self.device)
        return self._net

    def inpaint(self, image: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be [B,3,H,W], got {tuple(image.shape)}")
        if known.ndim == 3:
            known = known[:, None]
        if known.shape[0] != image.shape[0] or known.shape[-2:] != image.shape[-2:]:
            raise ValueError(
                f"known {tuple(known.shape)} does not match image {tuple(image.shape)}"
            )
        mask = known.bool() if known.dtype == torch.bool else known > 0.5
        if bool(mask.all()):
            return image.clone()
        net = self.load()
        height, width = image.shape[-2:]
        x = image.detach().to(self.device, torch.float32)
        k = mask.to(self.device, torch.float32)
        size = (-(-height // 8) * 8, -(-width // 8) * 8)
        resized = size != (height, width)
        if resized:
            # Resize the hole-free colours only, so that unknown junk never leaks in; a texel
            # counts as known after resizing when (almost) all of its footprint was known.
            weight = F.interpolate(k, size, mode="bilinear", align_corners=False)
            colour = F.interpolate(x * k, size, mode="bilinear", align_corners=False)
            x = colour / weight.clamp_min(1e-6)
            k = (weight > 0.999).float()
        with torch.no_grad():
            filled = net(x.clamp(0.0, 1.0), k)
        if resized:
            filled = F.interpolate(filled, (height, width), mode="bilinear", align_corners=False)
        filled = filled.to(image.device, image.dtype)
        return torch.where(mask.to(image.device), image, filled)
