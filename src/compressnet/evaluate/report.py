"""A single self-contained HTML report: plots, tables, BD-rates, and per-image crops at
equal file size (original, CompressNet, HEVC, AVIF, JPEG) for judging by eye."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from compressnet.evaluate import classical
from compressnet.evaluate.bdrate import bd_rate
from compressnet.image import open_image
from compressnet.metrics import ms_ssim, psnr

CROP = 256
SIDE_BY_SIDE = ("hevc", "avif", "hevc@1/2", "avif@1/2", "jpeg")


def _png_uri(pixels: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _file_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _crop(pixels: np.ndarray) -> np.ndarray:
    h, w = pixels.shape[:2]
    top, left = max(0, (h - CROP) // 2), max(0, (w - CROP) // 2)
    return pixels[top:top + CROP, left:left + CROP]


def bd_rate_table(docs: dict[str, dict], anchor: str) -> list[tuple[str, str, str]]:
    """(codec, BD-rate on PSNR, BD-rate on MS-SSIM) against ``anchor``; '-' without overlap."""
    rows = []
    a = docs[anchor]["results"]
    for name, doc in docs.items():
        r = doc["results"]
        cells = []
        for key in ("psnr-rgb", "ms-ssim-rgb"):
            try:
                cells.append(f"{bd_rate(a['bpp'], a[key], r['bpp'], r[key]):+.1f}%")
            except (ValueError, KeyError, np.linalg.LinAlgError):
                cells.append("-")
        rows.append((name, *cells))
    return rows


class Crop(NamedTuple):
    name: str  # "original", the model and quality, or a classical codec
    pixels: np.ndarray  # the centre crop of its decoded image
    bytes: int = 0  # its file's size; the scores are of the whole image
    bpp: float = 0.0
    psnr: float = 0.0
    ms_ssim: float = 0.0
    fits: bool = True  # False: even the codec's smallest file is above CompressNet's
    perceptual: dict[str, float] | None = None  # LPIPS-Alex, LPIPS-VGG, DISTS where measured

    @property
    def label(self) -> str:
        if not self.bytes:
            return self.name
        extra = "".join(f", {k.upper()} {v:.3f}" for k, v in (self.perceptual or {}).items()
                        if k != "lpips-alex")
        return (f"{self.name}: {self.bytes} B, {self.bpp:.3f} bpp, {self.psnr:.2f} dB, MS-SSIM "
                f"{self.ms_ssim:.3f}{extra}" + ("" if self.fits else " (its smallest file is larger)"))


def equal_size_crops(codec, pixels: np.ndarray, quality: int, codecs=SIDE_BY_SIDE,
                     scorer=None) -> list[Crop]:
    """Centre crops of the original, CompressNet at ``quality`` (with each decoder it has:
    faithful, and realism 1 where there is a realism decoder), and each classical codec at the
    largest file not above CompressNet's (the HTML report's panels, the README's figure).
    ``scorer`` (:class:`compressnet.perceptual.PerceptualScorer`) adds LPIPS and DISTS."""
    h, w = pixels.shape[:2]

    def crop(name: str, size: int, decoded: np.ndarray, fits: bool = True) -> Crop:
        return Crop(name, _crop(decoded), size, size * 8 / (h * w), psnr(pixels, decoded),
                    ms_ssim(pixels, decoded), fits, scorer(pixels, decoded) if scorer else None)

    data = codec.compress(pixels, quality=quality)
    crops = [Crop("original", _crop(pixels)),
             crop(f"{codec.name} q{quality}" + (", realism 0" if codec.realism else ""), len(data),
                  codec.decompress_array(data))]
    if codec.realism:
        crops.append(crop(f"{codec.name} q{quality}, realism 1", len(data),
                          codec.decompress_array(data, realism=1.0)))
    for name in codecs:
        if classical.available(name):
            continue
        match = classical.largest_under(classical.CODECS[name], pixels, len(data))
        decoded = classical.CODECS[name].decode(match.data, size=(w, h))
        crops.append(crop(name, len(match.data), decoded, match.fits))
    return crops


def image_panels(codec, files: list[Path], quality: int, scorer=None
                 ) -> list[tuple[str, list[tuple[str, str]]]]:
    """Per image: :func:`equal_size_crops` as (caption, PNG data URI) pairs."""
    return [(path.name, [(crop.label, _png_uri(crop.pixels))
                         for crop in equal_size_crops(codec, open_image(path), quality, scorer=scorer)])
            for path in files]


def write_report(out: Path, docs: dict[str, dict], plot_png: Path, anchor: str | None,
                 panels: list[tuple[str, list[tuple[str, str]]]], notes: list[str]) -> Path:
    e = html.escape
    parts = ["<!doctype html><meta charset='utf-8'><title>CompressNet rate-distortion report</title>",
             "<style>body{font-family:sans-serif;max-width:1400px;margin:auto}table{border-collapse:"
             "collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}figure{display:"
             "inline-block;margin:4px}figcaption{font-size:12px;max-width:256px}</style>",
             "<h1>Rate-distortion report</h1>",
             f"<img alt='rate-distortion plot' src='{_file_uri(plot_png)}' style='max-width:100%'>"]
    parts += [f"<p>{e(n)}</p>" for n in notes]
    extra = [m for m in ("lpips-alex", "lpips-vgg", "dists") if any(m in d["results"] for d in docs.values())]
    parts.append("<h2>Mean results</h2><table><tr><th>codec</th><th>point</th><th>bpp</th>"
                 "<th>PSNR</th><th>MS-SSIM</th>" + "".join(f"<th>{m.upper()}</th>" for m in extra)
                 + "<th>images above target</th></tr>")
    for name, doc in docs.items():
        r = doc["results"]
        for i in range(len(r["bpp"])):
            cells = "".join(f"<td>{r[m][i]:.4f}</td>" if m in r else "<td></td>" for m in extra)
            parts.append(f"<tr><td>{e(name)}</td><td>{e(str(r['point'][i]))}</td><td>{r['bpp'][i]:.4f}</td>"
                         f"<td>{r['psnr-rgb'][i]:.2f}</td><td>{r['ms-ssim-rgb'][i]:.4f}</td>{cells}"
                         f"<td>{r['above-target'][i] or ''}</td></tr>")
    parts.append("</table>")
    if anchor and anchor in docs:
        parts.append(f"<h2>BD-rate against {e(anchor)}</h2><table><tr><th>codec</th>"
                     "<th>on PSNR</th><th>on MS-SSIM</th></tr>")
        parts += [f"<tr><td>{e(n)}</td><td>{p}</td><td>{m}</td></tr>"
                  for n, p, m in bd_rate_table(docs, anchor)]
        parts.append("</table>")
    parts.append("<h2>Per image, at equal file size (centre crops)</h2>")
    for name, tiles in panels:
        parts.append(f"<h3 id='{e(name)}'>{e(name)}</h3><div>")
        parts += [f"<figure><img alt='{e(cap)}' src='{uri}'><figcaption>{e(cap)}</figcaption></figure>"
                  for cap, uri in tiles]
        parts.append("</div>")
    out.write_text("\n".join(parts) + "\n")
    return out
