"""Time and peak memory of coding the colour layer alone, at the largest size the codec takes.

The worst case: a 64-megapixel photo (8000x8000) with 8-pixel blocks (what ``--target-bpp``
may pick when bytes are left over), a million blocks of three channels. Target: well under the
decoder network's own peak (about 1.8 GB for 48 MP, see bench_large_image.py).

    python benchmarks/bench_colour_layer.py [--size 8000] [--block 8]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import constriction
import numpy as np

from compressnet import colour_layer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8000, help="side of the square photo")
    parser.add_argument("--block", type=int, default=8)
    args = parser.parse_args()
    gh, gw = colour_layer.grid_shape(args.size, args.size, args.block)
    rng = np.random.default_rng(0)  # a random walk along rows: smooth-ish, like photos' means
    walk = np.cumsum(rng.integers(-1, 2, (gh, gw, 3)), 1) % (colour_layer.max_mean(8) + 1)
    layer = colour_layer.ColourLayer(args.block, 8, walk.astype(np.int64))
    tracemalloc.start()
    t0 = time.perf_counter()
    encoder = constriction.stream.queue.RangeEncoder()
    colour_layer.encode_into(encoder, layer)
    words = encoder.get_compressed()
    t1 = time.perf_counter()
    decoded = colour_layer.decode_from(constriction.stream.queue.RangeDecoder(words), args.size, args.size)
    t2 = time.perf_counter()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    assert np.array_equal(decoded.means, layer.means)
    print(f"{args.size}x{args.size}, {args.block}-px blocks ({gh}x{gw}): {words.size * 4:,} bytes, "
          f"encode {t1 - t0:.1f} s, decode {t2 - t1:.1f} s, peak traced memory {peak:.0f} MiB")


if __name__ == "__main__":
    main()
