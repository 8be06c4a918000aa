"""Tune the search behind ``--refine-realism`` on held-out training photos (never on Kodak).

Each variant refines the same photos at one quality for the realism decoder and scores the
decoded files (``--realism 1``, exact decoder) with what the search does not optimise (LPIPS-VGG,
DISTS) beside what it does (LPIPS-Alex, MSE) and MS-SSIM. The photos are the realism training's
held-out ones (``train-realism --val-photos 6``: the same shuffle), scaled to at most
``--max-side`` pixels a side.

    python benchmarks/refine_realism_tuning.py --variants plain shipped lr0.1 msssim1 --steps 40
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np

import compressnet
from compressnet.metrics import ms_ssim, psnr
from compressnet.models import refine
from compressnet.perceptual import PerceptualScorer
from compressnet.train.data import find_images, read_photo_scaled

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT.parent / "shared" / "data" / "train"

# name -> the search's settings (compressnet.models.refine's constants) it changes; "shipped"
# is the search as released, "plain" the encoder's own latent (no search). The objective's
# variants change one setting of 0.9.1's search (step 0.1), the one they were measured against.
STEP_091 = {"REALISM_STEP_SIZE": 0.1}
VARIANTS: dict[str, dict[str, float]] = {
    "plain": {}, "shipped": {},
    **{f"lr{v:g}": {"REALISM_STEP_SIZE": v} for v in (0.0125, 0.025, 0.05, 0.1, 0.2, 0.4)},
    **{f"cosine-lr{v:g}": {"STEP_DECAY": True, "REALISM_STEP_SIZE": v} for v in (0.05, 0.1)},
    "mse60": {**STEP_091, "REALISM_MSE_WEIGHT": 60.0},
    **{f"msssim{v:g}": {**STEP_091, "REALISM_MSSSIM_WEIGHT": v} for v in (0.5, 1.0, 2.0)},
    "rate0.1": {**STEP_091, "RATE_WEIGHT": 0.1},
    "alex2scales": {**STEP_091, "REALISM_LPIPS_SCALES": 2},
    "alex3scales": {**STEP_091, "REALISM_LPIPS_SCALES": 3},
}
SHIPPED = {name: getattr(refine, name) for name in
           ("REALISM_STEP_SIZE", "REALISM_MSE_WEIGHT", "REALISM_MSSSIM_WEIGHT", "RATE_WEIGHT",
            "REALISM_LPIPS_SCALES", "STEP_DECAY")}


def held_out(n: int, max_side: int) -> list[tuple[str, np.ndarray]]:
    files = find_images(TRAIN)
    random.Random(1234).shuffle(files)  # train-realism's held-out photos
    return [(file.name, read_photo_scaled(file, max_side)) for file in files[:n]]


def score(codec, scorer: PerceptualScorer, photos: list[tuple[str, np.ndarray]], quality: int,
          steps: int = 0) -> dict[str, float]:
    """Mean bytes, PSNR, MS-SSIM, LPIPS-Alex/VGG and DISTS of ``photos`` coded at ``quality``
    (refined ``steps`` steps for the realism decoder) and decoded with ``--realism 1``."""
    rows = []
    for photo, pixels in photos:
        data = codec.compress(pixels, quality=quality, refine=steps, refine_realism=1.0 if steps else 0.0)
        decoded = codec.decompress_array(data, realism=1.0)
        rows.append({"bytes": len(data), "psnr": psnr(pixels, decoded), "ms-ssim": ms_ssim(pixels, decoded),
                     **scorer(pixels, decoded)})
        print(photo, json.dumps(rows[-1]), flush=True)
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["shipped"], choices=sorted(VARIANTS))
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
        start = time.perf_counter()
        mean = score(codec, scorer, photos, args.quality, steps)
        result = {"variant": name, "steps": steps, "quality": args.quality,
                  "seconds": time.perf_counter() - start, **mean}
        print(json.dumps(result), flush=True)
        with out.open("a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
