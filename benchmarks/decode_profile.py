"""Where an exact decode spends its time, and the least time its arithmetic can take.

Three parts, one run (issue #26's "profile that shows why"):

1. The decode of one photo split into its stages (cProfile's cumulative times): range decoding
   with the context network, the decoder network, the colour layer.
2. Every convolution shape the exact decoder runs on that photo, timed three ways on random
   grid values: ``F.conv2d`` in float64 (im2col, unbanded; 0.9.0 ran it in bands
   of 64 MiB, and the 7x7 to RGB as shifted sums of per-tap products),
   :func:`compressnet.models.arithmetic.tap_conv` (one matrix product per tap on cached bands),
   and :func:`~compressnet.models.arithmetic.exact_conv` (what the decoder runs: taps, or
   im2col in 8 MiB bands for the 4x-widening convolutions), with its rate in multiply-adds
   per second.
3. The floor: the decoder's multiply-adds on this photo divided by this machine's float64
   matrix-product rate (a large square ``mm``, the best case for the BLAS): how fast the exact
   arithmetic's convolutions could be if they ran at the BLAS's peak.

    python benchmarks/decode_profile.py [--image kodim23.png] [--quality 3] [--threads 2]

Run it on a quiet machine (pause any training: two busy processes on 2 cores make every
number noise).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F

import compressnet
from compressnet.image import open_image
from compressnet.models import arithmetic
from compressnet.models.arithmetic import to_grid

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak" / "kodim23.png"
STAGES = {  # stage: (file, function) of its outermost call
    "range decoding + context network": ("compressnet/entropy/coder.py", "decode"),
    "decoder network": ("compressnet/models/tiling.py", "decode_tiles"),
    "colour layer": ("compressnet/colour_layer.py", "apply"),
}


def best_of(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def conv_shapes(codec, data: bytes) -> Counter:
    """(cin, cout, k, height, width, pad_rows) of every exact convolution a decode runs."""
    seen: Counter = Counter()
    original = arithmetic.Exact.conv

    def recording(self, conv, x, *args, **kwargs):
        pad_rows = kwargs.get("pad_rows", True)
        seen[(conv.in_channels, conv.out_channels, conv.kernel_size[0], *x.shape[-2:], pad_rows)] += 1
        return original(self, conv, x, *args, **kwargs)

    arithmetic.Exact.conv = recording
    try:
        codec.decompress_array(data)
    finally:
        arithmetic.Exact.conv = original
    return seen


def time_shape(cin: int, cout: int, k: int, height: int, width: int, pad_rows: bool,
               repeats: int) -> tuple[float, float, float, int]:
    """Seconds of one exact convolution of this shape by unbanded im2col, by taps and by what
    the decoder runs (:func:`~compressnet.models.arithmetic.exact_conv`), and its multiply-adds
    (``pad_rows`` False: the context network's rows, one row from k)."""
    g = torch.Generator().manual_seed(0)
    x = to_grid(torch.randn(1, cin, height, width, generator=g, dtype=torch.float64) * 4)
    weight = torch.randint(-2**12, 2**12, (cout, cin, k, k), generator=g).double() * 2.0**-16
    bias = torch.zeros(cout, dtype=torch.float64)
    out_rows = height if pad_rows else height - k + 1
    padding = (k // 2 if pad_rows else 0, k // 2)
    im2col = best_of(lambda: to_grid(F.conv2d(x, weight, bias, padding=padding)), repeats)
    taps = best_of(lambda: arithmetic.tap_conv(x, weight, bias, to_grid, pad_rows), repeats)
    used = best_of(lambda: arithmetic.exact_conv(x, weight, bias, to_grid, pad_rows), repeats)
    return im2col, taps, used, cin * cout * k * k * out_rows * width


def stage_times(codec, data: bytes) -> tuple[float, dict[str, float]]:
    profile = cProfile.Profile()
    t0 = time.perf_counter()
    profile.runcall(codec.decompress_array, data)
    total = time.perf_counter() - t0
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    out = {}
    for stage, (where, function) in STAGES.items():
        out[stage] = sum(v[3] for (file, _, name), v in stats.items()
                         if file.endswith(where) and name == function)
    return total, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sae-spn")
    parser.add_argument("--quality", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--image", default=str(KODAK))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    codec = compressnet.load(args.model)
    pixels = open_image(args.image)
    data = codec.compress(pixels, quality=args.quality)
    h, w = pixels.shape[:2]
    print(f"{codec.name} q{args.quality}, {Path(args.image).name} {w}x{h}, {args.threads} threads")

    decode = best_of(lambda: codec.decompress_array(data), args.repeats)
    total, stages = stage_times(codec, data)
    print(f"\n1. decode: {decode:.3f} s (best of {args.repeats}); under cProfile {total:.3f} s:")
    for stage, seconds in stages.items():
        print(f"   {stage:34s} {seconds:.3f} s")

    shapes = conv_shapes(codec, data)
    print("\n2. convolutions (cin, cout, k, h, w) x calls: F.conv2d (im2col) | tap_conv | "
          "exact_conv (what runs), its rate")
    sums = {"im2col": 0.0, "taps": 0.0, "used": 0.0}
    macs_total = 0
    for shape, calls in sorted(shapes.items(), key=lambda kv: -kv[0][3] * kv[0][4]):
        im2col, taps, used, macs = (v * calls for v in time_shape(*shape, args.repeats))
        sums["im2col"] += im2col
        sums["taps"] += taps
        sums["used"] += used
        macs_total += macs
        cin, cout, k, hh, ww, _ = shape
        print(f"   ({cin:3d}, {cout:3d}, {k}, {hh:3d}, {ww:3d}) x{calls:3d}: {im2col:.3f} s | "
              f"{taps:.3f} s | {used:.3f} s, {macs / used / 1e9:5.1f} GMAC/s")
    print(f"   all: {sums['im2col']:.3f} s | {sums['taps']:.3f} s | {sums['used']:.3f} s, "
          f"{macs_total / 1e9:.1f} GMAC")

    n = 2048
    a = torch.randn(n, n, dtype=torch.float64)
    b = torch.randn(n, n, dtype=torch.float64)
    peak = n ** 3 / best_of(lambda: a @ b, args.repeats)
    print(f"\n3. float64 matrix product ({n}^3): {peak / 1e9:.1f} GMAC/s; the decoder's "
          f"{macs_total / 1e9:.1f} GMAC need at least {macs_total / peak:.3f} s at that rate, "
          f"the decode {decode:.3f} s in all")


if __name__ == "__main__":
    main()
