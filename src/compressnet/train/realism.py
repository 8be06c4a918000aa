"""A realism decoder behind a frozen model's encoder: the same files, decoded sharper.

The recipe follows HiFiC (Mentzer et al. 2020, "High-Fidelity Generative Image Compression"):
the decoder is trained with a perceptual loss (LPIPS-Alex), a non-saturating adversarial loss
from a discriminator that sees the latent it is judging (conditioning keeps the generator to
*this* latent's content instead of any plausible image), and a small MSE that anchors colours
and positions. Every loss is taken after the colour layer's correction, as a file shows it.

Why a decoder only: the encoder, the quantiser and the entropy models stay as they are, so
every ``.cnet`` file written so far decodes with either decoder, and the latents of the training
photos are computed once (:func:`build_cache`) instead of at every step: on 2 CPU cores a step
is then the decoder, its loss networks and a small discriminator.

    cached (photo, symbols) --crop--> y_hat (first k channels) --decoder--> x_hat
        --colour layer (block means of the photo)--> x_c
    G: LPIPS-Alex(x_c, x) + mse_weight * MSE(x_c, x) + adv_weight * -log D(x_c | y_hat)
    D: -log D(x | y_hat) - log(1 - D(x_c | y_hat))

Decoding may blend the two decoders' weights (:func:`compressnet.models.realism.blend`), so a value
between 0 (the faithful decoder) and 1 (this one) trades fidelity for realism on the same file.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from compressnet import colour_layer
from compressnet.codec import Codec, load
from compressnet.image import pad_to_multiple
from compressnet.models.autoencoder import DOWNSAMPLING, Decoder
from compressnet.models.realism import save_realism_decoder
from compressnet.perceptual import DISTS, LPIPS
from compressnet.train.data import find_images, read_photo_scaled
from compressnet.train.losses import discriminator_loss, generator_adversarial_loss


class CachedPhoto(NamedTuple):
    pixels: Tensor  # (3, H, W) uint8, H and W multiples of 16
    symbols: Tensor  # (C, H/16, W/16) int8, every latent channel


def build_cache(codec: Codec, files: list[Path], max_side: int, path: Path,
                progress: bool = True) -> list[CachedPhoto]:
    """Encode each photo once (scaled to at most ``max_side``, cropped to multiples of 16);
    saved to ``path`` so a resumed run does not encode again."""
    if path.exists():
        return [CachedPhoto(*item) for item in torch.load(path, weights_only=True)]
    cache = []
    for file in tqdm(files, desc="encoding photos", unit="photo", disable=not progress):
        arr = read_photo_scaled(file, max_side)
        h, w = (arr.shape[0] // DOWNSAMPLING) * DOWNSAMPLING, (arr.shape[1] // DOWNSAMPLING) * DOWNSAMPLING
        if min(h, w) < 8 * DOWNSAMPLING:
            continue
        arr = np.ascontiguousarray(arr[:h, :w])
        x = pad_to_multiple(torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 255, DOWNSAMPLING)
        y, _ = codec._encode(x)
        with torch.no_grad():
            _, symbols = codec.model.quantizer(y)
        cache.append(CachedPhoto(torch.from_numpy(arr).permute(2, 0, 1).contiguous(),
                                 symbols[0].to(torch.int8)))
    tmp = path.with_suffix(".tmp")
    torch.save([tuple(c) for c in cache], tmp)
    tmp.replace(path)
    return cache


class Discriminator(nn.Module):
    """HiFiC's conditional patch discriminator, narrowed for CPU training: the latent is
    mapped to 12 channels, upsampled to the image (nearest) and stacked with it; four
    stride-2 4x4 convolutions with spectral norm, then one logit per 16x16 patch."""

    def __init__(self, latent_channels: int, widths: tuple[int, ...] = (32, 64, 128, 256)) -> None:
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm
        self.latent = sn(nn.Conv2d(latent_channels, 12, 3, padding=1))
        layers: list[nn.Module] = []
        channels = 3 + 12
        for width in widths:
            layers += [sn(nn.Conv2d(channels, width, 4, 2, 1)), nn.LeakyReLU(0.2)]
            channels = width
        layers.append(sn(nn.Conv2d(channels, 1, 1)))
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor, y_hat: Tensor) -> Tensor:
        cond = F.interpolate(F.leaky_relu(self.latent(y_hat), 0.2), scale_factor=DOWNSAMPLING, mode="nearest")
        return self.body(torch.cat([x - 0.5, cond], 1))


class RealismConfig(NamedTuple):
    data: str
    out: str
    model: str = "sae-spn"
    preset: str = "lite"
    max_side: int = 768
    crop: int = 128
    batch: int = 8
    steps: int = 20000
    lr: float = 1e-4
    mse_weight: float = 20.0
    adv_weight: float = 0.15
    ema: float = 0.999
    val_photos: int = 8
    val_every: int = 500
    ckpt_every: int = 250
    time_budget_min: float = 0.0  # stop after this many minutes (0: no limit)
    seed: int = 0
    default_realism: float = 1.0  # what `decompress` uses with the exported file unless told
    resume_slim: str = ""  # a slim checkpoint (save_slim) to go on from in a new run folder
    quality_weights: str = ""  # relative draw weight of each quality, "2,1,1,1,1,1" (empty: even)


def _crops(cache: list[CachedPhoto], batch: int, crop: int, keeps: list[int], levels: int,
           rng: random.Random, weights: list[float] | None = None) -> tuple[Tensor, Tensor, int]:
    """A batch of aligned (photo, latent) crops with one channel count (no flips: a flipped
    latent is not the flipped photo's latent)."""
    keep = rng.choices(keeps, weights)[0] if weights else rng.choice(keeps)
    c = crop // DOWNSAMPLING
    xs, ys = [], []
    for _ in range(batch):
        photo = cache[rng.randrange(len(cache))]
        lh, lw = photo.symbols.shape[1:]
        top, left = rng.randrange(lh - c + 1), rng.randrange(lw - c + 1)
        y = photo.symbols[:, top:top + c, left:left + c].float() - (levels - 1) // 2
        x = photo.pixels[:, top * DOWNSAMPLING:(top + c) * DOWNSAMPLING,
                         left * DOWNSAMPLING:(left + c) * DOWNSAMPLING].float() / 255
        xs.append(x)
        ys.append(y)
    y_hat = torch.stack(ys)
    y_hat[:, keep:] = 0
    return torch.stack(xs), y_hat, keep


SLIM_PARTS = ("decoder", "ema", "disc")


def parse_quality_weights(text: str, qualities: int) -> list[float] | None:
    """"2,1,1,1,1,1" -> one draw weight per quality (None: every quality as often)."""
    if not text:
        return None
    try:
        weights = [float(w) for w in text.split(",")]
    except ValueError:
        raise ValueError(f"--quality-weights: numbers separated by commas, not {text!r}") from None
    if len(weights) != qualities or min(weights) < 0 or not sum(weights) > 0:
        raise ValueError(f"--quality-weights needs {qualities} non-negative weights, not all zero")
    return weights


def save_slim(checkpoint: str | Path, out: str | Path) -> Path:
    """A run's checkpoint without its optimiser state, its weights in fp16 (safetensors): what a
    later session, maybe on a fresh machine, goes on from (``--resume-slim``)."""
    from compressnet.models.io import write_arrays

    state = torch.load(checkpoint, weights_only=False)
    arrays = {f"{part}.{k}": v.detach().cpu().half().numpy()
              for part in SLIM_PARTS for k, v in state[part].items() if v.is_floating_point()}
    meta = {"format": "compressnet-realism-slim/1", "step": str(state["step"]),
            "seconds": f"{state.get('seconds', 0.0):.0f}"}
    return write_arrays(out, arrays, meta)


def load_slim(path: str | Path, decoder: nn.Module, ema: nn.Module, disc: nn.Module
              ) -> tuple[int, float]:
    from compressnet.models.io import read_arrays

    arrays, meta = read_arrays(Path(path), "compressnet-realism-slim/1", "slim checkpoint",
                               "a slim realism checkpoint")
    for part, module in zip(SLIM_PARTS, (decoder, ema, disc)):
        state = module.state_dict()
        for k in state:
            if f"{part}.{k}" in arrays:
                state[k] = torch.from_numpy(arrays[f"{part}.{k}"].astype(np.float32))
        module.load_state_dict(state)
    return int(meta["step"]), float(meta["seconds"])


@torch.no_grad()
def validate(decoder: Decoder, photos: list[CachedPhoto], keeps: list[int], levels: int,
             correct: colour_layer.Corrections, metrics: dict[str, nn.Module]) -> dict[str, float]:
    """Mean PSNR, LPIPS-Alex, LPIPS-VGG and DISTS over held-out photos at each channel count."""
    out: dict[str, float] = {}
    for keep in keeps:
        sums: dict[str, float] = {}
        for photo in photos:
            x = photo.pixels[None].float() / 255
            y_hat = photo.symbols[None].float() - (levels - 1) // 2
            y_hat[:, keep:] = 0
            x_c = correct(decoder(y_hat).x_hat, x, keep).clamp(0, 1)
            x_c = (x_c * 255).round() / 255  # what a decoded PNG holds
            scores = {"psnr": -10 * math.log10(max(F.mse_loss(x_c, x).item(), 1e-12))}
            scores.update({name: float(m(x_c, x)) for name, m in metrics.items()})
            for k, v in scores.items():
                sums[k] = sums.get(k, 0.0) + v / len(photos)
        out.update({f"{k}@{keep}": round(v, 4) for k, v in sums.items()})
    return out


# C901: one readable recipe top to bottom (set-up, resume, the two losses, EMA, validation), as
# tensorflow/compression writes them; split, the steps would need a dozen shared names passed.
def train_realism(cfg: RealismConfig, progress: bool = True) -> Path:  # noqa: C901
    """Train (or resume) a realism decoder; returns the exported fp16 decoder file."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg._asdict(), indent=1))
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    codec = load(cfg.model, cfg.preset)
    files = find_images(cfg.data)
    random.Random(1234).shuffle(files)  # the held-out photos do not depend on the run's seed
    cache = build_cache(codec, files, cfg.max_side, out / "latents.pt", progress)
    val, train = cache[:cfg.val_photos], cache[cfg.val_photos:]
    train = [p for p in train if min(p.symbols.shape[1:]) * DOWNSAMPLING >= cfg.crop]
    levels = codec.cfg.levels
    keeps = list(codec.cfg.qualities)

    decoder = copy.deepcopy(codec.model.decoder).float().train()
    ema = copy.deepcopy(decoder).eval().requires_grad_(False)
    disc = Discriminator(codec.cfg.latent_channels)
    opt_g = torch.optim.Adam(decoder.parameters(), lr=cfg.lr)
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr)
    lpips_alex = LPIPS("alex")
    correct = colour_layer.Corrections(codec.cfg.latent_channels)
    step, seconds = 0, 0.0  # seconds: training time of the earlier runs of a resumed one
    ckpt_path, log_path = out / "checkpoint.pt", out / "log.jsonl"
    if ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=False)
        decoder.load_state_dict(state["decoder"])
        ema.load_state_dict(state["ema"])
        disc.load_state_dict(state["disc"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        step = state["step"]
        seconds = state.get("seconds", 0.0)
        rng.setstate(state["rng"])
        torch.set_rng_state(state["torch_rng"])
    elif cfg.resume_slim:  # a run carried over from another machine: weights, fresh optimisers
        step, seconds = load_slim(cfg.resume_slim, decoder, ema, disc)
    for group in (*opt_g.param_groups, *opt_d.param_groups):
        group["lr"] = cfg.lr  # a resumed run takes this run's learning rate, not the saved one
    weights = parse_quality_weights(cfg.quality_weights, len(keeps))
    metrics = {"lpips-alex": lpips_alex, "lpips-vgg": LPIPS("vgg"), "dists": DISTS()}
    val_keeps = [keeps[i] for i in (0, 2, 4) if i < len(keeps)]  # qualities 1, 3 and 5

    def log(record: dict) -> None:
        with log_path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def save() -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"decoder": decoder.state_dict(), "ema": ema.state_dict(), "disc": disc.state_dict(),
                    "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "step": step,
                    "seconds": seconds + time.time() - start,
                    "rng": rng.getstate(), "torch_rng": torch.get_rng_state()}, tmp)
        tmp.replace(ckpt_path)
        save_realism_decoder(ema, codec.weights_fingerprint, out / "realism.safetensors",
                             {"steps": str(step), "recipe": json.dumps(cfg._asdict()),
                              "default_realism": f"{cfg.default_realism:g}",
                              "train_seconds": f"{seconds + time.time() - start:.0f}"})

    if step == 0:
        log({"step": 0, "time": time.time(),
             **validate(ema, val, val_keeps, levels, correct, metrics)})
    start = time.time()
    bar = tqdm(total=cfg.steps, initial=step, desc="realism decoder", disable=not progress)
    while step < cfg.steps:
        x, y_hat, keep = _crops(train, cfg.batch, cfg.crop, keeps, levels, rng, weights)
        x_c = correct(decoder(y_hat).x_hat, x, keep)
        fake = disc(x_c, y_hat)
        lp = lpips_alex(x_c, x).mean()
        mse = F.mse_loss(x_c, x)
        adv = generator_adversarial_loss(fake)
        loss = lp + cfg.mse_weight * mse + cfg.adv_weight * adv
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        d_loss = discriminator_loss(disc(x, y_hat), disc(x_c.detach(), y_hat))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        with torch.no_grad():
            for e, p in zip(ema.parameters(), decoder.parameters()):
                e.lerp_(p, 1 - cfg.ema)
        step += 1
        bar.update()
        if step % 50 == 0:
            log({"step": step, "time": time.time(), "keep": keep, "lpips": round(lp.item(), 4),
                 "mse": round(mse.item(), 6), "adv": round(adv.item(), 4), "d": round(d_loss.item(), 4)})
        if step % cfg.ckpt_every == 0:
            save()
        if step % cfg.val_every == 0:
            log({"step": step, "time": time.time(),
                 **validate(ema, val, val_keeps, levels, correct, metrics)})
        if cfg.time_budget_min and time.time() - start > cfg.time_budget_min * 60:
            break
    save()
    return out / "realism.safetensors"


_HELP = {
    "model": "the model whose encoder is frozen: a bundled name or a weights file",
    "max_side": "photos are scaled to at most this side before their latents are cached",
    "crop": "training crop side in pixels (a multiple of 16)",
    "mse_weight": "weight of the MSE term (LPIPS-Alex has weight 1)",
    "adv_weight": "weight of the adversarial term",
    "ema": "decay of the exported weights' moving average",
    "val_photos": "photos held out of training for validation (LPIPS-VGG, DISTS, PSNR)",
    "time_budget_min": "stop after this many minutes (0: at --steps)",
    "default_realism": "the realism `decompress` uses with the exported file unless told",
    "resume_slim": "go on from a slim checkpoint (fp16 weights, no optimiser state) in a new --out",
    "quality_weights": "how often each quality's channel count is drawn, e.g. 2,1,1,1,1,1 "
                       "(empty: evenly)",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="folder of training photos")
    p.add_argument("--out", required=True, help="run folder (resumed if it has a checkpoint)")
    defaults = RealismConfig("", "")
    for field in RealismConfig._fields[2:]:
        value = getattr(defaults, field)
        p.add_argument("--" + field.replace("_", "-"), type=type(value), default=value,
                       help=f"{_HELP.get(field, '')} (default {value})".strip())


def run(args: argparse.Namespace) -> int:
    cfg = RealismConfig(**{k: getattr(args, k) for k in RealismConfig._fields})
    if cfg.crop % DOWNSAMPLING or cfg.crop < 4 * DOWNSAMPLING:
        raise ValueError(f"--crop must be a multiple of {DOWNSAMPLING} of at least {4 * DOWNSAMPLING}")
    path = train_realism(cfg)
    print(f"wrote {path} (decode with: compressnet decompress FILE --realism-decoder {path})")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="compressnet train-realism", description=__doc__.split("\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
