"""Crops for the eye: the realism decoder on the encoder's own file and on a file refined for it.

Columns: the original, ``--realism 1`` on the plain file, ``--realism 1`` on the file from
``compress --refine STEPS --refine-realism 1`` (no larger). Rows: kodim23 and kodim05 at
quality 1, pixel for pixel. Each file's size is printed.

    python benchmarks/refine_realism_crops.py [--steps 80] [-o docs/refined-for-realism.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

import compressnet
from compressnet.image import open_image

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"
CROPS = {"kodim23": (200, 60, 520, 300), "kodim05": (150, 120, 470, 360)}  # left, top, right, bottom


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--quality", type=int, default=1)
    parser.add_argument("-o", "--out", default="docs/refined-for-realism.png")
    args = parser.parse_args()
    codec = compressnet.load("sae-spn")
    rows = []
    for name, (left, top, right, bottom) in CROPS.items():
        pixels = open_image(KODAK / f"{name}.png")
        plain = codec.compress(pixels, quality=args.quality)
        refined = codec.compress(pixels, quality=args.quality, refine=args.steps, refine_realism=1.0)
        print(f"{name} q{args.quality}: plain {len(plain)} bytes, refined {len(refined)} bytes")
        shown = [pixels] + [codec.decompress_array(d, realism=1.0) for d in (plain, refined)]
        rows.append(np.concatenate([a[top:bottom, left:right] for a in shown], 1))
    Image.fromarray(np.concatenate(rows, 0)).save(args.out)
    print(f"wrote {args.out}: original | realism 1, plain file | realism 1, refined file")


if __name__ == "__main__":
    main()
