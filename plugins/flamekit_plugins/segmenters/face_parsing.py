"""``face-parsing``: skin from a BiSeNet face-parsing network (CelebAMask-HQ's 19 classes).

The network is the one of the face-parsing.PyTorch project (zllrunning), written here in
torch with the same module and parameter names, so that its released checkpoint
``79999_iter.pth`` loads as it is:

* context path: a ResNet-18 (``cp.resnet``) whose 1/16 and 1/32 features go through
  attention refinement modules (``cp.arm16``, ``cp.arm32``: 3x3 conv, then channel attention
  from global pooling) plus a global-context branch (``cp.conv_avg``), upsampled to 1/8
  (``cp.conv_head32``, ``cp.conv_head16``);
* spatial path: as in that project, the ResNet's own 1/8 features (``layer2``) stand in for
  the BiSeNet paper's separate three-conv spatial path (the checkpoint has no ``sp.*``);
* feature fusion (``ffm``): concatenation, 1x1 conv, channel attention, residual;
* heads ``conv_out`` (used) and ``conv_out16``/``conv_out32`` (training-time auxiliaries,
  kept so that the checkpoint loads strictly, not run at inference).

Preprocessing follows the project's test script: resize to 512x512 (bilinear), scale to
0..1, normalise with the ImageNet mean and std; the arg-max label map is resized back to the
photo with nearest-neighbour. Skin is the ``skin`` and ``nose`` classes by default;
``ears=True`` and ``neck=True`` add those, ``classes=`` picks any set.

Weights: ``weights=PATH`` (CLI ``--parsing-weights``), else
``$FLAMEKIT_HOME/weights/face_parsing_bisenet.pth``. They are not shipped: download
``79999_iter.pth`` from the face-parsing.PyTorch project.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from flamekit.plugin_types import ImageError, PluginUnavailableError, Segmenter

#: CelebAMask-HQ classes in the order of the network's 19 outputs.
FACE_PARSING_CLASSES = (
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear",
    "ear_r", "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
)  # fmt: skip
SKIN, NOSE, L_EAR, R_EAR, NECK = 1, 10, 7, 8, 14
WEIGHTS_NAME = "face_parsing_bisenet.pth"
INPUT_SIZE = 512
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)

__all__ = [
    "FACE_PARSING_CLASSES",
    "WEIGHTS_NAME",
    "BiSeNet",
    "FaceParsingSegmenter",
    "default_weights_path",
]


# -- the network (module and parameter names as in face-parsing.PyTorch) --------------------


class ConvBNReLU(nn.Module):
    def __init__(self, in_chan: int, out_chan: int, ks: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_chan, out_chan, ks, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_chan)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    def __init__(self, in_chan: int, out_chan: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chan, out_chan, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chan)
        self.conv2 = nn.Conv2d(out_chan, out_chan, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chan)
        self.downsample = None
        if in_chan != out_chan or stride != 1:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_chan, out_chan, 1, stride, bias=False), nn.BatchNorm2d(out_chan)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(shortcut + residual)


def _layer(in_chan: int, out_chan: int, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(in_chan, out_chan, stride), BasicBlock(out_chan, out_chan))


class Resnet18(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = _layer(64, 64, 1)
        self.layer2 = _layer(64, 128, 2)
        self.layer3 = _layer(128, 256, 2)
        self.layer4 = _layer(256, 512, 2)

    def forward(self, x: torch.Tensor):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        feat8 = self.layer2(self.layer1(x))
        feat16 = self.layer3(feat8)
        feat32 = self.layer4(feat16)
        return feat8, feat16, feat32


class AttentionRefinementModule(nn.Module):
    def __init__(self, in_chan: int, out_chan: int):
        super().__init__()
        self.conv = ConvBNReLU(in_chan, out_chan)
        self.conv_atten = nn.Conv2d(out_chan, out_chan, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_chan)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        atten = torch.sigmoid(self.bn_atten(self.conv_atten(F.adaptive_avg_pool2d(feat, 1))))
        return feat * atten


class ContextPath(nn.Module):
    def __init__(self):
        super().__init__()
        self.resnet = Resnet18()
        self.arm16 = AttentionRefinementModule(256, 128)
        self.arm32 = AttentionRefinementModule(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128)
        self.conv_head16 = ConvBNReLU(128, 128)
        self.conv_avg = ConvBNReLU(512, 128, ks=1, padding=0)

    def forward(self, x: torch.Tensor):
        feat8, feat16, feat32 = self.resnet(x)
        avg = self.conv_avg(F.adaptive_avg_pool2d(feat32, 1))
        feat32_sum = self.arm32(feat32) + F.interpolate(avg, feat32.shape[2:], mode="nearest")
        feat32_up = self.conv_head32(F.interpolate(feat32_sum, feat16.shape[2:], mode="nearest"))
        feat16_sum = self.arm16(feat16) + feat32_up
        feat16_up = self.conv_head16(F.interpolate(feat16_sum, feat8.shape[2:], mode="nearest"))
        return feat8, feat16_up, feat32_up


class FeatureFusionModule(nn.Module):
    def __init__(self, in_chan: int, out_chan: int):
        super().__init__()
        self.convblk = ConvBNReLU(in_chan, out_chan, ks=1, padding=0)
        self.conv1 = nn.Conv2d(out_chan, out_chan // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(out_chan // 4, out_chan, 1, bias=False)

    def forward(self, fsp: torch.Tensor, fcp: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([fsp, fcp], dim=1))
        atten = torch.sigmoid(self.conv2(F.relu(self.conv1(F.adaptive_avg_pool2d(feat, 1)))))
        return feat * atten + feat


class BiSeNetOutput(nn.Module):
    def __init__(self, in_chan: int, mid_chan: int, n_classes: int):
        super().__init__()
        self.conv = ConvBNReLU(in_chan, mid_chan)
        self.conv_out = nn.Conv2d(mid_chan, n_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """BiSeNet as trained by face-parsing.PyTorch; ``forward`` returns [B,n_classes,H,W] logits.

    ``aux=True`` also returns the two auxiliary heads' logits (training only).
    """

    def __init__(self, n_classes: int = len(FACE_PARSING_CLASSES)):
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusionModule(256, 256)
        self.conv_out = BiSeNetOutput(256, 256, n_classes)
        self.conv_out16 = BiSeNetOutput(128, 64, n_classes)
        self.conv_out32 = BiSeNetOutput(128, 64, n_classes)

    def forward(self, x: torch.Tensor, aux: bool = False):
        size = x.shape[2:]
        feat_res8, feat_cp8, feat_cp16 = self.cp(x)
        out = F.interpolate(
            self.conv_out(self.ffm(feat_res8, feat_cp8)),
            size,
            mode="bilinear",
            align_corners=True,
        )
        if not aux:
            return out
        out16 = F.interpolate(self.conv_out16(feat_cp8), size, mode="bilinear", align_corners=True)
        out32 = F.interpolate(self.conv_out32(feat_cp16), size, mode="bilinear", align_corners=True)
        return out, out16, out32


# -- the segmenter ------------------------------------------------------------------------------


def default_weights_path() -> Path:
    """``$FLAMEKIT_HOME/weights/face_parsing_bisenet.pth``."""
    from flamekit.model.registry import flamekit_home

    return flamekit_home() / "weights" / WEIGHTS_NAME


def _download_hint(where: Path) -> str:
    default = default_weights_path()
    return (
        f"no face-parsing weights at {where}; download 79999_iter.pth from the "
        "face-parsing.PyTorch project (github.com/zllrunning/face-parsing.PyTorch) and pass "
        "--parsing-weights PATH (Python: weights=PATH)"
        + ("" if where == default else f", or copy it to {default}")
    )


def _state_dict(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint: a bare state dict, or one under 'state_dict' / 'model'."""
    if isinstance(loaded, dict):
        for key in ("state_dict", "model"):
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise PluginUnavailableError(
            f"{path}: not a state dict of tensors (found {type(loaded).__name__}); "
            "expected the BiSeNet checkpoint 79999_iter.pth of face-parsing.PyTorch"
        )
    prefix = "module."  # saved from nn.DataParallel
    if loaded and all(k.startswith(prefix) for k in loaded):
        loaded = {k[len(prefix) :]: v for k, v in loaded.items()}
    return dict(loaded)


