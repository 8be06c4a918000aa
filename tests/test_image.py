"""Reading users' photos: HEIC, AVIF and JPEG XL files, and colour profiles other than sRGB."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import photo
from PIL import Image, ImageCms

from compressnet import cli
from compressnet.image import ImageError, open_image, register_plugins, to_rgb_array
from compressnet.train.data import find_images

# D50-adapted XYZ of the primaries (the columns of each space's RGB -> XYZ matrix)
SRGB_PRIMARIES = np.array([[0.4361, 0.2225, 0.0139], [0.3851, 0.7169, 0.0971], [0.1431, 0.0606, 0.7141]])
P3_PRIMARIES = np.array([[0.5151, 0.2412, -0.0011], [0.2920, 0.6922, 0.0419], [0.1571, 0.0666, 0.7841]])


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz(values) -> bytes:
    return b"XYZ " + bytes(4) + b"".join(_s15(v) for v in values)


def icc_profile(primaries: np.ndarray, gamma: float, description: str) -> bytes:
    """A minimal ICC v2 RGB display profile (matrix and pure-gamma curves), written here since
    no profile but sRGB can be made by Pillow or downloaded."""
    text = description.encode("ascii") + b"\0"
    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)
    tags = [(b"desc", b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(8 + 3 + 67)),
            (b"wtpt", _xyz((0.9642, 1.0, 0.8249))),
            (b"rXYZ", _xyz(primaries[0])), (b"gXYZ", _xyz(primaries[1])), (b"bXYZ", _xyz(primaries[2])),
            (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve),
            (b"cprt", b"text" + bytes(4) + b"none\0")]
    offset = 128 + 4 + 12 * len(tags)
    table = body = b""
    for signature, data in tags:
        data += bytes(-len(data) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    header = (struct.pack(">I", offset + len(body)) + bytes(4) + bytes([2, 0x10, 0, 0]) + b"mntrRGB XYZ "
              + bytes(12) + b"acsp" + bytes(28) + _s15(0.9642) + _s15(1.0) + _s15(0.8249) + bytes(48))
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0, 1)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055) * 255


def tagged_png(path: Path, pixels: np.ndarray, icc: bytes) -> Path:
    Image.fromarray(pixels).save(path, icc_profile=icc)
    return path


def test_a_linear_light_profile_is_converted_to_srgb(tmp_path):
    grey = np.full((8, 8, 3), 64, np.uint8)
    path = tagged_png(tmp_path / "linear.png", grey, icc_profile(SRGB_PRIMARIES, 1.0, "linear light"))
    got = open_image(path)
    expected = srgb_encode(np.array(64 / 255))  # 137.2: the sRGB code of that light
    assert np.abs(got.astype(float) - expected).max() <= 1
    assert open_image(path).mean() != 64


def test_display_p3_pixels_become_the_same_colours_in_srgb(tmp_path):
    colours = np.array([[[200, 100, 50], [60, 160, 90], [90, 80, 190], [128, 128, 128]]], np.uint8)
    path = tagged_png(tmp_path / "p3.png", colours, icc_profile(P3_PRIMARIES, 2.2, "Display P3 (test)"))
    got = open_image(path).astype(float)
    xyz = ((colours / 255.0) ** 2.2) @ P3_PRIMARIES
    expected = srgb_encode(xyz @ np.linalg.inv(SRGB_PRIMARIES))
    assert np.abs(got - expected).max() <= 2
    assert np.abs(got - colours).max() > 10  # read as sRGB, they would be off by this much


def test_srgb_tagged_and_untagged_pixels_are_kept(tmp_path):
    pixels = photo(16, 24)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    np.testing.assert_array_equal(open_image(tagged_png(tmp_path / "srgb.png", pixels, srgb)), pixels)
    Image.fromarray(pixels).save(tmp_path / "plain.png")
    np.testing.assert_array_equal(open_image(tmp_path / "plain.png"), pixels)


@pytest.mark.parametrize("icc", [b"not a profile", icc_profile(SRGB_PRIMARIES, 1.0, "an RGB profile")])
def test_an_unusable_profile_is_ignored_with_a_warning(icc):
    grey = Image.new("L", (4, 4), 100)  # the second: an RGB profile on a greyscale image
    grey.info["icc_profile"] = icc
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pixels = to_rgb_array(grey)
    assert (pixels == 100).all()
    assert any("colour profile ignored" in str(c.message) for c in caught)


def test_a_p3_photo_decodes_with_its_colours(tmp_path, capsys):
    """End to end with the bundled model: the file carries the converted colours, not the
    raw numbers read as sRGB."""
    flat = np.empty((48, 64, 3), np.uint8)
    flat[:] = (200, 100, 50)
    path = tagged_png(tmp_path / "p3.png", flat, icc_profile(P3_PRIMARIES, 2.2, "Display P3 (test)"))
    expected = open_image(path)[0, 0].astype(float)  # about (216, 93, 24)
    assert cli.main(["compress", str(path), "-q", "3"]) == 0
    assert cli.main(["decompress", str(tmp_path / "p3.cnet")]) == 0
    decoded = np.asarray(Image.open(tmp_path / "p3.decoded.png")).reshape(-1, 3).mean(0)
    assert np.abs(decoded - expected).max() <= 4 < np.abs(decoded - flat[0, 0]).max()


def _heic_bytes(pixels: np.ndarray, orientation: int = 1, icc: bytes | None = None) -> bytes:
    register_plugins()
    im = Image.fromarray(pixels)
    exif = im.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, format="HEIF", quality=95, exif=exif.tobytes(), **({"icc_profile": icc} if icc else {}))
    return buf.getvalue()


def test_heic_from_a_phone_is_read_upright(tmp_path, spn_weights):
    pixels = photo(32, 64)
    pixels[:8, :8] = 255  # a white corner, to see where the rotation puts it
    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes(_heic_bytes(pixels, orientation=6))  # rotate 90 degrees clockwise to view
    got = open_image(path)
    assert got.shape == (64, 32, 3)
    assert got[:8, -8:].mean() > 240 and got[-8:, :8].mean() < 240
    assert cli.main(["compress", str(path), "--model", str(spn_weights)]) == 0
    assert (tmp_path / "IMG_0001.cnet").is_file()


def test_heic_with_a_p3_profile_is_converted():
    flat = np.full((16, 16, 3), (200, 100, 50), np.uint8)
    icc = icc_profile(P3_PRIMARIES, 2.2, "Display P3 (test)")
    with Image.open(io.BytesIO(_heic_bytes(flat, icc=icc))) as im:
        got = to_rgb_array(im).reshape(-1, 3).mean(0)
    assert got[0] > 205 and got[2] < 45  # more saturated in sRGB, as in the PNG test


def test_jpeg_xl_and_avif_are_read(tmp_path):
    register_plugins()
    pixels = photo(24, 40)
    Image.fromarray(pixels).save(tmp_path / "a.jxl", lossless=True)
    np.testing.assert_array_equal(open_image(tmp_path / "a.jxl"), pixels)
    Image.fromarray(pixels).save(tmp_path / "a.avif", quality=95)
    assert np.abs(open_image(tmp_path / "a.avif").astype(int) - pixels).mean() < 8  # lossy, 4:2:0


def test_a_truncated_heic_is_one_clear_error(tmp_path):
    path = tmp_path / "cut.heic"
    path.write_bytes(_heic_bytes(photo(64, 64))[:300])
    with pytest.raises(ImageError, match="cut.heic: (unreadable or truncated|not an image)"):
        open_image(path)


def test_training_folders_find_phone_formats(tmp_path):
    for name in ("a.heic", "b.HEIF", "c.avif", "d.jxl", "e.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in find_images(tmp_path)] == ["a.heic", "b.HEIF", "c.avif", "d.jxl", "e.jpg"]


def test_a_fresh_process_reads_heic_and_jxl_without_setup(tmp_path):
    """Reading registers the plugins itself: nothing else in the process has to import them."""
    register_plugins()
    Image.fromarray(photo(16, 24)).save(tmp_path / "a.jxl", lossless=True)
    (tmp_path / "b.heic").write_bytes(_heic_bytes(photo(16, 24)))
    code = ("import sys; from compressnet.image import decode_image_bytes, open_image; "
            "print(open_image(sys.argv[1]).shape, decode_image_bytes(open(sys.argv[2], 'rb').read()).shape)")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.jxl"), str(tmp_path / "b.heic")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(16, 24, 3) (16, 24, 3)"


def test_the_api_takes_the_bytes_of_an_image_file(tmp_path):
    from compressnet.image import as_rgb_array

    pixels = photo(20, 30)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    for given in (data, bytearray(data), memoryview(data)):
        np.testing.assert_array_equal(as_rgb_array(given), pixels)
    with pytest.raises(ImageError, match="not an image"):
        as_rgb_array(b"definitely not an image")
