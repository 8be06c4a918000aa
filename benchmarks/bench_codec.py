"""Encode + decode speed and peak memory of a bundled model on a 768x512 image.

Target (lite preset, 2 CPU cores): encode plus decode of a 768x512 photo in about 1 s.

    python benchmarks/bench_codec.py [--model sae-spn] [--quality 2] [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from pathlib import Path

import torch

import compressnet
from compressnet.image import open_image

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak" / "kodim23.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sae-spn")
    parser.add_argument("--quality", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--image", default=str(KODAK))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    codec = compressnet.load(args.model)
    pixels = open_image(args.image)
    codec.decompress_array(codec.compress(pixels, quality=args.quality))  # warm-up
    enc, dec = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        data = codec.compress(pixels, quality=args.quality)
        t1 = time.perf_counter()
        codec.decompress_array(data)
        dec.append(time.perf_counter() - t1)
        enc.append(t1 - t0)
    h, w = pixels.shape[:2]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{codec.name} q{args.quality} on {w}x{h}, {args.threads} threads: "
          f"encode {statistics.median(enc):.3f} s, decode {statistics.median(dec):.3f} s "
          f"(median of {args.repeats}), {len(data)} bytes, peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
