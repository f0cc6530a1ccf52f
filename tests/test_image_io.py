"""load_image: every kind of photo becomes (H,W,3) uint8 RGB, every bad file a clear ImageError."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from flamekit.io.image import load_image
from flamekit.plugin_types import ImageError


def _photo(height=80, width=100) -> np.ndarray:
    """A smooth RGB gradient with distinct channels (so swaps and flips show)."""
    y, x = np.mgrid[:height, :width]
    return np.stack([x * 255 // (width - 1), y * 255 // (height - 1), 255 - x * 2], -1).astype(
        np.uint8
    )


def test_rgb_png_round_trips_exactly(tmp_path):
    path = tmp_path / "rgb.png"
    Image.fromarray(_photo()).save(path)
    image = load_image(path)
    assert image.dtype == np.uint8 and image.shape == (80, 100, 3)
    np.testing.assert_array_equal(image, _photo())


def test_missing_file_and_folder_name_the_path(tmp_path):
    with pytest.raises(ImageError, match=r"nope\.png: file not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="is a folder"):
        load_image(tmp_path)


def test_a_text_file_is_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("these are not pixels")
    with pytest.raises(ImageError, match=r"notes\.png: not an image file PIL can read"):
        load_image(path)


def test_corrupt_png_fails_its_checksum(tmp_path):
    path = tmp_path / "corrupt.png"
    Image.fromarray(_photo()).save(path)
    data = bytearray(path.read_bytes())
    idat = data.index(b"IDAT")
    data[idat + 20 : idat + 40] = bytes(20)  # damage the pixel data, keep the length
    path.write_bytes(bytes(data))
    with pytest.raises(ImageError, match=r"corrupt\.png: corrupt or truncated image"):
        load_image(path)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_files_fail(tmp_path, suffix):
    path = tmp_path / f"cut{suffix}"
    Image.fromarray(_photo(200, 200)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=rf"cut\{suffix}: corrupt or truncated.*re-download"):
        load_image(path)


def test_grayscale_becomes_three_equal_channels(tmp_path):
    path = tmp_path / "gray.png"
    gray = _photo()[..., 0]
    Image.fromarray(gray, mode="L").save(path)
    image = load_image(path)
    assert image.shape == (80, 100, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image[..., channel], gray)


def test_transparency_is_composited_on_white(tmp_path):
    rgba = np.dstack([_photo(), np.full((80, 100), 255, np.uint8)])
    rgba[:, :50, 3] = 0  # left half transparent
    rgba[:, 50:60, 3] = 128  # a half-transparent band
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    image = load_image(path)
    assert (image[:, :50] == 255).all(), "transparent pixels must be white, not black"
    np.testing.assert_array_equal(image[:, 60:], _photo()[:, 60:])
    band = image[:, 50:60].astype(int)
    expected = (_photo()[:, 50:60].astype(int) * 128 + 255 * 127) / 255
    assert np.abs(band - expected).max() <= 1

    path = tmp_path / "la.png"
    Image.fromarray(rgba[..., [0, 3]], mode="LA").save(path)
    image = load_image(path)
    assert (image[:, :50] == 255).all()
    np.testing.assert_array_equal(image[:, 60:, 1], _photo()[:, 60:, 0])


def test_palette_images_with_and_without_transparency(tmp_path):
    palette_image = Image.fromarray(_photo()).quantize(16)
    path = tmp_path / "palette.png"
    palette_image.save(path)
    np.testing.assert_array_equal(load_image(path), np.asarray(palette_image.convert("RGB")))

    index = np.asarray(palette_image)[0, 0]
    path = tmp_path / "palette_alpha.png"
    palette_image.save(path, transparency=int(index))
    image = load_image(path)
    assert (image[np.asarray(palette_image) == index] == 255).all()


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    values = np.linspace(0, 65535, 80 * 100).reshape(80, 100).astype(np.uint16)
    path = tmp_path / "gray16.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode == "I;16"
    image = load_image(path)
    np.testing.assert_array_equal(image[..., 0], np.rint(values / 257.0).astype(np.uint8))
    assert image[-1, -1, 0] == 255 and image[0, 0, 0] == 0


def test_48_bit_color_png_is_scaled_to_8_bit(tmp_path):
    rgb16 = _photo().astype(np.uint16) * 257 + 100
    path = tmp_path / "color48.png"
    cv2.imwrite(str(path), rgb16[..., ::-1])  # OpenCV writes BGR
    image = load_image(path)
    assert image.dtype == np.uint8 and image.shape == (80, 100, 3)
    assert np.abs(image.astype(int) - rgb16 / 257.0).max() <= 1


def test_float_tiff_in_0_1_is_scaled(tmp_path):
    values = np.linspace(0, 1, 80 * 100, dtype=np.float32).reshape(80, 100)
    path = tmp_path / "float.tif"
    Image.fromarray(values, mode="F").save(path)
    image = load_image(path)
    np.testing.assert_array_equal(image[..., 2], np.rint(values * 255).astype(np.uint8))


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((80, 100, 3), np.uint8)
    pixels[:10, :10] = (255, 0, 0)  # a red mark at the stored top-left
    stored = Image.fromarray(pixels)
    exif = stored.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "rotated.png"
    stored.save(path, exif=exif)
    image = load_image(path)
    assert image.shape == (100, 80, 3)
    assert (image[:10, -10:] == (255, 0, 0)).all(), "the mark moves to the top-right"


def test_too_small_images_are_refused(tmp_path):
    path = tmp_path / "thumb.png"
    Image.fromarray(_photo(50, 200)).save(path)
    with pytest.raises(ImageError, match=r"thumb\.png: image is 200x50 px, under the 64 px"):
        load_image(path)


def test_too_large_images_are_refused(tmp_path):
    path = tmp_path / "panorama.png"
    Image.new("RGB", (9000, 64)).save(path)
    with pytest.raises(ImageError, match=r"panorama\.png: image is 9000x64 px, over 8192"):
        load_image(path)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_decompression_bombs_fail_clearly(tmp_path):
    # A 40000x40000 PNG header over a few bytes of data: PIL's bomb guard trips on open.
    header = struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\0" * 100))
        + _chunk(b"IEND", b"")
    )
    path = tmp_path / "bomb.png"
    path.write_bytes(png)
    with pytest.raises(ImageError, match=r"bomb\.png: .*(too large|over 8192)"):
        load_image(path)
