"""What encoder-side refinement buys on Kodak, as BD-rates: refined against plain, and both
against HEVC-intra, over the qualities that ``refine_kodak.py`` measured.

    python benchmarks/refine_kodak.py --steps 10 --qualities 1 3 5 --workers 2
    python benchmarks/kodak_comparison.py --workers 2     # HEVC's curve (results/kodak/hevc.json)
    python benchmarks/refine_gain.py

Reads the refined results, the model card's plain ones at the same qualities and the comparison's
HEVC curve; prints both per quality and the BD-rates (negative: fewer bits for the same PSNR or
MS-SSIM). With three points a curve is integrated piecewise linearly (see ``bdrate``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from compressnet.evaluate.bdrate import bd_rate_text, compare_curves

ROOT = Path(__file__).resolve().parents[1]


def _at(results: dict, qualities: list[int]) -> dict:
    """The card's ``results`` restricted to ``qualities``, in that order."""
    index = [results["quality"].index(q) for q in qualities]
    return {k: [v[i] for i in index] for k, v in results.items() if isinstance(v, list)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refined", default=str(ROOT / "results" / "refine" / "sae-spn-lite+refine10.json"))
    parser.add_argument("--plain", default=str(ROOT / "docs" / "cards" / "sae-spn-lite.json"))
    parser.add_argument("--hevc", default=str(ROOT / "results" / "kodak" / "hevc.json"))
    args = parser.parse_args()
    refined = json.loads(Path(args.refined).read_text())["results"]
    plain = _at(json.loads(Path(args.plain).read_text())["results"], refined["quality"])
    print("\n".join(compare_curves(plain, refined, "plain", "refined")))
    hevc = json.loads(Path(args.hevc).read_text())["results"]
    for label, curve in (("plain", plain), ("refined", refined)):
        for key, metric in (("psnr-rgb", "PSNR"), ("ms-ssim-rgb", "MS-SSIM")):
            print(f"- BD-rate ({metric}) of {label} (qualities {refined['quality']}) against HEVC-intra: "
                  f"{bd_rate_text(hevc, curve, key)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
