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
convolutions. On one thread the default model's decoder network takes 6.7 s for a 768x512 image,
against 2.4 s in float32. Any number of threads may run them: 3.4 s on 2 threads.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

ACT_FRACTION_BITS = 18  # activations are multiples of 2^-18
ACT_MAGNITUDE_BITS = 10  # and at most 2^10 in magnitude
_SUM_BITS = 52  # one bit below float64's 53-bit significand, for margin
_MAX_WEIGHT_BITS = 40
_BAND_BYTES = 64 << 20  # scratch memory per convolution band
LEAKY_SLOPE = 0.2  # the networks' LeakyReLU, in both arithmetics


class Float32:
    """Plain PyTorch modules: what training differentiates and the encoder runs."""

    dtype = torch.float32
    keeps_logits = True  # training's switch loss and the cards' switch accuracy read them

    def conv(self, conv: nn.Conv2d, x: Tensor) -> Tensor:
        return conv(x)

    def norm(self, norm: nn.Module, x: Tensor) -> Tensor:
        return norm(x)

    def act(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, LEAKY_SLOPE)

    def add(self, a: Tensor, b: Tensor) -> Tensor:
        return a + b


FLOAT32 = Float32()


def to_grid(x: Tensor, clamp: bool = True) -> Tensor:
    """Round a fresh tensor, in place, to the activation grid (half to even), clamped to the
    magnitude bound."""
    x = x.mul_(2.0 ** ACT_FRACTION_BITS).round_()
    if clamp:
        bound = 2.0 ** (ACT_FRACTION_BITS + ACT_MAGNITUDE_BITS)
        x = x.clamp_(-bound, bound)
    return x.mul_(2.0 ** -ACT_FRACTION_BITS)


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

    def conv(self, conv: nn.Conv2d, x: Tensor) -> Tensor:
        """The exact convolution, in bands of rows (bounded scratch memory; exact sums make the
        result independent of the banding), rounded to the grid."""
        weight, bias = self._convs[id(conv)]
        cout, cin, k, _ = weight.shape
        pad = k // 2
        batch, _, height, width = x.shape
        # im2col (F.conv2d in float64) costs cin*k*k values per pixel; large kernels into few
        # channels (the 7x7 to RGB) are cheaper as one matmul per band and k*k shifted sums.
        by_taps = cout < cin and k > 3
        per_row = 8 * (width + 2 * pad) * k * k * (cout if by_taps else cin)
        rows = max(1, _BAND_BYTES // per_row)
        out = torch.empty(batch, cout, height, width, dtype=torch.float64)
        if not by_taps:
            xp = F.pad(x, (0, 0, pad, pad))
            for r0 in range(0, height, rows):
                r1 = min(height, r0 + rows)
                out[:, :, r0:r1] = F.conv2d(xp[:, :, r0:r1 + 2 * pad], weight, bias, padding=(0, pad))
            return to_grid(out)
        xp = F.pad(x, (pad, pad, pad, pad))
        taps = weight.permute(2, 3, 0, 1).reshape(k * k * cout, cin)
        for r0 in range(0, height, rows):
            r1 = min(height, r0 + rows)
            band = xp[:, :, r0:r1 + 2 * pad]
            for i in range(batch):
                z = (taps @ band[i].reshape(cin, -1)).view(k, k, cout, r1 - r0 + 2 * pad, -1)
                acc = bias.view(cout, 1, 1).repeat(1, r1 - r0, width)
                for dy in range(k):
                    for dx in range(k):
                        acc += z[dy, dx, :, dy:dy + r1 - r0, dx:dx + width]
                out[i, :, r0:r1] = acc
        return to_grid(out)

    def norm(self, norm: nn.Module, x: Tensor) -> Tensor:
        """ChannelNorm with sums of grid values (exact) and one rounding per operation; works in
        place on ``x`` (always a fresh convolution output)."""
        channels = x.shape[1]
        centred = x.sub_(to_grid(x.sum(1, keepdim=True).div_(channels)))
        var = to_grid(centred * centred, clamp=False).sum(1, keepdim=True).div_(channels)
        scaled = centred.div_(var.add_(norm.eps).sqrt_())
        return to_grid(scaled.mul_(norm.weight.double()).add_(norm.bias.double()))

    # Decoding only: the decoder never reads an activation's or a sum's input again, so these
    # work in place, as norm does (a decode's peak is a few full-resolution float64 maps).
    def act(self, x: Tensor) -> Tensor:
        return to_grid(F.leaky_relu_(x, LEAKY_SLOPE))

    def add(self, a: Tensor, b: Tensor) -> Tensor:
        return to_grid(a.add_(b))
