"""What new weights buy: a model card's Kodak results against those of an earlier commit.

    python benchmarks/release_gain.py --old-rev 43c71aa [--card docs/cards/sae-spn-lite.json]

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-rev", required=True, help="git revision of the old card")
    parser.add_argument("--card", default="docs/cards/sae-spn-lite.json",
                        help="the card's results, relative to the repository root")
    args = parser.parse_args()
    old = json.loads(subprocess.run(["git", "show", f"{args.old_rev}:{args.card}"], cwd=ROOT,
                                    check=True, capture_output=True, text=True).stdout)["results"]
    new = json.loads((ROOT / args.card).read_text())["results"]
    print("\n".join(compare_curves(old, new, args.old_rev, "now")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
