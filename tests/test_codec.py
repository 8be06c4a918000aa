"""Round trips, rate accounting, determinism and sizes/modes of the codec."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from conftest import photo
from PIL import Image

from compressnet import bitstream
from compressnet.codec import CodecError, load
from compressnet.metrics import psnr


def test_round_trip_equals_forward_pass(tiny_codec):
    img = photo(96, 128)
    for q in tiny_codec.qualities:
        data = tiny_codec.compress(img, quality=q)
        decoded = tiny_codec.decompress_array(data)
        assert decoded.shape == img.shape
        np.testing.assert_array_equal(decoded, tiny_codec.reconstruct(img, quality=q))


def test_higher_quality_costs_more_bytes(tiny_codec):
    img = photo(128, 128)
    sizes = [len(tiny_codec.compress(img, quality=q)) for q in tiny_codec.qualities]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_real_bytes_match_estimated_bits(tiny_codec):
    img = photo(512, 768, seed=3)
    result = tiny_codec.encode(img, quality=max(tiny_codec.qualities))
    header_bytes = len(result.data) - len(bitstream.unpack(result.data)[1])
    payload_bits = (len(result.data) - header_bytes) * 8
    assert result.estimated_bits > 1000
    assert payload_bits <= result.estimated_bits * 1.01
    assert payload_bits >= result.estimated_bits * 0.99


def test_header_is_compact(tiny_codec):
    data = tiny_codec.compress(photo(512, 768), quality=1)
    header, payload = bitstream.unpack(data)
    assert len(data) - len(payload) <= 15
    assert (header.height, header.width, header.quality) == (512, 768, 1)


def test_same_bytes_and_pixels_with_one_and_two_threads(spn_weights):
    img = photo(160, 224, seed=5)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            codec = load(str(spn_weights))
            data = codec.compress(img, quality=2)
            results.append((data, codec.decompress_array(data)))
    finally:
        torch.set_num_threads(before)
    for data, pixels in results[1:]:
        assert data == results[0][0]
        np.testing.assert_array_equal(pixels, results[0][1])


@pytest.mark.parametrize("h,w", [(1, 1), (17, 33), (512, 768), (768, 512), (16, 16), (5, 300)])
def test_any_size(spn_weights, h, w):
    codec = load(str(spn_weights))
    img = photo(h, w)
    decoded = codec.decompress_array(codec.compress(img, quality=1))
    assert decoded.shape == (h, w, 3)


def _modes():
    rgb = Image.fromarray(photo(40, 56))
    rgba = rgb.convert("RGBA")
    alpha = np.array(rgba)
    alpha[..., 3] = 128
    grey16 = Image.fromarray(np.array(rgb.convert("L")).astype(np.uint16) * 257)
    exif_rotated = rgb.copy()
    exif = exif_rotated.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    buf = __import__("io").BytesIO()
    exif_rotated.save(buf, format="JPEG", exif=exif)
    buf.seek(0)
    return {
        "L": (rgb.convert("L"), (40, 56)),
        "P": (rgb.convert("P"), (40, 56)),
        "RGBA": (Image.fromarray(alpha), (40, 56)),
        "CMYK": (rgb.convert("CMYK"), (40, 56)),
        "I;16": (grey16, (40, 56)),
        "1": (rgb.convert("1"), (40, 56)),
        "exif": (Image.open(buf), (56, 40)),
    }


@pytest.mark.parametrize("mode", list(_modes()))
def test_colour_modes_become_rgb(spn_weights, mode):
    image, (h, w) = _modes()[mode]
    codec = load(str(spn_weights))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        decoded = codec.decompress(codec.compress(image, quality=1))
    assert decoded.mode == "RGB" and decoded.size == (w, h)
    dropped = any("alpha" in str(c.message) for c in caught)
    assert dropped == (mode == "RGBA")


def test_numpy_float_and_tensor_inputs_agree(spn_weights):
    codec = load(str(spn_weights))
    img = photo(32, 48)
    as_float = img.astype(np.float32) / 255.0
    as_tensor = torch.from_numpy(img).permute(2, 0, 1).float() / 255.0
    ref = codec.compress(img, quality=1)
    assert codec.compress(as_float, quality=1) == ref
    assert codec.compress(as_tensor, quality=1) == ref
    assert codec.compress(Image.fromarray(img), quality=1) == ref


def test_target_bpp_picks_highest_fitting_quality(spn_weights):
    codec = load(str(spn_weights))
    img = photo(128, 192)
    rates = {q: codec.encode(img, q).bpp for q in codec.qualities}
    target = (rates[1] + rates[2]) / 2
    assert codec.encode_to_target(img, target).quality == 1
    assert codec.encode_to_target(img, rates[2]).quality == 2
    with pytest.raises(CodecError, match="lowest quality"):
        codec.encode_to_target(img, rates[1] / 2)


def test_target_bpp_spends_what_is_left_on_a_finer_colour_layer(spn_weights):
    """Under a target, the quality's file may leave room for smaller colour blocks (the block
    size travels in the file): the finest that fits is sent, refined or not."""
    codec = load(str(spn_weights))
    img = photo(128, 192, seed=2)
    top = max(codec.qualities)
    analysis = codec.analyse(img)
    paired = codec.colour_block(top)
    plain, finer = codec.pack(analysis, top), codec.pack(analysis, top, block=paired - 8)
    assert plain.bpp < finer.bpp < codec.pack(analysis, top, block=paired - 16).bpp \
        if paired > 16 else plain.bpp < finer.bpp
    assert codec.encode_to_target(img, finer.bpp).data == finer.data
    assert codec.encode_to_target(img, (plain.bpp + finer.bpp) / 2).data == plain.data
    assert psnr(img, codec.decompress_array(finer.data)) > psnr(img, codec.decompress_array(plain.data))
    refined = codec.encode_to_target(img, finer.bpp, refine=2)
    # within the finer file's bytes, far above the plain one's: the search kept the finer layer
    assert refined.quality == top and len(plain.data) < len(refined.data) <= len(finer.data)


def test_out_of_range_quality_is_refused(spn_weights):
    codec = load(str(spn_weights))
    with pytest.raises(CodecError, match="out of range"):
        codec.compress(photo(16, 16), quality=9)


def test_other_weights_are_refused(weights_dir, spn_weights):
    from conftest import make_weights

    other = load(str(make_weights(weights_dir, "sae-spn", seed=7)))
    data = load(str(spn_weights)).compress(photo(32, 32), quality=1)
    with pytest.raises(CodecError, match="other weights"):
        other.decompress(data)


def test_swwae_sends_switches_and_costs_more(weights_dir):
    from conftest import make_weights

    img = photo(64, 64)
    swwae = load(str(make_weights(weights_dir, "swwae")))
    sae = load(str(make_weights(weights_dir, "sae")))
    assert len(swwae.compress(img, quality=1)) > 4 * len(sae.compress(img, quality=1))
