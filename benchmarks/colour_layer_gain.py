"""What the colour layer buys on Kodak: the default model's files with it against without it.

    compressnet eval ../shared/data/kodak --models sae-spn --codecs --no-colour-layer \
        --no-report -o results/no-colour-layer
    python benchmarks/colour_layer_gain.py

Reads the shipped results (with the layer, ``src/compressnet/weights/sae-spn-lite.kodak.json``)
and the eval's results without it, and prints both per quality and the BD-rate of "with" against "without"
(negative: fewer bits for the same PSNR or MS-SSIM).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from compressnet.evaluate.bdrate import compare_curves

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--with-layer", default=str(ROOT / "docs" / "cards" / "sae-spn-lite.json"))
    parser.add_argument("--without", default=str(
        ROOT / "results" / "no-colour-layer" / "sae-spn-lite-no-colour-layer.json"))
    args = parser.parse_args()
    with_layer = json.loads(Path(args.with_layer).read_text())["results"]
    without = json.loads(Path(args.without).read_text())["results"]
    if without["point"] != [f"q{q}" for q in with_layer["quality"]]:
        raise SystemExit("the two results do not cover the same qualities")
    print("\n".join(compare_curves(without, with_layer, "without", "with")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
