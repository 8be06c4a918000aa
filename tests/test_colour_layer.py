"""The colour layer (compressnet.colour_layer): coding, exact correction, and what it buys."""

from __future__ import annotations

from importlib import resources

import constriction
import numpy as np
import pytest
from conftest import photo

import compressnet
from compressnet import bitstream
from compressnet import colour_layer as cl
from compressnet.image import open_image
from compressnet.metrics import psnr


def round_trip(layer: cl.ColourLayer, height: int, width: int) -> cl.ColourLayer:
    enc = constriction.stream.queue.RangeEncoder()
    cl.encode_into(enc, layer)
    return cl.decode_from(constriction.stream.queue.RangeDecoder(enc.get_compressed()), height, width)


@pytest.mark.parametrize("shape,block,step", [((1, 1), 8, 1), ((17, 300), 32, 8),
                                              ((130, 97), 48, 3), ((64, 64), 256, 16)])
def test_layers_code_losslessly(shape, block, step):
    rng = np.random.default_rng(sum(shape))
    arr = rng.integers(0, 256, shape + (3,), dtype=np.uint8)
    arr[: shape[0] // 2] = 255  # saturated blocks: the largest means and residuals
    layer = cl.analyse(arr, block, step)
    assert layer.means.shape == cl.grid_shape(*shape, block) + (3,)
    assert layer.means.min() >= 0 and layer.means.max() <= cl.max_mean(step)
    back = round_trip(layer, *shape)
    assert (back.block, back.step) == (block, step)
    np.testing.assert_array_equal(back.means, layer.means)


def _med_reference(residuals: np.ndarray, start: int) -> np.ndarray:
    """Value by value, as JPEG-LS states it: the median edge detector's prediction plus the
    residual (the first row from the left, the first column from above)."""
    comp = np.zeros_like(residuals)
    for i in range(residuals.shape[0]):
        for j in range(residuals.shape[1]):
            if i == 0:
                pred = comp[0, j - 1] if j else start
            elif j == 0:
                pred = comp[i - 1, 0]
            else:
                left, above, corner = comp[i, j - 1], comp[i - 1, j], comp[i - 1, j - 1]
                pred = (min(left, above) if corner >= max(left, above) else
                        max(left, above) if corner <= min(left, above) else left + above - corner)
            comp[i, j] = residuals[i, j] + pred
    return comp


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (7, 1), (5, 8), (13, 6), (31, 31)])
def test_reconstruction_by_anti_diagonals_is_the_med_value_by_value(shape):
    rng = np.random.default_rng(shape[0] * 100 + shape[1])
    comp = np.cumsum(rng.integers(-6, 7, shape), axis=1) + rng.integers(-20, 21, shape)
    residuals = cl._residuals(comp, 11)
    np.testing.assert_array_equal(_med_reference(residuals, 11), comp)
    np.testing.assert_array_equal(cl._reconstruct(residuals, 11), comp)


def test_means_are_rounded_block_means():
    arr = np.zeros((40, 24, 3), dtype=np.uint8)
    arr[:32, :16] = (10, 100, 250)
    arr[32:, 16:] = 7  # a partial corner block (8 x 8 pixels) averages its own pixels only
    layer = cl.analyse(arr, 16, 4)
    np.testing.assert_array_equal(layer.means[0, 0], [3, 25, 63])  # 10/4, 100/4, 250/4, half up
    np.testing.assert_array_equal(layer.means[2, 1], [2, 2, 2])  # 7/4 = 1.75
    np.testing.assert_array_equal(layer.means[0, 1], [0, 0, 0])


def test_correction_moves_block_means_to_the_layer():
    """A decoded image with a colour cast gets the original's block colours back."""
    original = photo(96, 128, seed=2)
    cast = np.clip(original.astype(int) * [0.7, 1.0, 1.2] + [0, 20, -10], 0, 255).astype(np.uint8)
    layer = cl.analyse(original, 32, 1)
    fixed = cl.apply(cast, layer)
    assert psnr(original, fixed) > psnr(original, cast) + 6
    mean_error = fixed.reshape(-1, 3).mean(0) - original.reshape(-1, 3).mean(0)
    assert np.abs(mean_error).max() < 1.5, mean_error


def test_correction_is_integer_arithmetic_and_leaves_a_match_alone():
    image = photo(50, 70, seed=5)
    layer = cl.analyse(image, 16, 1)
    assert np.abs(cl.apply(image, layer).astype(int) - image).max() <= 1  # only rounding of means
    big = np.full((600, 40, 3), 90, dtype=np.uint8)  # more rows than one band
    out = cl.apply(big, cl.ColourLayer(24, 5, np.full((25, 2, 3), 20)))
    assert out.dtype == np.uint8 and (out == 100).all()


def test_residual_tables_are_exact_distributions():
    for k in range(len(cl.RATIOS)):
        for radius in (2, 64, 510):
            table = cl.geometric_table(k, radius)
            assert table.sum() == 1 << 16 and table.min() >= 1 and table.size == 2 * radius + 1
            np.testing.assert_array_equal(table[:radius], table[radius + 1:][::-1])


