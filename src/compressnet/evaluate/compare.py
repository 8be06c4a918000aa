"""Matched-rate comparison of learned models and classical codecs over a folder.

Every (codec, image, point) result is cached as one small JSON file under
``OUT/cache/``, so an interrupted run resumes where it stopped.  Classical codecs
encode in parallel over images (processes); learned models run in this process.
"""

from __future__ import annotations

import csv
import hashlib
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from compressnet.evaluate import classical
from compressnet.image import open_image
from compressnet.metrics import ms_ssim, psnr

DEFAULT_TARGETS = (0.03, 0.05, 0.075, 0.1, 0.15)


class Row(NamedTuple):
    codec: str
    image: str
    point: str  # "q3" for a learned quality, "0.050" for a target bpp
    setting: int
    bytes: int
    bpp: float
    psnr: float
    ms_ssim: float
    above_target: bool  # the codec's smallest file is above the target (its floor)
    encoding_time: float
    decoding_time: float
    lpips: float = float("nan")
    dists: float = float("nan")


class Scorer:
    """Optional perceptual metrics, built from the user's weight files (see perceptual.py)."""

    def __init__(self, lpips_backbone: str | None = None, lpips_lin: str | None = None,
                 dists_weights: str | None = None, fid_model: str | None = None) -> None:
        from compressnet.evaluate import perceptual

        self.paths = (lpips_backbone, lpips_lin, dists_weights, fid_model)
        self.lpips = perceptual.LPIPS(lpips_backbone, lpips_lin) if lpips_backbone and lpips_lin else None
        self.dists = perceptual.DISTS(lpips_backbone, dists_weights) \
            if lpips_backbone and dists_weights else None
        self.features = perceptual.FeatureExtractor(fid_model) if fid_model else None

    def patch_features(self, pixels: np.ndarray) -> np.ndarray | None:
        from compressnet.evaluate.perceptual import patches

        return None if self.features is None else self.features(patches(pixels))


_SCORER: Scorer | None = None


def _init_worker(paths: tuple) -> None:
    global _SCORER
    _SCORER = Scorer(*paths) if any(paths) else None


def _measure(name: str, pixels: np.ndarray, data: bytes, decode, enc_time: float, point: str,
             setting: int, above: bool, image: str) -> tuple[Row, np.ndarray | None]:
    t0 = time.perf_counter()
    decoded = decode(data)
    dec_time = time.perf_counter() - t0
    h, w = pixels.shape[:2]
    s = _SCORER
    row = Row(name, image, point, setting, len(data), len(data) * 8 / (h * w), psnr(pixels, decoded),
              ms_ssim(pixels, decoded), above, enc_time, dec_time,
              s.lpips(pixels, decoded) if s and s.lpips else float("nan"),
              s.dists(pixels, decoded) if s and s.dists else float("nan"))
    return row, (s.patch_features(decoded) if s else None)


