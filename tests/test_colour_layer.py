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
    assert bitstream.unpack(with_layer)[0].version == 7 and bitstream.unpack(without)[0].version == 8
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
