"""Format 9's edge-aware colour correction against format 7's bilinear one, on the same files:
the faithful decoder's output of each Kodak image is corrected both ways.

    python benchmarks/colour_layer_guided.py [--kodak ../shared/data/kodak] [--qualities 1 3 5]

Prints a markdown table of the means (PSNR, MS-SSIM) per quality, and the per-image PSNR gains.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import numpy as np

import compressnet
from compressnet import bitstream
from compressnet.image import open_image
from compressnet.metrics import ms_ssim, psnr

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kodak", default=str(KODAK))
    parser.add_argument("--qualities", nargs="+", type=int, default=[1, 3, 5])
    args = parser.parse_args()
    codec = compressnet.load()
    files = sorted(Path(args.kodak).glob("*.png"))
    scores: dict[tuple[int, bool], list[tuple[float, float]]] = {}
    for path in files:
        pixels = open_image(path)
        for q in args.qualities:
            header, payload = bitstream.unpack(codec.compress(pixels, quality=q))
            for version in (7, 9):  # the same payload under each header
                decoded = codec.decompress_array(bitstream.pack(header._replace(version=version), payload))
                guided = bitstream.VERSIONS[version].guided_colour
                scores.setdefault((q, guided), []).append((psnr(pixels, decoded), ms_ssim(pixels, decoded)))
        print(f"{path.name} done", file=sys.stderr)
    print(f"\nKodak, {len(files)} images; {datetime.date.today()}; "
          f"`python benchmarks/colour_layer_guided.py {' '.join(sys.argv[1:])}`\n")
    print("| quality | colour blocks (px) | PSNR bilinear (7) | PSNR edge-aware (9) | MS-SSIM bilinear | "
          "MS-SSIM edge-aware | images better in PSNR |")
    print("|---|---|---|---|---|---|---|")
    for q in args.qualities:
        old, new = np.array(scores[(q, False)]), np.array(scores[(q, True)])
        better = int((new[:, 0] > old[:, 0]).sum())
        print(f"| {q} | {codec.colour_block(q)} | {old[:, 0].mean():.2f} | {new[:, 0].mean():.2f} | "
              f"{old[:, 1].mean():.4f} | {new[:, 1].mean():.4f} | {better} of {len(files)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
