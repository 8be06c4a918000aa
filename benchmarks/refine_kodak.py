"""What encoder-side latent refinement (``compress --refine STEPS``) buys on Kodak.

    python benchmarks/refine_kodak.py --steps 10 --qualities 1 3 5 --workers 2

Encodes every image at each quality with the bundled default model, refined, through the real
file format; prints a markdown table beside the plain encoder's results from the model's Kodak
card, and writes CompressAI-format JSON (``OUT/<model>+refine<STEPS>.json``) for plotting.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from compressnet import zoo
from compressnet.codec import load
from compressnet.evaluate.compare import learned_rows
from compressnet.image import files_in as list_images

ROOT = Path(__file__).resolve().parents[1]
_CODEC = None


def _rows(model: str, path: str, qualities: list[int], steps: int) -> list[dict]:
    """The eval's own measurement (real bytes, PSNR, MS-SSIM, encode time) of one image."""
    global _CODEC
    _CODEC = _CODEC or load(model)
    return [{"image": r.image, "quality": r.setting, "bpp": r.bpp, "psnr": r.psnr,
             "ms_ssim": r.ms_ssim, "encode_s": r.encoding_time}
            for r, _ in learned_rows(_CODEC, Path(path), qualities, steps)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kodak", default=str(ROOT.parent / "shared" / "data" / "kodak"))
    parser.add_argument("--model", default=zoo.DEFAULT_MODEL)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--qualities", nargs="+", type=int)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--out", default="results/refine")
    args = parser.parse_args()
    codec = load(args.model)
    qualities = args.qualities or list(codec.qualities)
    files = list_images(args.kodak)
    # spawn, not fork: a forked child of a process that has used torch's OpenMP pool can hang;
    # the cores shared out between the workers (a refinement uses every thread it is given)
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=torch.set_num_threads,
                             initargs=(max(1, (os.cpu_count() or 1) // args.workers),)) as pool:
        futures = [pool.submit(_rows, args.model, str(f), qualities, args.steps) for f in files]
        rows = [r for fut in futures for r in fut.result()]
    name = f"{codec.name}+refine{args.steps}"
    mean = {q: {k: float(np.mean([r[k] for r in rows if r["quality"] == q]))
                for k in ("bpp", "psnr", "ms_ssim", "encode_s")} for q in qualities}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps({"name": name, "description": (
        f"{codec.name}, encoder refined {args.steps} steps, on {args.kodak}, real file bytes"),
        "results": {"quality": qualities, "bpp": [mean[q]["bpp"] for q in qualities],
                    "psnr-rgb": [mean[q]["psnr"] for q in qualities],
                    "ms-ssim-rgb": [mean[q]["ms_ssim"] for q in qualities],
                    "encoding_time": [mean[q]["encode_s"] for q in qualities]},
        "per_image": rows}, indent=1))
    plain = zoo.kodak_results(zoo.lookup(codec.name)) or {}
    print(f"\nKodak, {len(files)} images; {datetime.date.today()}; {platform.machine()} "
          f"{os.cpu_count()} cores; `python benchmarks/refine_kodak.py {' '.join(sys.argv[1:])}`\n")
    print("| quality | plain bpp | plain PSNR | plain MS-SSIM | refined bpp | refined PSNR "
          "| refined MS-SSIM | refined encode s |")
    print("|---|---|---|---|---|---|---|---|")
    for q in qualities:
        p = plain.get(q, (float("nan"),) * 3)
        m = mean[q]
        print(f"| {q} | {p[0]:.4f} | {p[1]:.2f} | {p[2]:.4f} | {m['bpp']:.4f} | {m['psnr']:.2f} "
              f"| {m['ms_ssim']:.4f} | {m['encode_s']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
