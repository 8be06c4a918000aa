"""Encode + decode speed and peak memory of a bundled model on a 768x512 image, beside HEVC's
and AVIF's on the same photo in the same run (at CompressNet's file size), so that the ratio,
not a noisy absolute time, is the figure.

Target (issue #26, lite preset, 2 CPU cores, a quiet machine): decode at most 0.5 s and encode
at most 0.5 s for a 768x512 photo.

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
from compressnet.evaluate import classical
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
    ours_enc, ours_dec = statistics.median(enc), statistics.median(dec)
    print(f"{codec.name} q{args.quality} on {w}x{h}, {args.threads} threads: "
          f"encode {ours_enc:.3f} s, decode {ours_dec:.3f} s "
          f"(median of {args.repeats}), {len(data)} bytes, peak RSS {peak:.0f} MiB")
    for name in ("hevc", "avif"):
        if classical.available(name):
            continue
        c = classical.CODECS[name]
        setting = classical.largest_under(c, pixels, len(data)).setting  # the same size
        c_enc, c_dec = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            blob = c.encode(pixels, setting)
            t1 = time.perf_counter()
            c.decode(blob)
            c_dec.append(time.perf_counter() - t1)
            c_enc.append(t1 - t0)
        e, d = statistics.median(c_enc), statistics.median(c_dec)
        print(f"{name} at {len(blob)} bytes: encode {e:.3f} s, decode {d:.3f} s; "
              f"{codec.name} takes {ours_enc / e:.0f}x to encode, {ours_dec / d:.0f}x to decode")


if __name__ == "__main__":
    main()
