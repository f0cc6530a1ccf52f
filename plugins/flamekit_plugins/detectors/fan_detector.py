"""The ``fan`` detector: the 2D-FAN heatmap network of face_alignment (Bulat & Tzimiropoulos).

FAN is more accurate than dlib on turned faces and occlusions (the reference landmarks of
flamekit's test photos come from it), but its weights are a separate download that flamekit
never makes on its own. They are looked for, in order, at the ``weights=`` option (CLI
``--fan-weights``) and in the torch hub cache where face_alignment downloads them
(``torch.hub.get_dir()/checkpoints/``, see :data:`WEIGHT_FILES`). Both face_alignment's
state dict (``.pth.tar``, 1.5) and its older TorchScript archive (``.zip``, 1.3/1.4) load.

The pipeline is FAN's, written here so that it runs offline and can be tested with any
``network`` mapping [B,3,256,256] crops in 0..1 to [B,68,64,64] heatmaps: face box (dlib's
detectors, :class:`~flamekit_plugins.detectors.dlib_detector.DlibFaceFinder`) -> a square
crop of side ``200 * (w + h) / 195`` around the box centre raised by 12 % of its height ->
256x256 -> network (plus the mirrored crop, averaged) -> heatmap peak with FAN's quarter-pixel
refinement -> image pixels. Unlike face_alignment it does not round the result to whole
pixels, so coordinates are about half a pixel more accurate.
"""

from __future__ import annotations

import re
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from flamekit.plugin_types import (
    Detection,
    LandmarkDetector,
    NoFaceError,
    PluginUnavailableError,
)
from flamekit_plugins.detectors._common import check_image, pick_largest

CROP_RESOLUTION = 256
REFERENCE_SCALE = 195.0  # face_alignment: box (w + h) / 195 = scale
SCALE_FACTOR = 200.0  # face_alignment: crop side = 200 * scale
CENTER_Y_OFFSET = 0.12  # face_alignment: crop centre raised by 12 % of the box height

#: File names face_alignment gives the 2D-FAN-4 weights in ``torch.hub.get_dir()/checkpoints``:
#: 1.5 downloads https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar
#: (a state dict); 1.3 and 1.4 used the TorchScript archive 2DFAN4-cd938726ad.zip.
WEIGHT_FILES = ("2DFAN4-11f355bf06.pth.tar", "2DFAN4-cd938726ad.zip")
WEIGHTS_URL = "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar"

