"""Tune the search behind ``--refine-realism`` on held-out training photos (never on Kodak).

Each variant refines the same photos at one quality for the realism decoder and scores the
decoded files (``--realism 1``, exact decoder) with what the search does not optimise (LPIPS-VGG,
DISTS) beside what it does (LPIPS-Alex, MSE) and MS-SSIM. The photos are the realism training's
held-out ones (``train-realism --val-photos 6``: the same shuffle), scaled to at most
``--max-side`` pixels a side.

    python benchmarks/refine_realism_tuning.py --variants base lr0.2 msssim1 --steps 40
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
from PIL import Image

import compressnet
from compressnet.metrics import ms_ssim, psnr
from compressnet.models import refine
from compressnet.perceptual import PerceptualScorer
from compressnet.train.data import find_images, read_photo

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT.parent / "shared" / "data" / "train"

# name -> the search's settings (compressnet.models.refine's constants) it changes; "base" is
# the shipped search, "plain" the encoder's own latent (no search)
VARIANTS: dict[str, dict[str, float]] = {
    "plain": {}, "base": {},
    "lr0.05": {"STEP_SIZE": 0.05}, "lr0.2": {"STEP_SIZE": 0.2}, "lr0.4": {"STEP_SIZE": 0.4},
    "mse60": {"REALISM_MSE_WEIGHT": 60.0},
    "msssim0.5": {"REALISM_MSSSIM_WEIGHT": 0.5}, "msssim1": {"REALISM_MSSSIM_WEIGHT": 1.0},
    "msssim2": {"REALISM_MSSSIM_WEIGHT": 2.0},
    "rate0.1": {"RATE_WEIGHT": 0.1},
    "alex2scales": {"REALISM_LPIPS_SCALES": 2}, "alex3scales": {"REALISM_LPIPS_SCALES": 3},
}
SHIPPED = {name: getattr(refine, name) for name in
           ("STEP_SIZE", "REALISM_MSE_WEIGHT", "REALISM_MSSSIM_WEIGHT", "RATE_WEIGHT",
            "REALISM_LPIPS_SCALES")}


def held_out(n: int, max_side: int) -> list[tuple[str, np.ndarray]]:
    files = find_images(TRAIN)
    random.Random(1234).shuffle(files)  # train-realism's held-out photos
    photos = []
    for file in files[:n]:
        arr = read_photo(file, max_side)
        h, w = arr.shape[:2]
        scale = max_side / max(h, w)
        if scale < 1:
            arr = np.asarray(Image.fromarray(arr).resize((round(w * scale), round(h * scale)),
                                                          Image.LANCZOS))
        photos.append((file.name, arr))
    return photos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["base"], choices=sorted(VARIANTS))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--quality", type=int, default=1)
    parser.add_argument("--photos", type=int, default=6)
    parser.add_argument("--max-side", type=int, default=512)
    parser.add_argument("-o", "--out", default=str(ROOT / "results" / "refine-realism-tuning.jsonl"))
    args = parser.parse_args()
    codec = compressnet.load("sae-spn")
    scorer = PerceptualScorer()
    photos = held_out(args.photos, args.max_side)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.variants:
        for key, value in {**SHIPPED, **VARIANTS[name]}.items():
            setattr(refine, key, value)
        steps = 0 if name == "plain" else args.steps
        rows, start = [], time.perf_counter()
        for photo, pixels in photos:
            data = codec.compress(pixels, quality=args.quality, refine=steps,
                                  refine_realism=1.0 if steps else 0.0)
            decoded = codec.decompress_array(data, realism=1.0)
            row = {"bytes": len(data), "psnr": psnr(pixels, decoded), "ms-ssim": ms_ssim(pixels, decoded)}
            row.update(scorer(pixels, decoded))
            rows.append(row)
            print(photo, json.dumps(row), flush=True)
        mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        result = {"variant": name, "steps": steps, "quality": args.quality,
                  "seconds": time.perf_counter() - start, **mean}
        print(json.dumps(result), flush=True)
        with out.open("a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
