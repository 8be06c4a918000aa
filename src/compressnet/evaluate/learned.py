"""Evaluate a CompressNet codec on a folder: real file bytes, PSNR, MS-SSIM, timings."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from compressnet.codec import Codec
from compressnet.image import IMAGE_SUFFIXES, open_image
from compressnet.metrics import ms_ssim, psnr
from compressnet.models.layers import switch_classes


class ImageResult(NamedTuple):
    image: str
    quality: int
    bytes: int
    bpp: float
    fixed_length_bpp: float
    psnr: float
    ms_ssim: float
    switch_accuracy: float | None  # SAE-SPN only: predicted vs true finest-level switches
    encoding_time: float
    decoding_time: float
    lpips_alex: float = float("nan")  # with a perceptual scorer (compressnet.perceptual)
    lpips_vgg: float = float("nan")
    dists: float = float("nan")


PERCEPTUAL = {"lpips_alex": "lpips-alex", "lpips_vgg": "lpips-vgg", "dists": "dists"}


def list_images(folder: str | Path) -> list[Path]:
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{folder}: no images found")
    return files


def _switch_accuracy(codec: Codec, pixels: np.ndarray, quality: int) -> float | None:
    import torch

    from compressnet.image import pad_to_multiple, to_tensor
    from compressnet.models.autoencoder import DOWNSAMPLING

    if codec.cfg.arch != "sae-spn":
        return None
    with torch.inference_mode():
        x = pad_to_multiple(to_tensor(pixels), DOWNSAMPLING)
        y_hat, _, enc = codec.model.encode(x, codec.channels_sent(quality))
        logits = codec.model.decode(y_hat).switch_logits
        hits = [(switch_classes(lg) == enc.switches[lv]).float().mean().item() for lv, lg in logits.items()]
    return float(np.mean(hits))


def evaluate_codec(codec: Codec, files: list[Path], qualities: list[int] | None = None,
                   progress: bool = True, scorer=None, realism: float = 0.0) -> list[ImageResult]:
    """Real bytes, PSNR, MS-SSIM (and LPIPS and DISTS with ``scorer``, a
    :class:`compressnet.perceptual.PerceptualScorer`) per image and quality, decoded at
    ``realism``."""
    qualities = qualities or list(codec.qualities)
    results = []
    bar = tqdm(total=len(files) * len(qualities), desc=codec.name, disable=not progress, unit="img")
    for path in files:
        pixels = open_image(path)
        h, w = pixels.shape[:2]
        for q in qualities:
            t0 = time.perf_counter()
            enc = codec.encode(pixels, q)
            t1 = time.perf_counter()
            decoded = codec.decompress_array(enc.data, realism=realism)
            t2 = time.perf_counter()
            scores = {} if scorer is None else {
                field: scorer(pixels, decoded)[name] for field, name in PERCEPTUAL.items()}
            results.append(ImageResult(path.name, q, len(enc.data), enc.bpp, enc.fixed_length_bpp,
                                       psnr(pixels, decoded), ms_ssim(pixels, decoded),
                                       _switch_accuracy(codec, pixels, q), t1 - t0, t2 - t1, **scores))
            bar.update(1)
    bar.close()
    return results


def summarize(results: list[ImageResult]) -> list[dict]:
    """Mean of every field per quality, in quality order."""
    out = []
    for q in sorted({r.quality for r in results}):
        rows = [r for r in results if r.quality == q]
        mean = {f: float(np.mean([getattr(r, f) for r in rows])) for f in ImageResult._fields
                if f not in ("image", "quality", "switch_accuracy")}  # NaN where not measured
        accs = [r.switch_accuracy for r in rows if r.switch_accuracy is not None]
        mean["switch_accuracy"] = float(np.mean(accs)) if accs else None
        out.append({"quality": q, "images": len(rows), **mean})
    return out


def write_results(results: list[ImageResult], name: str, out_dir: str | Path,
                  description: str = "") -> tuple[Path, Path]:
    """CompressAI-format JSON (means per quality) and a per-image CSV."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(results)
    doc = {"name": name, "description": description, "results": {
        "quality": [s["quality"] for s in summary],
        "bpp": [s["bpp"] for s in summary],
        "fixed-length-bpp": [s["fixed_length_bpp"] for s in summary],
        "psnr-rgb": [s["psnr"] for s in summary],
        "ms-ssim-rgb": [s["ms_ssim"] for s in summary],
        "switch-accuracy": [s["switch_accuracy"] for s in summary],
        "encoding_time": [s["encoding_time"] for s in summary],
        "decoding_time": [s["decoding_time"] for s in summary],
    }}
    for field, key in PERCEPTUAL.items():
        if not any(np.isnan(s[field]) for s in summary):
            doc["results"][key] = [s[field] for s in summary]
    json_path = out_dir / f"{name}.json"
    json_path.write_text(json.dumps(doc, indent=2) + "\n")
    csv_path = out_dir / f"{name}.csv"
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(ImageResult._fields)
        writer.writerows(results)
    return json_path, csv_path


def format_table(summary: list[dict]) -> str:
    """Means per quality; LPIPS and DISTS columns (lower is better) where they were measured."""
    extra = [f for f in PERCEPTUAL if summary and not np.isnan(summary[0][f])]
    heads = ["quality", "real bpp", "fixed-length bpp", "PSNR (dB)", "MS-SSIM",
             *(PERCEPTUAL[f].upper() for f in extra), "switch acc.", "enc s", "dec s"]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for s in summary:
        acc = f"{s['switch_accuracy']:.1%}" if s["switch_accuracy"] is not None else "-"
        cells = [str(s["quality"]), f"{s['bpp']:.4f}", f"{s['fixed_length_bpp']:.4f}", f"{s['psnr']:.2f}",
                 f"{s['ms_ssim']:.4f}", *(f"{s[f]:.4f}" for f in extra), acc,
                 f"{s['encoding_time']:.2f}", f"{s['decoding_time']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
