"""Exact decoder arithmetic (compressnet.models.arithmetic): sums that no kernel, band size or
thread count can change, and pixels within one level of the float32 decoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_weights, photo

from compressnet.codec import load
from compressnet.image import to_uint8
from compressnet.models import arithmetic
from compressnet.models.arithmetic import (
    ACT_FRACTION_BITS,
    ACT_MAGNITUDE_BITS,
    Exact,
    to_grid,
    weight_grid_exponents,
)

BOUND = 2.0**ACT_MAGNITUDE_BITS


def _conv(cin: int, cout: int, k: int, seed: int = 0) -> torch.nn.Conv2d:
    torch.manual_seed(seed)
    conv = torch.nn.Conv2d(cin, cout, k, padding=k // 2)
    with torch.no_grad():
        conv.weight.mul_(3.0)
        conv.bias.normal_(0, 2.0)
    return conv


def _grid_input(shape: tuple[int, ...], seed: int = 1, scale: float = 4.0) -> torch.Tensor:
    return to_grid(torch.randn(shape, generator=torch.Generator().manual_seed(seed),
                               dtype=torch.float64) * scale)


def test_weight_grids_are_the_finest_that_keep_sums_exact():
    conv = _conv(40, 6, 3)
    w, b = conv.weight.detach().double().numpy(), conv.bias.detach().double().numpy()
    exps = weight_grid_exponents(w, b)
    limit = 1 << 52
    shift = ACT_FRACTION_BITS + ACT_MAGNITUDE_BITS

    def worst_sum(o: int, s: int) -> int:
        w_int = np.abs(np.round(np.ldexp(w[o], s))).astype(np.int64).sum()
        return (int(w_int) << shift) + abs(int(np.round(np.ldexp(b[o], s + ACT_FRACTION_BITS))))

    for o, s in enumerate(exps):
        assert worst_sum(o, int(s)) < limit <= worst_sum(o, int(s) + 1)


def test_worst_case_inputs_sum_exactly():
    """Inputs at the clamp bound with the weights' signs: the largest sum the grid allows."""
    conv = _conv(64, 3, 3)
    exact = Exact(torch.nn.Sequential(conv))
    w_q, b_q = exact._convs[id(conv)]
    x = (torch.sign(w_q[0]) * BOUND)[None]  # (1, 64, 3, 3): the centre pixel sees every tap
    got = exact.conv(conv, x)[0, 0, 1, 1].item()
    s = int(weight_grid_exponents(conv.weight.detach().double().numpy(),
                                  conv.bias.detach().double().numpy())[0])
    w_int = np.round(np.ldexp(w_q[0].numpy(), s)).astype(np.int64)
    exact_sum = (int(np.abs(w_int).sum()) << (ACT_FRACTION_BITS + ACT_MAGNITUDE_BITS)) \
        + int(np.round(np.ldexp(b_q[0].item(), s + ACT_FRACTION_BITS)))
    expected = float(to_grid(torch.tensor([exact_sum / 2.0 ** (s + ACT_FRACTION_BITS)],
                                           dtype=torch.float64)))
    assert exact_sum < 2**53 and got == expected