def classical_rows(name: str, path: str, targets: tuple[float, ...]) -> list[tuple[Row, np.ndarray | None]]:
    """All target points of one classical codec on one image (runs in a worker process)."""
    import torch

    torch.set_num_threads(1)
    codec = classical.CODECS[name].memoized()  # the targets' searches share many settings
    pixels = open_image(path)
    h, w = pixels.shape[:2]
    rows = []
    for target in targets:
        t0 = time.perf_counter()
        match = classical.largest_under(codec, pixels, int(target * h * w // 8))
        enc_time = time.perf_counter() - t0
        rows.append(_measure(name, pixels, match.data, codec.decode, enc_time, f"{target:.3f}",
                             match.setting, not match.fits, Path(path).name))  # (row, features)
    return rows


def learned_name(codec, refine: int = 0) -> str:
    """Rows of a refined encoder are their own curve: ``sae-spn-lite+refine10``."""
    name = codec.name if codec.writes_colour_layer else f"{codec.name}-no-colour-layer"
    return f"{name}+refine{refine}" if refine else name


def learned_rows(codec, path: Path, qualities: list[int], refine: int = 0
                 ) -> list[tuple[Row, np.ndarray | None]]:
    pixels = open_image(path)
    rows = []
    for q in qualities:
        t0 = time.perf_counter()
        data = codec.compress(pixels, quality=q, refine=refine)
        rows.append(_measure(learned_name(codec, refine), pixels, data, codec.decompress_array,
                             time.perf_counter() - t0, f"q{q}", q, False, path.name))
    return rows


class Cache:
    """One JSON file (+ an .npy of patch features for FID/KID) per (codec, image, points)."""

    def __init__(self, root: Path, tag: str = "") -> None:
        self.root = root
        self.tag = tag  # which perceptual metrics were on: a different set is a different entry

    def _path(self, codec: str, image: Path, key: str) -> Path:
        ident = f"{image.resolve()}|{image.stat().st_size}|{key}|{self.tag}"
        return self.root / codec / f"{image.stem}-{hashlib.sha1(ident.encode()).hexdigest()[:16]}.json"

    def get(self, codec: str, image: Path, key: str) -> list[tuple[Row, np.ndarray | None]] | None:
        path = self._path(codec, image, key)
        if not path.is_file():
            return None
        rows = [Row(**r) for r in json.loads(path.read_text())]
        feats = path.with_suffix(".npy")
        stacked = np.load(feats) if feats.is_file() else None
        return [(r, None if stacked is None else stacked[i]) for i, r in enumerate(rows)]

    def put(self, codec: str, image: Path, key: str, items: list[tuple[Row, np.ndarray | None]]) -> None:
        path = self._path(codec, image, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        if items and items[0][1] is not None:
            np.save(path.with_suffix(".npy"), np.stack([f for _, f in items]))
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps([r._asdict() for r, _ in items]))
        tmp.replace(path)  # the JSON lands last: its presence means the entry is whole


Items = list[tuple[Row, "np.ndarray | None"]]


def run_classical(names: list[str], files: list[Path], targets: tuple[float, ...], cache: Cache,
                  workers: int | None = None, progress: bool = True, scorer_paths: tuple = ()) -> Items:
    key = "targets:" + ",".join(f"{t:.4f}" for t in targets)
    items: Items = []
    todo = []
    for name in names:
        for f in files:
            cached = cache.get(name, f, key)
            if cached is None:
                todo.append((name, f))
            else:
                items += cached
    if not todo:
        return items
    bar = tqdm(total=len(todo), desc="classical codecs", disable=not progress, unit="img")
    workers = workers or min(len(todo), os.cpu_count() or 1)
    # spawn, not fork: a forked child of a process that has used torch's OpenMP pool can hang
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(tuple(scorer_paths),),
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(classical_rows, name, str(f), targets): (name, f) for name, f in todo}
        for future in futures:
            name, f = futures[future]
            result = future.result()
            cache.put(name, f, key, result)
            items += result
            bar.update(1)
    bar.close()
    return items


def run_learned(codec, files: list[Path], qualities: list[int], cache: Cache,
                progress: bool = True, scorer_paths: tuple = (), refine: int = 0) -> Items:
    global _SCORER
    name = learned_name(codec, refine)
    key = f"{codec.fingerprint.hex()}:v{codec.version_written()}:" + ",".join(map(str, qualities))
    items: Items = []
    for f in tqdm(files, desc=name, disable=not progress, unit="img"):
        cached = cache.get(name, f, key)
        if cached is None:
            if any(scorer_paths) and _SCORER is None:
                _init_worker(tuple(scorer_paths))
            cached = learned_rows(codec, f, qualities, refine)
            cache.put(name, f, key, cached)
        items += cached
    return items


def distribution_metrics(items: Items, files: list[Path], scorer_paths: tuple) -> dict[tuple[str, str], dict]:
    """FID and KID per (codec, point) over 256x256 patches of all images."""
    from compressnet.evaluate.perceptual import fid, kid

    scorer = Scorer(*scorer_paths)
    if scorer.features is None:
        return {}
    real = np.concatenate([scorer.patch_features(open_image(f)) for f in files])
    out = {}
    for key in dict.fromkeys((r.codec, r.point) for r, _ in items):
        fake = [feats for r, feats in items if (r.codec, r.point) == key and feats is not None]
        if fake:
            fake_all = np.concatenate(fake)
            out[key] = {"fid": fid(real, fake_all), "kid": kid(real, fake_all)}
    return out


def summarize(rows: list[Row], distribution: dict | None = None) -> dict[str, dict]:
    """CompressAI-schema result documents, one per codec, points in rate order."""
    distribution = distribution or {}
    docs: dict[str, dict] = {}
    for name in dict.fromkeys(r.codec for r in rows):
        mine = [r for r in rows if r.codec == name]
        points = list(dict.fromkeys(r.point for r in mine))
        res: dict[str, list] = {k: [] for k in ("point", "bpp", "psnr-rgb", "ms-ssim-rgb",
                                                "encoding_time", "decoding_time", "above-target")}
        for p in points:
            sel = [r for r in mine if r.point == p]
            res["point"].append(p)
            res["bpp"].append(float(np.mean([r.bpp for r in sel])))
            res["psnr-rgb"].append(float(np.mean([r.psnr for r in sel])))
            res["ms-ssim-rgb"].append(float(np.mean([r.ms_ssim for r in sel])))
            res["encoding_time"].append(float(np.mean([r.encoding_time for r in sel])))
            res["decoding_time"].append(float(np.mean([r.decoding_time for r in sel])))
            res["above-target"].append(sum(r.above_target for r in sel))
            for metric in ("lpips", "dists"):
                values = [getattr(r, metric) for r in sel]
                if not np.isnan(values).all():
                    res.setdefault(metric, []).append(float(np.nanmean(values)))
            for metric, value in distribution.get((name, p), {}).items():
                res.setdefault(metric, []).append(value)
        order = np.argsort(res["bpp"], kind="stable")
        res = {k: [v[i] for i in order] for k, v in res.items()}
        images = len({r.image for r in mine})
        note = classical.CODECS[name].note if name in classical.CODECS else ""
        docs[name] = {"name": name, "description": f"{name} on {images} images; mean per point; "
                      f"'above-target' counts images whose smallest file exceeds the target. {note}".strip(),
                      "results": res}
    return docs


def write_outputs(rows: list[Row], out_dir: Path, distribution: dict | None = None) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, doc in summarize(rows, distribution).items():
        path = out_dir / f"{name}.json"
        path.write_text(json.dumps(doc, indent=2) + "\n")
        paths.append(path)
    with (out_dir / "per-image.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(Row._fields)
        writer.writerows(rows)
    return paths


def format_table(docs: dict[str, dict]) -> str:
    lines = ["| codec | point | bpp | PSNR (dB) | MS-SSIM | images above target |",
             "|---|---|---|---|---|---|"]
    for name, doc in docs.items():
        r = doc["results"]
        for i in range(len(r["bpp"])):
            lines.append(f"| {name} | {r['point'][i]} | {r['bpp'][i]:.4f} | {r['psnr-rgb'][i]:.2f} | "
                         f"{r['ms-ssim-rgb'][i]:.4f} | {r['above-target'][i] or ''} |")
    return "\n".join(lines)
