"""Landmark detectors (dlib, fan, file), batch detection and ``flamekit detect``.

dlib's accuracy is measured on the ten shared FFHQ photos against their FAN landmarks; FAN is
tested with networks and weights made here (its released weights are a download flamekit
never makes), so its crop, flip and heatmap decoding are checked without them.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from flamekit import plugins
from flamekit.detect import detect_images, expand_images
from flamekit.plugin_types import (
    Detection,
    ImageError,
    LandmarkDetector,
    MultipleFacesWarning,
    NoFaceError,
    PluginUnavailableError,
)
from flamekit_cli.main import app
from flamekit_plugins.detectors import (
    DlibDetector,
    FanDetector,
    FileDetector,
    LandmarkFileError,
    register_landmark_detectors,
)
from flamekit_plugins.detectors import dlib_detector as dlib_module
from flamekit_plugins.detectors.fan_detector import (
    WEIGHT_FILES,
    box_to_crop,
    crop_matrix,
    decode_heatmaps,
    heatmap_to_image,
    load_fan_network,
)
from flamekit_plugins.detectors.file_detector import read_landmarks, write_landmarks

FACES = [f"ffhq_{i:05d}" for i in range(10)]


def _faces(shared_data):
    folder = shared_data / "faces"
    if not (folder / f"{FACES[0]}.png").is_file():
        pytest.skip(f"{folder} holds no test photos")
    return folder


def _load(folder, name):
    from flamekit.io.image import load_image

    return load_image(folder / f"{name}.png"), np.load(folder / f"{name}_lmk68.npy")


def _normalised_error(landmarks, reference):
    """Mean point error over the outer-eye-corner distance (36-45), the usual NME."""
    inter_ocular = np.linalg.norm(reference[36] - reference[45])
    return float(np.linalg.norm(landmarks - reference, axis=1).mean() / inter_ocular)


@pytest.fixture(scope="module")
def dlib_detector():
    usable, reason = DlibDetector.availability()
    if not usable:
        pytest.skip(reason)
    return DlibDetector()


def _blank(height=240, width=320, value=128):
    return np.full((height, width, 3), value, np.uint8)


# -- registration ------------------------------------------------------------------------


def test_the_hook_registers_dlib_first_then_fan_and_file():
    registered = []
    register_landmark_detectors(lambda name, factory: registered.append((name, factory)))
    assert registered == [("dlib", DlibDetector), ("fan", FanDetector), ("file", FileDetector)]
    for _, factory in registered:
        usable, reason = factory.availability()
        assert isinstance(usable, bool) and isinstance(reason, str)


# -- dlib --------------------------------------------------------------------------------


def test_dlib_matches_the_reference_landmarks(shared_data, dlib_detector):
    folder = _faces(shared_data)
    errors = {}
    for name in FACES:
        image, reference = _load(folder, name)
        detection = dlib_detector.detect(image, f"{name}.png")
        assert detection.landmarks.shape == (68, 2) and detection.landmarks.dtype == np.float32
        assert detection.num_faces == 1 and detection.detector == "dlib"
        errors[name] = _normalised_error(detection.landmarks, reference)
    report = ", ".join(f"{name}: {error:.3f}" for name, error in errors.items())
    assert sum(error < 0.05 for error in errors.values()) >= 9, report


def test_dlib_finds_the_face_in_a_large_photo(shared_data, dlib_detector):
    """Detection runs on a shrunk copy; the boxes must map back to full resolution."""
    image, reference = _load(_faces(shared_data), FACES[0])
    big = np.asarray(Image.fromarray(image).resize((1300, 1300), Image.BICUBIC))
    detection = dlib_detector.detect(big, "big.png")
    scaled = (reference + 0.5) * (1300 / 256) - 0.5
    assert _normalised_error(detection.landmarks, scaled) < 0.05
    assert detection.image_size == (1300, 1300)


def test_dlib_uses_the_largest_of_several_faces(shared_data, dlib_detector):
    image, reference = _load(_faces(shared_data), FACES[1])
    canvas = np.full((300, 460, 3), 200, np.uint8)
    canvas[20:276, 190:446] = image
    canvas[60:220, 10:170] = np.asarray(Image.fromarray(image).resize((160, 160)))
    with pytest.warns(MultipleFacesWarning, match=r"two\.png: 2 faces found, using the largest"):
        detection = dlib_detector.detect(canvas, "two.png")
    assert detection.num_faces == 2
    assert _normalised_error(detection.landmarks, reference + (190, 20)) < 0.05


def test_dlib_reports_no_face_with_the_file_name(dlib_detector):
    with pytest.raises(NoFaceError, match=r"blank\.png: no face found"):
        dlib_detector.detect(_blank(), "blank.png")


def test_detectors_refuse_arrays_that_are_not_uint8_rgb(dlib_detector):
    with pytest.raises(ImageError, match=r"x\.png: expected an \(H,W,3\) uint8 RGB image"):
        dlib_detector.detect(np.zeros((100, 100), np.uint8), "x.png")
    with pytest.raises(ImageError, match="uint8"):
        dlib_detector.detect(np.zeros((100, 100, 3), np.float32), "x.png")


def test_dlib_availability_explains_missing_model_files(monkeypatch):
    monkeypatch.setattr(dlib_module, "face_recognition_models_dir", lambda: None)
    usable, reason = DlibDetector.availability()
    assert not usable
    assert "pip install dlib-bin face-recognition-models" in reason
    with pytest.raises(PluginUnavailableError, match="face-recognition-models"):
        DlibDetector()


# -- fan ---------------------------------------------------------------------------------


def test_decode_heatmaps_finds_peaks_with_quarter_pixel_refinement():
    heatmaps = np.zeros((2, 68, 64, 64), np.float32)
    heatmaps[0, 0, 20, 10] = 1.0  # lone peak: no shift
    heatmaps[0, 1, 20, 10] = 1.0  # right and lower neighbours higher: +0.25, +0.25
    heatmaps[0, 1, 20, 11] = 0.5
    heatmaps[0, 1, 21, 10] = 0.5
    heatmaps[0, 2, 30, 40] = 1.0  # left and upper neighbours higher: -0.25, -0.25
    heatmaps[0, 2, 30, 39] = 0.3
    heatmaps[0, 2, 29, 40] = 0.3
    heatmaps[0, 3, 0, 5] = 0.9  # on the border: FAN does not refine
    heatmaps[0, 3, 0, 6] = 0.5
    heatmaps[1, :, 63, 63] = 0.7
    coords, scores = decode_heatmaps(heatmaps)
    assert coords.shape == (2, 68, 2) and scores.shape == (2, 68)
    np.testing.assert_allclose(coords[0, 0], [10, 20])
    np.testing.assert_allclose(coords[0, 1], [10.25, 20.25])
    np.testing.assert_allclose(coords[0, 2], [39.75, 29.75])
    np.testing.assert_allclose(coords[0, 3], [5, 0])
    np.testing.assert_allclose(coords[1], np.full((68, 2), 63.0))
    np.testing.assert_allclose(scores[0, :4], [1.0, 1.0, 1.0, 0.9])


def test_crop_and_heatmap_coordinates_are_inverse():
    centre, side = box_to_crop(np.array([100.0, 50.0, 260.0, 230.0]))
    np.testing.assert_allclose(centre, [180.0, 140.0 - 180 * 0.12])
    assert side == pytest.approx(200 * 340 / 195)
    points = np.array([[123.4, 77.7], [250.0, 199.5], [180.0, 140.0]])
    matrix = crop_matrix(centre, side, 64)
    in_heatmap = points @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(heatmap_to_image(in_heatmap, centre, side, 64), points)


class _FixedHeatmaps(torch.nn.Module):
    """Always the same heatmaps, whatever the crop."""

    def __init__(self, heatmaps: np.ndarray):
        super().__init__()
        self.register_buffer("heatmaps", torch.from_numpy(heatmaps))

    def forward(self, x):
        return [self.heatmaps * 0.5, self.heatmaps.expand(len(x), -1, -1, -1)]  # last is used


def test_fan_maps_heatmap_peaks_to_image_pixels():
    rng = np.random.default_rng(0)
    peaks = rng.integers(1, 63, size=(68, 2))
    heatmaps = np.zeros((1, 68, 64, 64), np.float32)
    heatmaps[0, np.arange(68), peaks[:, 1], peaks[:, 0]] = 1.0
    heatmaps[0, 7, peaks[7, 1], peaks[7, 0] + 1] = 0.5  # refine landmark 7 right by 1/4
    detector = FanDetector(network=_FixedHeatmaps(heatmaps), flip=False)
    box = np.array([40.0, 30.0, 200.0, 210.0])
    landmarks, scores = detector.landmarks_in_box(_blank(), box)
    assert landmarks.shape == (68, 2) and landmarks.dtype == np.float32
    centre, side = box_to_crop(box)
    expected = centre - side / 2 + (peaks + 0.5) * side / 64
    expected[7, 0] += 0.25 * side / 64
    np.testing.assert_allclose(landmarks, expected, atol=1e-3)
    np.testing.assert_allclose(scores, 1.0)


class _BrightSpot(torch.nn.Module):
    """Every heatmap is the crop's red channel at 64x64: it peaks where the image is red."""

    def forward(self, x):
        return F.avg_pool2d(x[:, :1], 4).repeat(1, 68, 1, 1)


