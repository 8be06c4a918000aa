"""Time and peak memory of compressing and decompressing a phone-size photo (12 megapixels).

Each phase runs in its own process, so each peak is its own. ``--whole`` codes the image in one
tile (as releases up to 0.7.0 did) to compare: the decoded pixels must be the same.
Target (lite preset, 2 CPU cores): a 12-megapixel photo decodes in under 1.5 GB.

    python benchmarks/bench_large_image.py [--size 4032x3024] [--quality 3] [--whole]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak" / "kodim23.png"


def phase(args: argparse.Namespace) -> None:
    """One phase in this process; prints its seconds, peak RSS and output's digest as JSON."""
    import compressnet
    from compressnet.image import open_image

    codec = compressnet.load(args.model)
    if args.whole:
        codec.tile = 1 << 20
    t0 = time.perf_counter()
    if args.phase == "encode":
        data = codec.compress(open_image(args.src), quality=args.quality)
        Path(args.dst).write_bytes(data)
        digest, size = hashlib.sha256(data).hexdigest(), len(data)
    else:
        pixels = codec.decompress_array(Path(args.src).read_bytes())
        digest, size = hashlib.sha256(pixels.tobytes()).hexdigest(), pixels.size
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mib": peak, "sha256": digest, "size": size}))


def run_phase(args: argparse.Namespace, name: str, src: Path, dst: Path) -> dict:
    cmd = [sys.executable, __file__, "--phase", name, "--src", str(src), "--dst", str(dst),
           "--model", args.model, "--quality", str(args.quality)] + (["--whole"] if args.whole else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sae-spn")
    parser.add_argument("--quality", type=int, default=3)
    parser.add_argument("--size", default="4032x3024", help="WxH the Kodak image is resized to")
    parser.add_argument("--image", default=str(KODAK))
    parser.add_argument("--whole", action="store_true", help="one tile: the whole image at once")
    parser.add_argument("--phase", choices=["encode", "decode"], help=argparse.SUPPRESS)
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--dst", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        return phase(args)
    width, height = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        src, cnet = Path(tmp) / "large.png", Path(tmp) / "large.cnet"
        image = Image.open(args.image).convert("RGB").resize((width, height), Image.LANCZOS)
        image.save(src)
        enc = run_phase(args, "encode", src, cnet)
        dec = run_phase(args, "decode", cnet, Path(tmp) / "unused")
    bpp = enc["size"] * 8 / (width * height)
    mode = "whole" if args.whole else "tiled"
    print(f"{args.model} q{args.quality} on {width}x{height} ({mode}): encode {enc['seconds']:.1f} s, "
          f"peak {enc['peak_mib']:.0f} MiB; decode {dec['seconds']:.1f} s, peak {dec['peak_mib']:.0f} MiB; "
          f"{enc['size']} bytes ({bpp:.4f} bpp); file {enc['sha256'][:12]}, pixels {dec['sha256'][:12]}")


if __name__ == "__main__":
    main()
