"""A single self-contained HTML report: plots, tables, BD-rates, and per-image crops at
equal file size (original, CompressNet, HEVC, AVIF, JPEG) for judging by eye."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
from PIL import Image

from compressnet.evaluate import classical
from compressnet.evaluate.bdrate import bd_rate
from compressnet.image import open_image
from compressnet.metrics import psnr

CROP = 256
SIDE_BY_SIDE = ("hevc", "avif", "jpeg")


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


def image_panels(codec, files: list[Path], quality: int) -> list[tuple[str, list[tuple[str, str]]]]:
    """Per image: crops of the original, CompressNet at ``quality``, and classical codecs at
    the largest size not above CompressNet's file."""
    panels = []
    for path in files:
        pixels = open_image(path)
        h, w = pixels.shape[:2]
        data = codec.compress(pixels, quality=quality)
        ours = codec.decompress_array(data)
        tiles = [("original", _png_uri(_crop(pixels))),
                 (f"{codec.name} q{quality}: {len(data)} B, {len(data) * 8 / (h * w):.3f} bpp, "
                  f"{psnr(pixels, ours):.2f} dB", _png_uri(_crop(ours)))]
        for name in SIDE_BY_SIDE:
            if classical.available(name):
                continue
            c = classical.CODECS[name]
            match = classical.largest_under(c, pixels, len(data))
            decoded = c.decode(match.data)
            flag = "" if match.fits else " (its smallest file is larger)"
            tiles.append((f"{name}: {len(match.data)} B, {len(match.data) * 8 / (h * w):.3f} bpp, "
                          f"{psnr(pixels, decoded):.2f} dB{flag}", _png_uri(_crop(decoded))))
        panels.append((path.name, tiles))
    return panels


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
    parts.append("<h2>Mean results</h2><table><tr><th>codec</th><th>point</th><th>bpp</th>"
                 "<th>PSNR</th><th>MS-SSIM</th><th>images above target</th></tr>")
    for name, doc in docs.items():
        r = doc["results"]
        for i in range(len(r["bpp"])):
            parts.append(f"<tr><td>{e(name)}</td><td>{e(str(r['point'][i]))}</td><td>{r['bpp'][i]:.4f}</td>"
                         f"<td>{r['psnr-rgb'][i]:.2f}</td><td>{r['ms-ssim-rgb'][i]:.4f}</td>"
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