def load_bisenet(path: str | Path, device: str | torch.device = "cpu") -> BiSeNet:
    """BiSeNet with the weights at ``path``; PluginUnavailableError naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise PluginUnavailableError(_download_hint(path))
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and unpickler-policy errors alike
        raise PluginUnavailableError(
            f"{path}: cannot read face-parsing weights ({type(exc).__name__}: {exc}); "
            "expected the BiSeNet checkpoint 79999_iter.pth of face-parsing.PyTorch"
        ) from exc
    state = _state_dict(loaded, path)
    head = state.get("conv_out.conv_out.weight")
    if head is not None and head.shape[0] != len(FACE_PARSING_CLASSES):
        raise PluginUnavailableError(
            f"{path}: the network has {head.shape[0]} classes, expected "
            f"{len(FACE_PARSING_CLASSES)} (the CelebAMask-HQ layout of face-parsing.PyTorch)"
        )
    net = BiSeNet()
    expected = set(net.state_dict())
    optional = {k for k in expected if k.endswith("num_batches_tracked")}
    missing = sorted(expected - set(state) - optional)
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {', '.join(missing[:5])}" + _more(missing))
        if unexpected:
            parts.append(f"unexpected keys {', '.join(unexpected[:5])}" + _more(unexpected))
        raise PluginUnavailableError(
            f"{path}: not a face-parsing.PyTorch BiSeNet state dict: {'; '.join(parts)}"
        )
    try:
        net.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise PluginUnavailableError(
            f"{path}: face-parsing weights do not fit the BiSeNet layers: {exc}"
        ) from exc
    return net.to(device).eval()


def _more(keys: list[str]) -> str:
    return f" and {len(keys) - 5} more ({len(keys)} in all)" if len(keys) > 5 else ""


class FaceParsingSegmenter(Segmenter):
    """Skin from the BiSeNet face-parsing network (see the module doc).

    Options: ``weights`` (checkpoint path), ``ears``/``neck`` (count those classes as skin),
    ``classes`` (class indices or names that count as skin, replacing the default skin + nose),
    ``device`` (torch device).
    """

    name = "face-parsing"
    needs_landmarks = False

    def __init__(
        self,
        weights: str | Path | None = None,
        ears: bool = False,
        neck: bool = False,
        classes: Iterable[int | str] | None = None,
        device: str = "cpu",
    ) -> None:
        self.weights = Path(weights).expanduser() if weights is not None else None
        if self.weights is not None and not self.weights.is_file():
            raise PluginUnavailableError(_download_hint(self.weights))
        if classes is None:
            chosen = {SKIN, NOSE}
            if ears:
                chosen |= {L_EAR, R_EAR}
            if neck:
                chosen.add(NECK)
        else:
            chosen = {self._class_index(c) for c in classes}
        self.classes = tuple(sorted(chosen))
        self.device = torch.device(device)
        self._net: nn.Module | None = None

    @staticmethod
    def _class_index(value: int | str) -> int:
        if isinstance(value, str) and value in FACE_PARSING_CLASSES:
            return FACE_PARSING_CLASSES.index(value)
        if isinstance(value, (int, np.integer)) and 0 <= value < len(FACE_PARSING_CLASSES):
            return int(value)
        raise ValueError(
            f"unknown face-parsing class {value!r}; use 0-18 or one of "
            f"{', '.join(FACE_PARSING_CLASSES)}"
        )

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        path = default_weights_path()
        if path.is_file():
            return True, ""
        return False, _download_hint(path)

    @property
    def weights_path(self) -> Path:
        return self.weights if self.weights is not None else default_weights_path()

    def load(self) -> nn.Module:
        """The network, loaded on first use (PluginUnavailableError for bad weights)."""
        if self._net is None:
            self._net = load_bisenet(self.weights_path, self.device)
        return self._net

    def parse(self, image: np.ndarray, source: str = "<image>") -> np.ndarray:
        """(H,W) uint8 CelebAMask-HQ labels of ``image`` ((H,W,3) uint8 RGB)."""
        from PIL import Image

        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ImageError(
                f"{source}: expected an (H,W,3) uint8 RGB image, got {image.dtype} {image.shape}"
            )
        height, width = image.shape[:2]
        resized = Image.fromarray(image).resize((INPUT_SIZE, INPUT_SIZE), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0)
        x = (x - torch.tensor(_MEAN)) / torch.tensor(_STD)
        x = x.permute(2, 0, 1)[None].to(self.device)
        with torch.no_grad():
            logits = self.load()(x)
        labels = logits[0].argmax(0).to(torch.uint8).cpu().numpy()
        restored = Image.fromarray(labels).resize((width, height), Image.NEAREST)
        return np.asarray(restored)

    def segment(
        self, image: np.ndarray, landmarks: np.ndarray | None = None, source: str = "<image>"
    ) -> np.ndarray:
        return np.isin(self.parse(image, source), self.classes)
