"""The decoder's arithmetic: float32 for training, exact fixed point for portable decoding.

The decoder's forward is written once against the small interface of :class:`Float32`
(``conv``, ``norm``, ``act``, ``add``); the codec swaps in :class:`Exact` for files of format
version 3 and later.

Why: float32 convolutions sum in an order that depends on the CPU's vector width, the library
(oneDNN, MKL) and the thread count, and a last-bit difference can flip a rounded pixel or a
predicted switch. Measured with the bundled default on kodim23: 71 of 1,179,648 decoded values
moved by one level between oneDNN's AVX2 and SSE4.1 kernels (``ONEDNN_MAX_CPU_ISA=SSE41``).

How :class:`Exact` makes every machine agree:

- activations live on the grid 2^-18 and are clamped to |x| <= 2^10 (the bundled models stay
  under 64);
- each conv's weights are rounded, per output channel, to the finest power-of-two grid for which
  sum(|w|) * 2^10 + |bias| stays below 2^52 in grid steps, and the bias to the product grid;
- so every product and every partial sum of a convolution is an integer number of steps below
  2^53: exact in float64 whatever the summation order, the kernel or the thread count;
- everything else is one IEEE-754 operation per element (+ - * / sqrt, correctly rounded on any
  machine), then rounding back to the grid; reductions sum grid values, so they are exact too.

The grid trades activation precision against weight precision (their bits share float64's 53):
2^-18 and 2^10 keep the decoder closest to float32 (on kodim23, 973 of 1,179,648 values differ
by one level from the float32 decoder, against 4,221 with 2^-16 and 2^12). The price: float64
convolutions, whose cost is memory traffic more than arithmetic, hence :func:`tap_conv` (no
im2col; cache-sized bands finished while in cache) and :func:`to_grid`'s two-pass rounding.
Any number of threads may run them. Where a decode's time goes and the floor the float64
arithmetic sets: ``benchmarks/decode_profile.py`` and docs/evaluation.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

ACT_FRACTION_BITS = 18  # activations are multiples of 2^-18
ACT_MAGNITUDE_BITS = 10  # and at most 2^10 in magnitude
_SUM_BITS = 52  # one bit below float64's 53-bit significand, for margin
_MAX_WEIGHT_BITS = 40
_BAND_BYTES = 1 << 20  # a convolution band's input and output: small enough to stay in cache
_IM2COL_BAND_BYTES = 8 << 20  # im2col values per band of im2col_conv
_SMALL_IM2COL = 1 << 16  # values: below this, F.conv2d's one call beats a call per tap
LEAKY_SLOPE = 0.2  # the networks' LeakyReLU, in both arithmetics


class Float32:
    """Plain PyTorch modules: what training differentiates and the encoder runs."""

    dtype = torch.float32
    keeps_logits = True  # training's switch loss and the cards' switch accuracy read them

    def conv(self, conv: nn.Conv2d, x: Tensor, norm: nn.Module | None = None,
             act: bool = False) -> Tensor:
        """``conv``, then ``norm`` if given, then the activation if ``act``: one call, so that
        the exact arithmetic can finish each band of the output while it is in cache."""
        x = conv(x)
        if norm is not None:
            x = self.norm(norm, x)
        return self.act(x) if act else x

    def norm(self, norm: nn.Module, x: Tensor) -> Tensor:
        return norm(x)

    def act(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, LEAKY_SLOPE)

    def add(self, a: Tensor, b: Tensor) -> Tensor:
        return a + b


FLOAT32 = Float32()


# Adding 1.5 * 2^(52 - 18) to a float64 below 2^33 in magnitude gives a sum whose last bit is
# worth 2^-18, so the addition itself rounds to the grid (to nearest, ties to even, as
# torch.round does) and subtracting it again is exact: two passes over memory instead of a
# multiply, a round and a multiply back. Clamping first equals clamping after (the bounds are
# on the grid and rounding is monotonic).
_ROUNDER = 1.5 * 2.0 ** (52 - ACT_FRACTION_BITS)
_BOUND = 2.0 ** ACT_MAGNITUDE_BITS


def to_grid(x: Tensor, clamp: bool = True) -> Tensor:
    """Round a fresh tensor, in place, to the activation grid (half to even), clamped to the
    magnitude bound (unclamped: any magnitude, the slower way)."""
    if clamp:
        return x.clamp_(-_BOUND, _BOUND).add_(_ROUNDER).sub_(_ROUNDER)
    return x.mul_(2.0 ** ACT_FRACTION_BITS).round_().mul_(2.0 ** -ACT_FRACTION_BITS)


def exact_conv(x: Tensor, weight: Tensor, bias: Tensor,
               epilogue: Callable[[Tensor], Tensor] | None = None, pad_rows: bool = True) -> Tensor:
    """The exact decoder's float64 convolution, computed the faster way for its shape:
    :func:`im2col_conv` where the output is at least 4x wider than the input, else
    :func:`tap_conv` (arguments as there). Either gives the same values when the sums are
    exact; ``benchmarks/decode_profile.py`` times both on every shape a decode runs."""
    if pad_rows and weight.shape[0] >= 4 * weight.shape[1]:
        return im2col_conv(x, weight, bias, epilogue)
    return tap_conv(x, weight, bias, epilogue, pad_rows)


def tap_conv(x: Tensor, weight: Tensor, bias: Tensor,
             epilogue: Callable[[Tensor], Tensor] | None = None, pad_rows: bool = True) -> Tensor:
    """A stride-1 float64 convolution, zero-padded to the input's size ("same"; with
    ``pad_rows=False`` padded in width only, so ``k - 1`` rows shorter), as one matrix product
    per kernel tap, in bands of rows.

    Why: in float64 the cost is memory traffic, not arithmetic (oneDNN has no float64 kernels;
    ``F.conv2d``'s im2col writes cin*k*k values per pixel before its matrix product). Each band
    of input rows is copied once, zero-padded, into a scratch buffer; flattened row after row,
    every tap's input is then a plain slice of it, so each tap is one ``addmm`` into the band's
    output, which is computed on the padded width and its padding columns dropped. Bands of
    about 1 MiB keep both in cache across the k*k products; ``epilogue`` (in place,
    elementwise) runs on each band's output while it is there. Timings:
    benchmarks/decode_profile.py. The result depends on neither the tap order nor the banding
    only because the caller's sums are exact.
    """
    cout, cin, k, _ = weight.shape
    pad = k // 2
    row_pad = pad if pad_rows else 0
    batch, _, height, width = x.shape
    out_height = height + 2 * row_pad - 2 * pad
    if x[0].numel() * k * k <= _SMALL_IM2COL:  # a few rows (the context network's): one call
        out = F.conv2d(x, weight, bias, padding=(row_pad, pad))
        if epilogue is not None:
            for i in range(batch):
                out[i] = epilogue(out[i])
        return out
    padded_width = width + 2 * pad
    rows = max(1, _BAND_BYTES // (8 * padded_width * (cin + cout)))
    taps = weight.permute(2, 3, 0, 1).contiguous()  # (k, k, cout, cin)
    out = torch.empty(batch, cout, max(0, out_height), width, dtype=torch.float64)
    # one more row than a band reads: the last tap's slice runs 2 * pad values past it (into
    # outputs of the padding columns, which are dropped)
    scratch = x.new_zeros(cin, min(rows, max(out_height, 0)) + 2 * pad + 1, padded_width)
    for i in range(batch):
        for r0 in range(0, out_height, rows):
            r1 = min(out_height, r0 + rows)
            span = r1 - r0 + 2 * pad  # input rows this band reads, in padded coordinates
            lo, hi = max(0, r0 - row_pad), min(height, r0 - row_pad + span)
            first = lo - (r0 - row_pad)
            scratch[:, :first].zero_()
            scratch[:, first:first + hi - lo, pad:pad + width] = x[i, :, lo:hi]
            scratch[:, first + hi - lo:span].zero_()
            flat = scratch[:, :span + 1].reshape(cin, -1)
            length = (r1 - r0) * padded_width
            acc = bias[:, None].expand(cout, length).clone()
            for dy in range(k):
                for dx in range(k):
                    start = dy * padded_width + dx
                    acc.addmm_(taps[dy, dx], flat[:, start:start + length])
            if epilogue is not None:
                acc = epilogue(acc)
            out[i, :, r0:r1] = acc.view(cout, r1 - r0, padded_width)[:, :, :width]
    return out


def im2col_conv(x: Tensor, weight: Tensor, bias: Tensor,
                epilogue: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """The "same" convolution of :func:`tap_conv` through ``F.conv2d`` (im2col), in bands of
    about 8 MiB of im2col values, ``epilogue`` run on each band (channels first). Faster than
    taps where the output is much wider than the input (the pixel-shuffle convolutions, 4x
    their input): there the taps' k*k passes over the output cost more than im2col's copy."""
    cout, cin, k, _ = weight.shape
    pad = k // 2
    batch, _, height, width = x.shape
    rows = max(1, _IM2COL_BAND_BYTES // (8 * width * cin * k * k))
    xp = F.pad(x, (0, 0, pad, pad))
    out = torch.empty(batch, cout, height, width, dtype=torch.float64)
    for r0 in range(0, height, rows):
        r1 = min(height, r0 + rows)
        band = F.conv2d(xp[:, :, r0:r1 + 2 * pad], weight, bias, padding=(0, pad))
        for i in range(batch):
            out[i, :, r0:r1] = band[i] if epilogue is None else epilogue(band[i])
    return out


def weight_grid_exponents(weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Per output channel, the exponent ``s`` of the weight grid 2^-s that keeps every
    convolution sum exact (see the module docstring); computed with exact integer sums, so
    every machine picks the same grid."""
    w = weight.astype(np.float64).reshape(weight.shape[0], -1)
    b = bias.astype(np.float64)
    limit = 1 << _SUM_BITS
    exps = np.empty(len(w), dtype=np.int64)
    for o in range(len(w)):
        l1 = math.fsum(np.abs(w[o]).tolist()) + abs(float(b[o])) * 2.0 ** -ACT_MAGNITUDE_BITS
        s = _MAX_WEIGHT_BITS if l1 == 0 else min(
            _MAX_WEIGHT_BITS, _SUM_BITS - ACT_FRACTION_BITS - ACT_MAGNITUDE_BITS
            - math.frexp(l1)[1])
        while True:  # the estimate is close; confirm it with exact integers
            w_int = np.abs(np.round(np.ldexp(w[o], s))).astype(np.int64)
            b_int = abs(int(np.round(np.ldexp(b[o], s + ACT_FRACTION_BITS))))
            if (int(w_int.sum()) << (ACT_FRACTION_BITS + ACT_MAGNITUDE_BITS)) + b_int < limit:
                break
            s -= 1
        exps[o] = s
    return exps


def _exact_norm(norm: nn.Module, x: Tensor, dim: int) -> Tensor:
    """ChannelNorm across dimension ``dim`` with sums of grid values (exact) and one rounding
    per operation; in place on ``x`` (always a fresh convolution output)."""
    channels = x.shape[dim]
    shape = [1] * x.dim()
    shape[dim] = channels
    centred = x.sub_(to_grid(x.sum(dim, keepdim=True).div_(channels)))
    var = to_grid(centred * centred, clamp=False).sum(dim, keepdim=True).div_(channels)
    scaled = centred.div_(var.add_(norm.eps).sqrt_())
    return to_grid(scaled.mul_(norm.weight.double().view(shape)).add_(norm.bias.double().view(shape)))


class Exact(Float32):
    """Fixed-point decoding carried in float64; see the module docstring. Built once per
    decoder from its (fp16-stored) weights."""

    dtype = torch.float64
    keeps_logits = False  # decoding needs pixels only; a level-0 map is as large as the image

    def __init__(self, decoder: nn.Module) -> None:
        self._convs: dict[int, tuple[Tensor, Tensor]] = {}
        for module in decoder.modules():
            if isinstance(module, nn.Conv2d):
                w = module.weight.detach().cpu().double().numpy()
                b = module.bias.detach().cpu().double().numpy()
                s = weight_grid_exponents(w, b)
                w_q = np.ldexp(np.round(np.ldexp(w, s[:, None, None, None])), -s[:, None, None, None])
                b_q = np.ldexp(np.round(np.ldexp(b, s + ACT_FRACTION_BITS)), -(s + ACT_FRACTION_BITS))
                self._convs[id(module)] = (torch.from_numpy(w_q), torch.from_numpy(b_q))

    def conv(self, conv: nn.Conv2d, x: Tensor, norm: nn.Module | None = None,
             act: bool = False, pad_rows: bool = True) -> Tensor:
        """The exact convolution, rounded to the grid, then ``norm`` and the activation, band
        by band (both act on each pixel alone, so banding cannot change them). Exact sums make
        the result independent of how it is computed, so it is computed the cheapest way found
        (see :func:`tap_conv`). ``pad_rows=False``: not padded in height, ``k - 1`` rows
        shorter (the context network's rows)."""
        weight, bias = self._convs[id(conv)]

        def finish(band: Tensor) -> Tensor:  # (channels, ...)
            band = to_grid(band)
            if norm is not None:
                band = _exact_norm(norm, band, 0)
            return self.act(band) if act else band

        return exact_conv(x, weight, bias, finish, pad_rows)

    def norm(self, norm: nn.Module, x: Tensor) -> Tensor:
        """ChannelNorm in exact arithmetic (:func:`_exact_norm`), in place on ``x``."""
        return _exact_norm(norm, x, 1)

    # Decoding only: the decoder never reads an activation's or a sum's input again, so these
    # work in place, as norm does (a decode's peak is a few full-resolution float64 maps).
    def act(self, x: Tensor) -> Tensor:
        return to_grid(F.leaky_relu_(x, LEAKY_SLOPE))

    def add(self, a: Tensor, b: Tensor) -> Tensor:
        return to_grid(a.add_(b))
