"""The default model at a size budget on Kodak, by the protocol the classical codecs get.

    python benchmarks/target_rate_kodak.py --targets 0.05 0.1 [--refine 10] --workers 2

Each image is compressed with ``compress --target-bpp T`` (``Codec.encode_to_target``): the
highest quality whose real file is not above T, chosen per image, as ``eval`` bisects HEVC's
and the other classical codecs' settings per image to the largest file not above each target.
Prints a markdown table of the means (real bytes, PSNR, MS-SSIM, the qualities and colour
blocks chosen: what a quality leaves under T goes to finer colour blocks) beside
HEVC's row at the same target from ``results/kodak/hevc.json`` (written by
``benchmarks/kodak_comparison.py``) when it is there, and writes the per-image rows to
``OUT/<model>-target.json``.
"""

from __future__ import annotations

import argparse
import collections
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
from compressnet.image import files_in as list_images
from compressnet.image import open_image
from compressnet.metrics import ms_ssim, psnr

ROOT = Path(__file__).resolve().parents[1]
_CODEC = None


def _rows(model: str, path: str, targets: list[float], refine: int) -> list[dict]:
    """One image at each target: the quality chosen and what its file decodes to."""
    global _CODEC
    _CODEC = _CODEC or load(model)
    pixels = open_image(path)
    rows = []
    for target in targets:
        result = _CODEC.encode_to_target(pixels, target, refine)
        decoded = _CODEC.decompress_array(result.data)
        rows.append({"image": Path(path).name, "target": target, "quality": result.quality,
                     "colour_block": result.colour_block,
                     "bpp": result.bpp, "psnr": psnr(pixels, decoded),
                     "ms_ssim": ms_ssim(pixels, decoded)})
    return rows


def hevc_at(results: Path, target: float) -> dict | None:
    """HEVC's Kodak means at ``target`` from the comparison's JSON, if it was measured there."""
    if not results.is_file():
        return None
    r = json.loads(results.read_text())["results"]
    for i, point in enumerate(r.get("point", [])):
        if abs(float(point) - target) < 1e-9:
            return {"bpp": r["bpp"][i], "psnr": r["psnr-rgb"][i], "ms_ssim": r["ms-ssim-rgb"][i],
                    "above": r.get("above-target", [0] * len(r["bpp"]))[i]}
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kodak", default=str(ROOT.parent / "shared" / "data" / "kodak"))
    parser.add_argument("--model", default=zoo.DEFAULT_MODEL)
    parser.add_argument("--targets", nargs="+", type=float, default=[0.05, 0.1])
    parser.add_argument("--refine", type=int, default=0, metavar="STEPS")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--hevc", type=Path, default=ROOT / "results" / "kodak" / "hevc.json")
    parser.add_argument("--out", default="results/target-rate")
    args = parser.parse_args()
    codec = load(args.model)
    files = list_images(args.kodak)
    # spawn, not fork: a forked child of a process that has used torch's OpenMP pool can hang;
    # the cores shared out between the workers (a refinement uses every thread it is given)
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=torch.set_num_threads,
                             initargs=(max(1, (os.cpu_count() or 1) // args.workers),)) as pool:
        futures = [pool.submit(_rows, args.model, str(f), args.targets, args.refine) for f in files]
        rows = [r for fut in futures for r in fut.result()]
    name = codec.name + (f"+refine{args.refine}" if args.refine else "")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}-target.json").write_text(json.dumps({"name": name, "per_image": rows}, indent=1))
    print(f"\nKodak, {len(files)} images; {datetime.date.today()}; {platform.machine()} "
          f"{os.cpu_count()} cores; `python benchmarks/target_rate_kodak.py {' '.join(sys.argv[1:])}`\n")
    print("| target bpp | codec | bpp | PSNR (dB) | MS-SSIM | qualities (colour blocks) chosen: images |")
    print("|---|---|---|---|---|---|")
    for target in args.targets:
        mine = [r for r in rows if r["target"] == target]
        chosen = collections.Counter((r["quality"], r.get("colour_block") or 0) for r in mine)
        mix = ", ".join(f"q{q}" + (f" ({b} px)" if b else "") + f": {n}"
                        for (q, b), n in sorted(chosen.items(), key=lambda c: (c[0][0], -c[0][1])))
        print(f"| {target:g} | {name} | {np.mean([r['bpp'] for r in mine]):.4f} "
              f"| {np.mean([r['psnr'] for r in mine]):.2f} "
              f"| {np.mean([r['ms_ssim'] for r in mine]):.4f} | {mix} |")
        hevc = hevc_at(args.hevc, target)
        if hevc:
            above = f"{hevc['above']} images above target" if hevc["above"] else "all fit"
            print(f"| {target:g} | hevc | {hevc['bpp']:.4f} | {hevc['psnr']:.2f} "
                  f"| {hevc['ms_ssim']:.4f} | ({above}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