@pytest.mark.parametrize("cin,cout,k", [(8, 16, 3), (12, 3, 7)])
def test_conv_is_independent_of_bands_threads_and_kernels(monkeypatch, cin, cout, k):
    conv = _conv(cin, cout, k)
    exact = Exact(torch.nn.Sequential(conv))
    x = _grid_input((2, cin, 37, 29))
    reference = exact.conv(conv, x)
    w_q, b_q = exact._convs[id(conv)]
    direct = to_grid(F.conv2d(x, w_q, b_q, padding=k // 2))  # another summation order
    torch.testing.assert_close(reference, direct, rtol=0, atol=0)
    monkeypatch.setattr(arithmetic, "_BAND_BYTES", 1)  # one row per band
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        torch.testing.assert_close(exact.conv(conv, x), reference, rtol=0, atol=0)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(reference, to_grid(reference.clone()))  # already on the grid
    assert (reference - conv(x.float()).double()).abs().max() < 1e-3


def test_norm_matches_float_and_ignores_channel_order():
    from compressnet.models.layers import ChannelNorm

    norm = ChannelNorm(24)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
        norm.bias.normal_()
    exact = Exact(torch.nn.Sequential(norm))
    x = _grid_input((1, 24, 9, 11), scale=20.0)
    out = exact.norm(norm, x.clone())  # norm works in place on its input
    assert torch.equal(out, to_grid(out.clone()))
    assert (out - norm(x.float()).double()).abs().max() < 1e-3
    perm = torch.randperm(24)  # the channel sums are exact, so their order cannot matter
    flipped = ChannelNorm(24)
    with torch.no_grad():
        flipped.weight.copy_(norm.weight[:, perm])
        flipped.bias.copy_(norm.bias[:, perm])
    torch.testing.assert_close(exact.norm(flipped, x[:, perm].clone()), out[:, perm], rtol=0, atol=0)


def test_clamp_bounds_activations():
    x = torch.tensor([1e9, -1e9, 0.3, 2.0**-20], dtype=torch.float64)
    out = to_grid(x.clone())
    assert out[0] == BOUND and out[1] == -BOUND and out[3] == 0
    assert out[2] * 2**ACT_FRACTION_BITS == round(0.3 * 2**ACT_FRACTION_BITS)


@pytest.mark.parametrize("arch", ["sae", "swwae", "sae-spn"])
def test_exact_decoder_is_within_a_level_of_float32(weights_dir, arch):
    codec = load(str(make_weights(weights_dir, arch, seed=7)))
    x = torch.from_numpy(photo(64, 80, seed=3)).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        y_hat, _, enc = codec.model.encode(x, codec.cfg.latent_channels)
        given = {lv: enc.switches[lv] for lv in codec.cfg.switch_levels} \
            if codec.cfg.transmits_switches else None
        float32 = to_uint8(codec.model.decode(y_hat, given).x_hat)
        exact = to_uint8(codec.model.decode(y_hat, given, Exact(codec.model.decoder)).x_hat)
    diff = np.abs(float32.astype(int) - exact.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99


@pytest.mark.parametrize("cin,cout,k,h,w", [(5, 7, 3, 13, 9), (4, 3, 7, 20, 11), (6, 8, 5, 5, 17),
                                            (6, 8, 5, 2, 3), (64, 16, 1, 3, 48)])
@pytest.mark.parametrize("band_bytes,small", [(1, 0), (700, 0), (1 << 20, 0), (1 << 20, 1 << 16)])
def test_tap_conv_equals_conv2d_on_integers(monkeypatch, cin, cout, k, h, w, band_bytes, small):
    """Integer inputs and weights: every formulation's sums are exact, so any difference is a
    bug in the slicing (bands one row high, bands that split the image unevenly, the
    one-call path for small inputs, rows not padded, im2col's bands)."""
    monkeypatch.setattr(arithmetic, "_BAND_BYTES", band_bytes)
    monkeypatch.setattr(arithmetic, "_SMALL_IM2COL", small)
    g = torch.Generator().manual_seed(cin * k + h)
    x = torch.randint(-1000, 1000, (2, cin, h, w), generator=g).double()
    weight = torch.randint(-50, 50, (cout, cin, k, k), generator=g).double()
    bias = torch.randint(-9, 9, (cout,), generator=g).double()
    assert torch.equal(arithmetic.tap_conv(x, weight, bias), F.conv2d(x, weight, bias, padding=k // 2))
    monkeypatch.setattr(arithmetic, "_IM2COL_BAND_BYTES", band_bytes)
    assert torch.equal(arithmetic.im2col_conv(x, weight, bias), F.conv2d(x, weight, bias, padding=k // 2))
    if h >= k:
        assert torch.equal(arithmetic.tap_conv(x, weight, bias, pad_rows=False),
                           F.conv2d(x, weight, bias, padding=(0, k // 2)))


def test_to_grid_rounds_half_to_even_like_torch_round():
    """The rounding constant's addition against the plain multiply-round-multiply, on ties,
    near-ties and both signs."""
    step = 2.0 ** -ACT_FRACTION_BITS
    base = torch.tensor([0.0, 1.0, 2.0, 3.0, -1.0, -2.0, 1000.0, -1023.0], dtype=torch.float64)
    x = torch.cat([base * step + step / 2, base * step - step / 2, base * step + step * 0.49999,
                   torch.randn(1000, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 300])
    expected = (x * 2.0 ** ACT_FRACTION_BITS).round().clamp(-BOUND / step, BOUND / step) * step
    assert torch.equal(to_grid(x.clone()), expected)
    assert torch.equal(to_grid(x.clone(), clamp=False), (x * 2.0 ** ACT_FRACTION_BITS).round() * step)