@pytest.mark.parametrize("flip", [False, True])
def test_fan_crop_flip_and_decoding_find_a_spot_in_the_image(flip):
    image = _blank(300, 400, 0)
    spot = np.array([231.3, 142.7])
    y, x = np.mgrid[:300, :400]
    image[..., 0] = np.rint(255 * np.exp(-((x - spot[0]) ** 2 + (y - spot[1]) ** 2) / 32.0))
    detector = FanDetector(network=_BrightSpot(), flip=flip)
    landmarks, _ = detector.landmarks_in_box(image, np.array([150, 80, 300, 230]))
    heatmap_pixel = box_to_crop(np.array([150, 80, 300, 230]))[1] / 64  # ~4.8 image px
    assert np.abs(landmarks - spot).max() < heatmap_pixel / 2


def test_fan_rejects_networks_with_the_wrong_output():
    class Wrong(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(len(x), 5, 64, 64)

    with pytest.raises(RuntimeError, match=r"returned \(1, 5, 64, 64\), expected \[B,68,R,R\]"):
        FanDetector(network=Wrong()).landmarks_in_box(_blank(), np.array([40, 30, 200, 210]))


def _fan_weights(path, wrap=False):
    """A one-stack FAN with random weights, saved like face_alignment's file."""
    from face_alignment.models import FAN

    torch.manual_seed(0)
    state = FAN(1).state_dict()
    if wrap:  # the DataParallel-style checkpoint some training scripts write
        state = {"state_dict": {f"module.{key}": value for key, value in state.items()}}
    torch.save(state, path)
    return path


def test_fan_runs_the_real_architecture_with_weights_made_here(tmp_path):
    weights = _fan_weights(tmp_path / "fan.pth.tar")
    network = load_fan_network(weights)
    output = network(torch.rand(2, 3, 256, 256))
    assert isinstance(output, list) and output[-1].shape == (2, 68, 64, 64)

    detector = FanDetector(weights=weights)
    landmarks, scores = detector.landmarks_in_box(_blank(), np.array([60, 40, 220, 200]))
    assert landmarks.shape == (68, 2) and scores.shape == (68,)
    assert np.isfinite(landmarks).all()
    centre, side = box_to_crop(np.array([60, 40, 220, 200]))
    assert (np.abs(landmarks - centre) <= side / 2).all(), "points lie inside the crop"

    wrapped = load_fan_network(_fan_weights(tmp_path / "wrapped.pth", wrap=True))
    assert torch.allclose(wrapped.l0.weight, network.l0.weight)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.script, to write one
def test_fan_loads_torchscript_archives(tmp_path):
    path = tmp_path / "2DFAN4-cd938726ad.zip"
    torch.jit.script(_BrightSpot()).save(str(path))
    network = load_fan_network(path)
    assert network(torch.rand(1, 3, 256, 256)).shape == (1, 68, 64, 64)


def test_fan_weights_come_from_the_hub_cache_or_a_path(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    usable, reason = FanDetector.availability()
    assert not usable
    assert f"{tmp_path}/torch/hub/checkpoints/{WEIGHT_FILES[0]}" in reason
    assert "--fan-weights PATH" in reason
    with pytest.raises(PluginUnavailableError, match="never downloads"):
        FanDetector()
    with pytest.raises(PluginUnavailableError, match=r"missing\.pth does not exist"):
        FanDetector(weights=tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    bad.write_text("not weights")
    with pytest.raises(PluginUnavailableError, match=r"bad\.pth: not a FAN weights file"):
        FanDetector(weights=bad)

    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    _fan_weights(checkpoints / WEIGHT_FILES[0])
    assert FanDetector.availability() == DlibDetector.availability()
    assert isinstance(FanDetector().network, torch.nn.Module)


def test_fan_reports_no_face(dlib_detector):
    detector = FanDetector(network=_BrightSpot())
    with pytest.raises(NoFaceError, match=r"empty\.jpg: no face found"):
        detector.detect(_blank(), "empty.jpg")


# -- file --------------------------------------------------------------------------------


def _landmarks(seed=1, width=320, height=240):
    rng = np.random.default_rng(seed)
    return (rng.random((68, 2)) * [width - 1, height - 1]).astype(np.float32)


def _image_file(folder, name="face.png"):
    path = folder / name
    Image.fromarray(_blank()).save(path)
    return path


@pytest.mark.parametrize("suffix", ["_lmk68.npy", ".npy", ".pts", ".txt", ".json"])
def test_file_formats_round_trip(tmp_path, suffix):
    image_path = _image_file(tmp_path)
    points = _landmarks()
    write_landmarks(tmp_path / f"face{suffix}", points)
    detection = FileDetector().detect(_blank(), str(image_path))
    np.testing.assert_allclose(detection.landmarks, points, atol=1e-5)
    np.testing.assert_allclose(detection.box, [*points.min(0), *points.max(0)], atol=1e-5)
    assert detection.confidence == 1.0 and detection.detector == "file"


def test_pts_files_are_one_based_like_300w(tmp_path):
    body = "\n".join(f"{x + 1} {y + 1}" for x, y in _landmarks())
    path = tmp_path / "face.pts"
    path.write_text(f"version: 1\nn_points:  68\n{{\n{body}\n}}\n")
    np.testing.assert_allclose(read_landmarks(path), _landmarks(), atol=1e-4)
    np.testing.assert_allclose(read_landmarks(path, pts_one_based=False), _landmarks() + 1, 1e-5)
    written = write_landmarks(tmp_path / "out.pts", _landmarks()).read_text().splitlines()
    x, y = (float(v) for v in written[3].split())
    np.testing.assert_allclose([x, y], _landmarks()[0] + 1, atol=1e-5)


def test_json_lists_and_explicit_paths(tmp_path):
    points = _landmarks(2)
    listed = tmp_path / "elsewhere" / "mine.json"
    listed.parent.mkdir()
    listed.write_text(json.dumps(points.tolist()))
    detection = FileDetector(path=listed).detect(_blank(), "<image>")
    np.testing.assert_allclose(detection.landmarks, points, atol=1e-5)

    write_landmarks(listed.parent / "face.txt", points)
    detection = FileDetector(path=listed.parent).detect(_blank(), str(tmp_path / "face.png"))
    np.testing.assert_allclose(detection.landmarks, points, atol=1e-5)


def test_the_flamekit_npy_is_preferred_over_other_side_files(tmp_path):
    image_path = _image_file(tmp_path)
    write_landmarks(tmp_path / "face.pts", _landmarks(3))
    write_landmarks(tmp_path / "face_lmk68.npy", _landmarks(4))
    detection = FileDetector().detect(_blank(), str(image_path))
    np.testing.assert_allclose(detection.landmarks, _landmarks(4))


def test_file_errors_name_the_file_and_the_problem(tmp_path):
    image_path = _image_file(tmp_path)
    detector = FileDetector()
    with pytest.raises(LandmarkFileError, match=r"face\.png: no landmark file found .*face\.pts"):
        detector.detect(_blank(), str(image_path))

    np.save(tmp_path / "face.npy", _landmarks()[:67])
    with pytest.raises(LandmarkFileError, match=r"face\.npy: holds 67 points, expected 68"):
        detector.detect(_blank(), str(image_path))

    points = _landmarks()
    points[[5, 9], 1] = np.nan
    np.save(tmp_path / "face.npy", points)
    with pytest.raises(LandmarkFileError, match=r"face\.npy: points \[5, 9\] are NaN"):
        detector.detect(_blank(), str(image_path))

    np.save(tmp_path / "face.npy", _landmarks() * 3)
    with pytest.raises(LandmarkFileError, match=r"face\.npy: \d+ points lie outside the 320x240"):
        detector.detect(_blank(), str(image_path))

    np.save(tmp_path / "face.npy", _landmarks() / 320)
    with pytest.raises(LandmarkFileError, match="normalised coordinates"):
        detector.detect(_blank(), str(image_path))

    (tmp_path / "face.npy").unlink()
    (tmp_path / "face.pts").write_text("version: 1\nn_points: 68\n{\n1 2\n}\n")
    with pytest.raises(LandmarkFileError, match=r"face\.pts: .*n_points: 68, the file holds 1"):
        detector.detect(_blank(), str(image_path))

    (tmp_path / "face.pts").unlink()
    (tmp_path / "face.json").write_text(json.dumps({"points": []}))
    with pytest.raises(LandmarkFileError, match=r'face\.json: .*"landmarks" key'):
        detector.detect(_blank(), str(image_path))
    assert issubclass(LandmarkFileError, ImageError), "batch runs skip such images"


# -- batch detection ---------------------------------------------------------------------


class _Stub(LandmarkDetector):
    """Fixed landmarks; warns on names with 'crowd', is interrupted on names with 'stop'."""

    name = "stub"

    def detect(self, image, source="<image>"):
        if "stop" in source:
            raise KeyboardInterrupt
        if "crowd" in source:
            warnings.warn(
                f"{source}: 3 faces found, using the largest", MultipleFacesWarning, stacklevel=2
            )
        points = _landmarks(width=image.shape[1], height=image.shape[0])
        return Detection(points, [0, 0, 10, 10], 1.0, 1, image.shape[:2], self.name)


def test_detect_images_writes_outputs_and_collects_failures(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.png", "crowd.png", "a_lmk68.png", "a_skin.png"):
        _image_file(photos, name)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    other = tmp_path / "other"
    other.mkdir()
    _image_file(other, "a.jpg")

    images, failures = expand_images([photos, str(other / "*.jpg"), photos / "a.png", "gone.png"])
    assert [p.name for p in images] == ["a.png", "broken.jpg", "crowd.png", "a.jpg"]
    assert [f.image.name for f in failures] == ["gone.png"]

    out = tmp_path / "out"
    summary = detect_images([photos, str(other / "*.jpg")], _Stub(), out, progress=False)
    assert not summary.ok
    assert sorted(p.name for p in out.iterdir()) == [
        "a_lmk68.npy",
        "a_lmk68.png",
        "crowd_lmk68.npy",
        "crowd_lmk68.png",
    ]
    saved = np.load(out / "a_lmk68.npy")
    assert saved.dtype == np.float32 and saved.shape == (68, 2)
    overlay = np.asarray(Image.open(out / "a_lmk68.png"))
    assert overlay.shape == (240, 320, 3) and (overlay != 128).any()
    reasons = {f.image.name: f.reason for f in summary.failures}
    assert (
        "corrupt or truncated" in reasons["broken.jpg"] or "not an image" in reasons["broken.jpg"]
    )
    assert "taken by" in reasons["a.jpg"]
    text = summary.format()
    assert "2 of 4 images done" in text and "broken.jpg" in text
    assert "warning: " in text and "3 faces found" in text


def test_ctrl_c_keeps_finished_files_and_leaves_no_partial_ones(tmp_path):
    paths = [_image_file(tmp_path, name) for name in ("one.png", "stop.png", "three.png")]
    out = tmp_path / "out"
    summary = detect_images(paths, _Stub(), out, progress=True)
    assert summary.interrupted and not summary.ok
    assert sorted(p.name for p in out.iterdir()) == ["one_lmk68.npy", "one_lmk68.png"]
    assert "interrupted" in summary.format()


# -- the command line --------------------------------------------------------------------

runner = CliRunner()


def test_cli_detects_good_photos_and_reports_the_bad_one(shared_data, tmp_path):
    folder = _faces(shared_data)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes((folder / f"{FACES[2]}.png").read_bytes()[:2000])
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["detect", str(folder / f"{FACES[0]}.png"), str(folder / f"{FACES[3]}.png"),
         str(corrupt), "--out", str(out), "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "2 of 3 images done" in result.output
    assert "corrupt.png: corrupt or truncated image" in result.output
    for name in (FACES[0], FACES[3]):
        landmarks = np.load(out / f"{name}_lmk68.npy")
        assert landmarks.shape == (68, 2) and landmarks.dtype == np.float32
        reference = np.load(folder / f"{name}_lmk68.npy")
        assert _normalised_error(landmarks, reference) < 0.05
        assert (out / f"{name}_lmk68.png").is_file()
    assert not (out / "corrupt_lmk68.npy").exists()


def test_cli_reads_landmark_files(tmp_path):
    image_path = _image_file(tmp_path)
    write_landmarks(tmp_path / "face.pts", _landmarks())
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["detect", str(image_path), "--landmarks", str(tmp_path / "face.pts"), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(out / "face_lmk68.npy"), _landmarks(), atol=1e-5)


def test_cli_explains_missing_fan_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    image_path = _image_file(tmp_path)
    result = runner.invoke(app, ["detect", str(image_path), "--detector", "fan"])
    assert result.exit_code == 2
    assert "--fan-weights PATH" in result.output
    result = runner.invoke(app, ["detect", str(image_path), "--fan-weights", "w.pth"])
    assert result.exit_code == 2
    assert "--fan-weights applies to --detector fan" in result.output


def test_cli_runs_fan_with_a_weights_path(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # nothing in the hub cache
    weights = _fan_weights(tmp_path / "fan.pth.tar")
    photo = _faces(shared_data) / f"{FACES[0]}.png"
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["detect", str(photo), "-d", "fan", "--fan-weights", str(weights), "-o", str(out),
         "--no-overlay"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert np.load(out / f"{FACES[0]}_lmk68.npy").shape == (68, 2)  # random weights: any points
    assert not (out / f"{FACES[0]}_lmk68.png").exists()


def test_file_detector_reads_the_landmarks_beside_real_photos(shared_data):
    folder = _faces(shared_data)
    detector = plugins.landmark_detector("file")
    for name in FACES[:3]:
        image, reference = _load(folder, name)
        detection = detector.detect(image, str(folder / f"{name}.png"))
        np.testing.assert_allclose(detection.landmarks, reference)
        assert detection.image_size == image.shape[:2]