def test_bad_parameters_are_refused():
    arr = np.zeros((8, 8, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="block size"):
        cl.analyse(arr, 12, 8)
    with pytest.raises(ValueError, match="step"):
        cl.analyse(arr, 16, 0)


def test_the_default_model_writes_the_layer_and_gains_from_it():
    """On a photo the layer must pay for itself: more PSNR per byte than a quality step up."""
    codec = compressnet.load()
    crop = open_image(str(resources.files("compressnet") / "samples" / "kodim23.png"))[:256, :384]
    q = codec.default_quality
    with_layer, without = codec.compress(crop, quality=q), codec.compress(crop, quality=q, colour=False)
    assert bitstream.unpack(with_layer)[0].version == 9 and bitstream.unpack(without)[0].version == 8
    base = psnr(crop, codec.decompress_array(without))
    gain = psnr(crop, codec.decompress_array(with_layer)) - base
    up = codec.compress(crop, quality=q + 1, colour=False)
    step_gain = psnr(crop, codec.decompress_array(up)) - base
    assert gain > 0.3
    assert gain / (len(with_layer) - len(without)) > 2 * step_gain / (len(up) - len(without))


def test_refinement_scores_the_same_correction_the_decoder_applies():
    """The differentiable stand-in that refinement optimises through matches the integer
    correction up to the final rounding."""
    import torch

    original, decoded = photo(70, 90, seed=7), photo(70, 90, seed=8) // 2 + 40
    layer = cl.analyse(original, 32, 8)
    correct = cl.differentiable_correction(layer, 70, 90)
    x = torch.from_numpy(decoded).permute(2, 0, 1)[None].float().requires_grad_(True) / 255
    approx = correct(x)[0].permute(1, 2, 0).detach().numpy() * 255
    assert np.abs(np.clip(approx, 0, 255) - cl.apply(decoded, layer)).max() <= 0.51


def _guided_reference(decoded: np.ndarray, layer: cl.ColourLayer) -> np.ndarray:
    """Format 9's correction pixel by pixel, with Python integers: each of the four block
    nodes around a pixel weighted by its bilinear weight times K / (K + d^2)."""
    h, w, _ = decoded.shape
    b = layer.block
    sums, n = cl._block_sums(decoded, b)
    grid = (2 * ((layer.means * layer.step * n - sums) << 8) + n) // (2 * n)
    means = (2 * sums + n) // (2 * n)
    ri, rw = cl._interpolation(h, b, grid.shape[0])
    ci, cw = cl._interpolation(w, b, grid.shape[1])
    out = np.empty_like(decoded)
    for y in range(h):
        for x in range(w):
            px = [int(v) for v in decoded[y, x]]
            num, den = [0, 0, 0], 0
            for a, wy in ((0, 2 * b - int(rw[y])), (1, int(rw[y]))):
                for c, wx in ((0, 2 * b - int(cw[x])), (1, int(cw[x]))):
                    node = (int(ri[y, a]), int(ci[x, c]))
                    d2 = sum((px[k] - int(means[node][k])) ** 2 for k in range(3))
                    weight = wy * wx * ((cl.GUIDE_K << 16) // (cl.GUIDE_K + d2))
                    den += weight
                    for k in range(3):
                        num[k] += weight * int(grid[node][k])
            for k in range(3):
                out[y, x, k] = min(255, max(0, px[k] + (2 * num[k] + den * 256) // (2 * den * 256)))
    return out


@pytest.mark.parametrize("shape,block", [((40, 56), 16), ((37, 29), 8), ((20, 70), 24)])
def test_guided_correction_matches_a_pixel_by_pixel_reference(shape, block, monkeypatch):
    monkeypatch.setattr(cl, "_BAND_ROWS", 7)  # bands of rows give the same pixels
    original, decoded = photo(*shape, seed=3), photo(*shape, seed=4) // 2 + 60
    layer = cl.analyse(original, block, 8)
    np.testing.assert_array_equal(cl.apply(decoded, layer, guided=True), _guided_reference(decoded, layer))


def test_guided_correction_keeps_a_blocks_colour_on_its_side_of_an_edge():
    """Two flat halves meeting inside a block row: bilinear upsampling spreads each half's
    correction across the edge, the guided one keeps it on its own side."""
    h, w, b = 64, 128, 32
    original = np.zeros((h, w, 3), np.uint8)
    original[:, : w // 2] = (40, 160, 40)  # green | orange, the edge on a block boundary
    original[:, w // 2:] = (230, 110, 30)
    decoded = np.full((h, w, 3), 128, np.uint8)  # the network's shapes right, its colours grey
    decoded[:, : w // 2] = (90, 120, 90)
    decoded[:, w // 2:] = (170, 120, 90)
    layer = cl.analyse(original, b, 8)
    errors = {}
    for guided in (False, True):
        out = cl.apply(decoded, layer, guided=guided).astype(int)
        edge = slice(w // 2 - b // 2, w // 2 + b // 2)  # the columns between two block centres
        errors[guided] = np.abs(out[:, edge] - original[:, edge]).mean()
    assert errors[True] < errors[False] / 4


def test_guided_format_9_and_bilinear_format_7_decode_the_same_payload():
    codec = compressnet.load()
    crop = open_image(str(resources.files("compressnet") / "samples" / "kodim23.png"))[:128, :192]
    new = codec.compress(crop, quality=2)
    header, payload = bitstream.unpack(new)
    old = bitstream.pack(header._replace(version=7), payload)
    guided, bilinear = codec.decompress_array(new), codec.decompress_array(old)
    assert header.version == 9 and not np.array_equal(guided, bilinear)
    assert np.abs(guided.astype(int) - bilinear).max() < 40  # the same image, colours placed anew
    np.testing.assert_array_equal(codec.reconstruct(crop, quality=2), guided)