#: iBUG index of each landmark's mirror image (left eye <-> right eye, ...), as FAN uses.
FLIP_ORDER = (
    [16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    + [26, 25, 24, 23, 22, 21, 20, 19, 18, 17]
    + [27, 28, 29, 30, 35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65]
)

__all__ = [
    "WEIGHT_FILES",
    "FanDetector",
    "box_to_crop",
    "crop_face",
    "crop_matrix",
    "decode_heatmaps",
    "find_weights",
    "heatmap_to_image",
    "load_fan_network",
]


def find_weights(weights: str | Path | None = None) -> Path | None:
    """The FAN weights file: ``weights`` if it exists, else face_alignment's cached download."""
    if weights is not None:
        path = Path(weights).expanduser()
        return path if path.is_file() else None
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def _missing_weights_message(weights: str | Path | None) -> str:
    target = Path(torch.hub.get_dir()) / "checkpoints" / WEIGHT_FILES[0]
    where = f"{weights} does not exist" if weights is not None else "no FAN weights found"
    return (
        f"{where}; flamekit never downloads them: fetch {WEIGHTS_URL} on a machine with "
        f"internet, then put the weights at {target} or pass --fan-weights PATH "
        "(FanDetector(weights=PATH))"
    )


def load_fan_network(path: str | Path, device: str = "cpu") -> torch.nn.Module:
    """A FAN network from face_alignment's weights file (state dict or TorchScript)."""
    path = Path(path)
    if _is_torchscript(path):  # face_alignment 1.3/1.4's 2DFAN4-cd938726ad.zip
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit's; still works
                return torch.jit.load(str(path), map_location=device).eval()
        except Exception as exc:
            raise PluginUnavailableError(f"{path}: broken TorchScript FAN archive ({exc})") from exc
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:
        raise PluginUnavailableError(
            f"{path}: not a FAN weights file torch can read ({exc})"
        ) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise PluginUnavailableError(f"{path}: expected a FAN state dict, got {type(state)}")
    state = {key.removeprefix("module."): value for key, value in state.items()}
    # FAN stacks hourglasses; each ends in a 68-channel head "l<i>", so their count tells
    # the architecture (4 for the released 2DFAN-4).
    stacks = sum(1 for key in state if re.fullmatch(r"l\d+\.weight", key))
    try:
        from face_alignment.models import FAN
    except ImportError as exc:
        raise PluginUnavailableError(
            f"face_alignment is not installed ({exc}); pip install face-alignment"
        ) from exc
    network = FAN(max(stacks, 1))
    try:
        network.load_state_dict(state)
    except RuntimeError as exc:
        raise PluginUnavailableError(f"{path}: not 2D-FAN weights ({exc})") from exc
    return network.to(device).eval()


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zips holding ``constants.pkl`` (torch.save zips do not)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/constants.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def box_to_crop(box: np.ndarray) -> tuple[np.ndarray, float]:
    """(centre (x, y), side) of the square FAN crop for a face box (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2 - (y1 - y0) * CENTER_Y_OFFSET])
    side = SCALE_FACTOR * ((x1 - x0) + (y1 - y0)) / REFERENCE_SCALE
    return centre, side


def crop_matrix(centre: np.ndarray, side: float, resolution: int) -> np.ndarray:
    """2x3 affine map from image pixel coordinates to crop pixel coordinates.

    The crop covers the square of ``side`` image pixels centred on ``centre``; both use
    pixel-centre coordinates (top-left pixel centre at 0, 0), so crop pixel ``u`` has its
    centre at image ``centre - side / 2 + (u + 0.5) * side / resolution``.
    """
    s = resolution / side
    offset = (side / 2 - np.asarray(centre, np.float64)) * s - 0.5
    return np.array([[s, 0.0, offset[0]], [0.0, s, offset[1]]])


def crop_face(image: np.ndarray, centre: np.ndarray, side: float, resolution: int = 256):
    """The (resolution, resolution, 3) crop; outside the image is black, as in FAN."""
    import cv2

    return cv2.warpAffine(
        image,
        crop_matrix(centre, side, resolution),
        (resolution, resolution),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )


def decode_heatmaps(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Peak of each heatmap with FAN's quarter-pixel refinement.

    Args:
        heatmaps: [B,N,H,W].
    Returns:
        coordinates [B,N,2] (x, y) in heatmap pixel coordinates (pixel centres at integers),
        and the peak values [B,N]. A peak off the border moves a quarter pixel toward its
        higher neighbour on each axis, as FAN does.
    """
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    b, n, h, w = heatmaps.shape
    flat = heatmaps.reshape(b, n, h * w)
    index = flat.argmax(-1)
    scores = np.take_along_axis(flat, index[..., None], -1)[..., 0]
    y, x = np.divmod(index, w)
    coords = np.stack([x, y], -1).astype(np.float32)
    inside = (x > 0) & (x < w - 1) & (y > 0) & (y < h - 1)
    bi, ni = np.nonzero(inside)
    xi, yi = x[bi, ni], y[bi, ni]
    maps = heatmaps[bi, ni]
    rows = np.arange(len(bi))
    dx = maps[rows, yi, xi + 1] - maps[rows, yi, xi - 1]
    dy = maps[rows, yi + 1, xi] - maps[rows, yi - 1, xi]
    coords[bi, ni] += 0.25 * np.sign(np.stack([dx, dy], -1))
    return coords, scores


def heatmap_to_image(
    coords: np.ndarray, centre: np.ndarray, side: float, resolution: int
) -> np.ndarray:
    """Heatmap pixel coordinates -> image pixel coordinates (inverse of :func:`crop_matrix`)."""
    coords = np.asarray(coords, np.float64)
    return np.asarray(centre) - side / 2 + (coords + 0.5) * (side / resolution)


class FanDetector(LandmarkDetector):
    """face_alignment's 2D-FAN on dlib's face boxes.

    Options: ``weights`` (path to the weights; default: face_alignment's hub-cache file),
    ``device`` (torch device), ``flip`` (also run the mirrored crop and average, as
    face_alignment does; about halves the jitter for twice the time), ``network`` (a ready
    ``torch.nn.Module`` instead of weights, e.g. for tests), ``face_finder`` (an object with
    ``find(image) -> [(box, score, how)]``; default dlib's HOG + CNN). ``confidence`` is the
    mean heatmap peak (higher where the network is surer).
    """

    name = "fan"

    def __init__(
        self,
        weights: str | Path | None = None,
        device: str = "cpu",
        flip: bool = True,
        network: torch.nn.Module | None = None,
        face_finder=None,
    ) -> None:
        self.device = torch.device(device)
        self.flip = flip
        if network is None:
            path = find_weights(weights)
            if path is None:
                raise PluginUnavailableError(_missing_weights_message(weights))
            network = load_fan_network(path, str(self.device))
        self.network = network.to(self.device).eval()
        self._face_finder = face_finder

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        """Usable when the weights are in the hub cache and dlib (for boxes) works."""
        import importlib.util

        from flamekit_plugins.detectors.dlib_detector import DlibDetector

        if find_weights() is None:
            return False, _missing_weights_message(None)
        if importlib.util.find_spec("face_alignment") is None:
            return False, "face_alignment is not installed; pip install face-alignment"
        return DlibDetector.availability()

    def detect(self, image: np.ndarray, source: str = "<image>") -> Detection:
        """The largest face's 68 landmarks (warns with MultipleFacesWarning when several)."""
        image = check_image(image, source)
        if self._face_finder is None:
            from flamekit_plugins.detectors.dlib_detector import DlibFaceFinder

            self._face_finder = DlibFaceFinder()
        faces = self._face_finder.find(image)
        if not faces:
            raise NoFaceError(
                f"{source}: no face found (dlib HOG and CNN detectors); the face should be "
                "visible and at least about 40 px wide"
            )
        box, _, _ = pick_largest(faces, source)
        landmarks, scores = self.landmarks_in_box(image, box)
        return Detection(
            landmarks=landmarks,
            box=box,
            confidence=float(scores.mean()),
            num_faces=len(faces),
            image_size=image.shape[:2],
            detector=self.name,
        )

    @torch.no_grad()
    def landmarks_in_box(self, image: np.ndarray, box: np.ndarray):
        """((68,2) float32 landmarks, (68,) heatmap peaks) of the face in ``box``."""
        image = check_image(image, "<image>")
        centre, side = box_to_crop(box)
        crop = crop_face(image, centre, side, CROP_RESOLUTION)
        batch = torch.from_numpy(crop).permute(2, 0, 1)[None].float().div(255)
        batch = batch.to(self.device)
        heatmaps = self._heatmaps(batch)
        if self.flip:
            mirrored = self._heatmaps(batch.flip(-1))
            heatmaps = (heatmaps + mirrored[:, FLIP_ORDER].flip(-1)) / 2
        heatmaps = heatmaps.float().cpu().numpy()
        coords, scores = decode_heatmaps(heatmaps)
        points = heatmap_to_image(coords[0], centre, side, heatmaps.shape[-1])
        return points.astype(np.float32), scores[0]

    def _heatmaps(self, batch: torch.Tensor) -> torch.Tensor:
        output = self.network(batch)
        if isinstance(output, (list, tuple)):  # FAN returns one output per hourglass stack
            output = output[-1]
        if output.dim() != 4 or output.shape[1] != 68 or output.shape[2] != output.shape[3]:
            raise RuntimeError(
                f"the FAN network returned {tuple(output.shape)}, expected [B,68,R,R] heatmaps"
            )
        return output
