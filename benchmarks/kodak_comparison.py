"""Reproduce the README's Kodak comparison: CompressNet against JPEG, WebP, JPEG 2000, AVIF,
HEVC-intra (x265, BPG's engine) and JPEG XL at matched rates, on all 24 images.

    python benchmarks/kodak_comparison.py [--kodak ../shared/data/kodak] [--out results/kodak]

Prints a markdown table headed by the date, the machine and the command; results are cached
under OUT/cache, so a second run only redoes what changed (a new model, say).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from pathlib import Path

from compressnet import cli

ROOT = Path(__file__).resolve().parents[1]
REFERENCES = ("bpg_444_x265_ycbcr", "vtm", "av1", "compressai-bmshj2018-hyperprior_ms-ssim_cpu")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kodak", default=str(ROOT.parent / "shared" / "data" / "kodak"))
    parser.add_argument("--reference-dir",
                        default=str(ROOT.parent / "shared" / "reference" / "compressai-kodak"))
    parser.add_argument("--out", default="results/kodak")
    parser.add_argument("--models", nargs="*", default=["sae-spn"])
    parser.add_argument("--workers", type=int)
    args = parser.parse_args()
    refs = [str(Path(args.reference_dir) / f"{r}.json") for r in REFERENCES
            if (Path(args.reference_dir) / f"{r}.json").is_file()]
    argv = ["eval", args.kodak, "--models", *args.models, "-o", args.out, "--reference", *refs,
            "--max-bpp", "0.3"]
    if args.workers:
        argv += ["--workers", str(args.workers)]
    code = cli.main(argv)
    if code:
        return code
    docs = [json.loads(p.read_text()) for p in sorted(Path(args.out).glob("*.json"))]
    print(f"\nKodak, 24 images; {datetime.date.today()}; {platform.machine()} "
          f"{os.cpu_count()} cores, Python {platform.python_version()}; "
          f"`python benchmarks/kodak_comparison.py {' '.join(sys.argv[1:])}`\n")
    print("| codec | point | bpp | PSNR (dB) | MS-SSIM | images above target |")
    print("|---|---|---|---|---|---|")
    for doc in docs:
        r = doc["results"]
        for i in range(len(r["bpp"])):
            print(f"| {doc['name']} | {r['point'][i]} | {r['bpp'][i]:.4f} | {r['psnr-rgb'][i]:.2f} | "
                  f"{r['ms-ssim-rgb'][i]:.4f} | {r['above-target'][i] or ''} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
