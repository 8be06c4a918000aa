"""Trial: does sae-spn-lite's frozen encoder limit the realism decoder? Fine-tune the encoder,
behind the frozen realism decoder, for that decoder's loss.

The realism issue asks to show, with measurements, whether the encoder (trained for the faithful
decoder) is the limit before training encoder and decoder together. Refinement answers it per
image, slowly (``compress --refine 40 --refine-realism 1``); this trains the encoder itself under
the same objective, amortised: LPIPS-Alex + 20 x MSE through the realism decoder (float32) +
bits per pixel under the frozen entropy model and context network, through the training's
straight-through quantiser; crops from the training photos (the 6 held out by ``train-realism``
stay out), each batch at a quality drawn 2:1:1:1:1:1. Only the encoder learns, so its files are
ordinary sae-spn-lite files. It then scores the held-out photos as
``benchmarks/refine_realism_tuning.py`` does (quality 1, plain files, ``--realism 1``).

    python scripts/realism_encoder_trial.py --minutes 30 --out runs/realism-encoder
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import compressnet
from compressnet.models import refine
from compressnet.perceptual import LPIPS, PerceptualScorer

ROOT = Path(__file__).resolve().parents[1]
QUALITY_WEIGHTS = (2, 1, 1, 1, 1, 1)


def _benchmark():  # the tuning benchmark's held-out photos, from a file outside the package
    import importlib.util

    spec = importlib.util.spec_from_file_location("tuning", ROOT / "benchmarks" / "refine_realism_tuning.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--photos", type=int, default=200, help="training photos held in memory")
    parser.add_argument("--out", default="runs/realism-encoder")
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = random.Random(0)
    tuning = _benchmark()
    photos = tuning.held_out(6 + args.photos, 512)
    held, train = photos[:6], [p for _, p in photos[6:] if min(p.shape[:2]) >= args.crop]
    codec = compressnet.load("sae-spn")
    model = codec.model
    decoder = codec._realism_decoder(1.0)[0].requires_grad_(False)
    net = codec._latent_coder(codec.version_written()).network
    alex = LPIPS("alex").requires_grad_(False)
    keeps = list(codec.cfg.qualities)
    scorer = PerceptualScorer()
    before = tuning.score(codec, scorer, held, 1)
    print("held-out before:", json.dumps(before), flush=True)
    encoder = copy.deepcopy(model.encoder).train()
    opt = torch.optim.Adam(encoder.parameters(), lr=args.lr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start, step = time.monotonic(), 0
    with tqdm(unit="step", mininterval=30) as bar:
        while time.monotonic() - start < args.minutes * 60:
            crops = []
            for _ in range(args.batch):
                p = rng.choice(train)
                top = rng.randrange(p.shape[0] - args.crop + 1)
                left = rng.randrange(p.shape[1] - args.crop + 1)
                crops.append(p[top:top + args.crop, left:left + args.crop])
            x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255
            keep = rng.choices(keeps, QUALITY_WEIGHTS)[0]
            y = encoder(x - 0.5).y
            y_hat, symbols = model.quantizer.straight_through(y)
            mask = torch.zeros_like(y_hat)
            mask[:, :keep] = 1
            x_hat = decoder(y_hat * mask, None).x_hat
            mse = torch.mean((x_hat - x) ** 2)
            bpp = model.entropy.latent_bits(y, symbols, keep, net).sum() / x[:, 0].numel()
            loss = alex(x_hat, x).mean() + refine.REALISM_MSE_WEIGHT * mse + bpp
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}", bpp=f"{bpp.item():.3f}", keep=keep)
    torch.save(encoder.state_dict(), out / "encoder.pt")
    model.encoder.load_state_dict(encoder.state_dict())
    after = tuning.score(codec, scorer, held, 1)
    result = {"steps": step, "minutes": args.minutes, "lr": args.lr, "before": before, "after": after}
    print(json.dumps(result), flush=True)
    (out / "result.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
