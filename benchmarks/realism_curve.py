"""The held-out curve of a realism decoder's training run, as a markdown table: PSNR, LPIPS-Alex
(the loss's metric), LPIPS-VGG and DISTS (not optimised) at each validation, per channel count.

    python benchmarks/realism_curve.py [docs/cards/logs/sae-spn-lite-realism.jsonl] [--keeps 3 6 11]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

METRICS = ("psnr", "lpips-alex", "lpips-vgg", "dists")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", nargs="?", default="docs/cards/logs/sae-spn-lite-realism.jsonl")
    parser.add_argument("--keeps", nargs="+", type=int, default=[3, 6, 11],
                        help="channel counts (sae-spn-lite's qualities 1, 3 and 5)")
    args = parser.parse_args()
    records = [json.loads(line) for line in Path(args.log).read_text().splitlines() if line.strip()]
    validations = [r for r in records if f"psnr@{args.keeps[0]}" in r]
    start = records[0]["time"]
    heads = ["step", "minutes"] + [f"{m} @{k}" for k in args.keeps for m in METRICS]
    print("| " + " | ".join(heads) + " |")
    print("|" + "---|" * len(heads))
    for r in validations:
        cells = [str(r["step"]), f"{(r['time'] - start) / 60:.0f}"]
        cells += [f"{r[f'{m}@{k}']:.2f}" if m == "psnr" else f"{r[f'{m}@{k}']:.4f}"
                  for k in args.keeps for m in METRICS]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
