"""What new weights buy: a model card's Kodak results against those of an earlier commit.

    python benchmarks/release_gain.py --old-rev 43c71aa [--card RESULTS.json]
    python benchmarks/release_gain.py --old-rev 8390a21 --new-rev 40af449   # two past releases

Prints both curves per quality and the BD-rate of the current card against the old one
(negative: fewer bits for the same PSNR or MS-SSIM, over the range both curves cover).
``43c71aa`` is the last commit of release 0.1.0.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from compressnet.evaluate.bdrate import compare_curves

ROOT = Path(__file__).resolve().parents[1]


def card_at(rev: str, card: str) -> dict:
    return json.loads(subprocess.run(["git", "show", f"{rev}:{card}"], cwd=ROOT, check=True,
                                     capture_output=True, text=True).stdout)["results"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-rev", required=True, help="git revision of the old card")
    parser.add_argument("--card", default="src/compressnet/weights/sae-spn-lite.kodak.json",
                        help="the card's results, relative to the repository root")
    parser.add_argument("--new-rev", help="git revision of the new card (default: the working tree's)")
    args = parser.parse_args()
    old = card_at(args.old_rev, args.card)
    new = card_at(args.new_rev, args.card) if args.new_rev else \
        json.loads((ROOT / args.card).read_text())["results"]
    print("\n".join(compare_curves(old, new, args.old_rev, args.new_rev or "now")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
