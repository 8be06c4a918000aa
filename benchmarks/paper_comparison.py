"""The paper's comparison, measured: SAE vs SWWAE vs SAE-SPN on Kodak.

    python benchmarks/paper_comparison.py

Prints a markdown table from the results that each bundled model's card measured on all 24
Kodak images through real file bytes (``weights/<name>.kodak.json``); regenerate those with
``compressnet card NAME --data ../shared/data/kodak --out docs/cards --ship``.
"""

from __future__ import annotations

import json
import math
import sys

from compressnet import zoo
from compressnet.codec import load

MODELS = ("sae", "swwae", "sae-spn")


def main() -> int:
    print("| model | training | channels sent | real bpp | fixed-length bpp | PSNR (dB) | MS-SSIM "
          "| switch accuracy |")
    print("|---|---|---|---|---|---|---|---|")
    for name in MODELS:
        codec = load(name)
        path = zoo.kodak_results_path(codec.name)
        if not path.is_file():
            print(f"{codec.name}: no Kodak results; run the card command first", file=sys.stderr)
            return 1
        r = json.loads(path.read_text())["results"]
        steps = codec.metadata.get("steps", "?")
        minutes = float(codec.metadata.get("train_seconds", 0)) / 60
        for i, q in enumerate(r["quality"]):
            acc = r["switch-accuracy"][i]
            acc_text = "sent" if codec.cfg.transmits_switches else (
                f"{100 * acc:.1f}%" if codec.cfg.switch_levels and not math.isnan(acc) else "-")
            print(f"| {codec.name} | {steps} steps, {minutes:.0f} min "
                  f"| {codec.cfg.qualities[q - 1]} | {r['bpp'][i]:.4f} | {r['fixed-length-bpp'][i]:.4f} "
                  f"| {r['psnr-rgb'][i]:.2f} | {r['ms-ssim-rgb'][i]:.4f} | {acc_text} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
