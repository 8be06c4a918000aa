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
from compressnet.models import refine as refine_search

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
    lpips_alex: float = float("nan")
    lpips_vgg: float = float("nan")
    dists: float = float("nan")
    fixed_length_bpp: float = float("nan")  # a learned model's: sent symbols * log2(L) / pixels
    switch_accuracy: float = float("nan")  # SAE-SPN's: predicted vs true finest-level switches


PERCEPTUAL_FIELDS = {"lpips-alex": "lpips_alex", "lpips-vgg": "lpips_vgg", "dists": "dists"}
LEARNED_FIELDS = {"fixed-length-bpp": "fixed_length_bpp", "switch-accuracy": "switch_accuracy"}


class Scorer:
    """LPIPS-Alex, LPIPS-VGG and DISTS from the installed packages' weights (see
    :mod:`compressnet.perceptual`), a user's own weight files in their place, and FID/KID
    features from a user's extractor."""

    def __init__(self, lpips_backbone: str | None = None, lpips_lin: str | None = None,
                 dists_weights: str | None = None, fid_model: str | None = None,
                 built_in: bool = True) -> None:
        from compressnet import perceptual as metrics
        from compressnet.evaluate import perceptual

        self.paths = (lpips_backbone, lpips_lin, dists_weights, fid_model)
        self.key = (self.paths, built_in)  # what it was built for
        chosen: dict = {}
        if built_in and metrics.unavailable() is None:
            chosen = {"lpips-alex": metrics.LPIPS("alex"), "lpips-vgg": metrics.LPIPS("vgg"),
                      "dists": metrics.DISTS()}
        if lpips_backbone and lpips_lin:
            kind = metrics.backbone_kind(lpips_backbone)
            chosen[f"lpips-{kind}"] = metrics.LPIPS(kind, lpips_backbone, lpips_lin)
        if lpips_backbone and dists_weights:
            chosen["dists"] = metrics.DISTS(lpips_backbone, dists_weights)
        self.perceptual = metrics.PerceptualScorer(chosen) if chosen else None
        self.features = perceptual.FeatureExtractor(fid_model) if fid_model else None

    def scores(self, pixels: np.ndarray, decoded: np.ndarray) -> dict[str, float]:
        """Row fields (``lpips_alex``, ...) of the perceptual metrics available."""
        if self.perceptual is None:
            return {}
        return {PERCEPTUAL_FIELDS[k]: round(v, 6) for k, v in self.perceptual(pixels, decoded).items()}

    def patch_features(self, pixels: np.ndarray) -> np.ndarray | None:
        from compressnet.evaluate.perceptual import patches

        return None if self.features is None else self.features(patches(pixels))


_SCORER: Scorer | None = None


def _init_worker(paths: tuple, built_in: bool = True) -> None:
    global _SCORER
    _SCORER = Scorer(*paths, built_in=built_in)


def scorer_tag(paths: tuple, built_in: bool = True) -> str:
    """What the cache keys on besides the codec: the metrics computed (a different set is a
    different entry). ``built_in=False``: without the installed packages' LPIPS and DISTS."""
    from compressnet import perceptual

    on = built_in and perceptual.unavailable() is None
    # The strings 0.8.0 wrote, so its caches stay valid: it marked the built-in metrics being
    # *on* with "no-perceptual" (a misnomer kept for the cache's sake) and off with "".
    return "|".join(["metrics2", "no-perceptual" if on else "", *(str(p) for p in paths if p)])


def _measure(name: str, pixels: np.ndarray, data: bytes, decode, enc_time: float, point: str,
             setting: int, above: bool, image: str) -> tuple[Row, np.ndarray | None]:
    t0 = time.perf_counter()
    decoded = decode(data)
    dec_time = time.perf_counter() - t0
    h, w = pixels.shape[:2]
    s = _SCORER
    row = Row(name, image, point, setting, len(data), len(data) * 8 / (h * w), psnr(pixels, decoded),
              ms_ssim(pixels, decoded), above, enc_time, dec_time, **(s.scores(pixels, decoded) if s else {}))
    return row, (s.patch_features(decoded) if s else None)


Budgets = tuple[tuple[str, int], ...]  # (point, the most bytes a file may have) per point


def target_budgets(targets: tuple[float, ...], height: int, width: int) -> Budgets:
    return tuple((f"{t:.3f}", int(t * height * width // 8)) for t in targets)


def classical_rows(name: str, path: str, targets: tuple[float, ...] = (), budgets: Budgets = ()
                   ) -> list[tuple[Row, np.ndarray | None]]:
    """One classical codec on one image (runs in a worker process), at each target bpp or
    each byte budget (``budgets``: a learned model's file sizes for this image)."""
    import functools

    import torch

    torch.set_num_threads(1)
    codec = classical.CODECS[name].memoized()  # the targets' searches share many settings
    pixels = open_image(path)
    h, w = pixels.shape[:2]
    decode = functools.partial(codec.decode, size=(w, h))
    rows = []
    for point, max_bytes in budgets or target_budgets(targets, h, w):
        t0 = time.perf_counter()
        match = classical.largest_under(codec, pixels, max_bytes)
        enc_time = time.perf_counter() - t0
        rows.append(_measure(name, pixels, match.data, decode, enc_time, point,
                             match.setting, not match.fits, Path(path).name))  # (row, features)
    return rows


def learned_name(codec, refine: int = 0, realism: float = 0.0) -> str:
    """Rows of a refined encoder or another decoder are their own curve:
    ``sae-spn-lite+refine10``, ``sae-spn-lite@realism1``."""
    name = codec.name if codec.writes_colour_layer else f"{codec.name}-no-colour-layer"
    name = f"{name}+refine{refine}" if refine else name
    return f"{name}@realism{realism:g}" if realism else name


def switch_accuracy(codec, pixels: np.ndarray, quality: int) -> float:
    """SAE-SPN: how often the decoder's predicted max-pool switches are the encoder's (NaN for
    the other architectures, which send them or have none)."""
    import torch

    from compressnet.image import pad_to_multiple, to_tensor
    from compressnet.models.autoencoder import DOWNSAMPLING
    from compressnet.models.layers import switch_classes

    if codec.cfg.arch != "sae-spn":
        return float("nan")
    with torch.inference_mode():
        x = pad_to_multiple(to_tensor(pixels), DOWNSAMPLING)
        y_hat, _, enc = codec.model.encode(x, codec.channels_sent(quality))
        logits = codec.model.decode(y_hat).switch_logits
        hits = [(switch_classes(lg) == enc.switches[lv]).float().mean().item() for lv, lg in logits.items()]
    return float(np.mean(hits))


def learned_rows(codec, path: Path, qualities: list[int], refine: int = 0, realism: float = 0.0,
                 switches: bool = False) -> list[tuple[Row, np.ndarray | None]]:
    """A model's rows for one image; ``switches`` adds SAE-SPN's switch accuracy (another
    encoder and decoder pass)."""
    import functools

    pixels = open_image(path)
    decode = functools.partial(codec.decompress_array, realism=realism)
    rows = []
    for q in qualities:
        t0 = time.perf_counter()
        # a refined row at realism R is refined for the decoder at R (Codec.refine)
        enc = codec.encode(pixels, quality=q, refine=refine, refine_realism=realism if refine else 0.0)
        row, feats = _measure(learned_name(codec, refine, realism), pixels, enc.data, decode,
                              time.perf_counter() - t0, f"q{q}", q, False, path.name)
        row = row._replace(fixed_length_bpp=enc.fixed_length_bpp, switch_accuracy=(
            switch_accuracy(codec, pixels, q) if switches else float("nan")))
        rows.append((row, feats))
    return rows


class Cache:
    """One JSON file (+ an .npy of patch features for FID/KID) per (codec, image, points)."""

    def __init__(self, root: Path, tag: str = "") -> None:
        self.root = root
        self.tag = tag  # which perceptual metrics were on: a different set is a different entry

    def _path(self, codec: str, image: Path, key: str) -> Path:
        ident = f"{image.resolve()}|{image.stat().st_size}|{key}|{self.tag}"
        digest = hashlib.sha1(ident.encode()).hexdigest()[:16]
        return self.root / file_stem(codec) / f"{image.stem}-{digest}.json"

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


def file_stem(codec: str) -> str:
    """A codec's name as a file name: ``hevc@1/2`` -> ``hevc@1-2``."""
    return codec.replace("/", "-")


def run_classical(names: list[str], files: list[Path], targets: tuple[float, ...], cache: Cache,
                  workers: int | None = None, progress: bool = True, scorer_paths: tuple = (),
                  budgets: dict[str, Budgets] | None = None) -> Items:
    """Classical codecs at each target bpp, or, with ``budgets`` (image name -> budgets), at
    each of the image's byte budgets."""

    def key_of(f: Path) -> str:
        if budgets is not None:
            return "bytes:" + ",".join(f"{p}={b}" for p, b in budgets[f.name])
        return "targets:" + ",".join(f"{t:.4f}" for t in targets)

    items: Items = []
    todo = []
    for name in names:
        for f in files:
            cached = cache.get(name, f, key_of(f))
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
        futures = {pool.submit(classical_rows, name, str(f), targets,
                               budgets[f.name] if budgets is not None else ()): (name, f)
                   for name, f in todo}
        for future in futures:
            name, f = futures[future]
            result = future.result()
            cache.put(name, f, key_of(f), result)
            items += result
            bar.update(1)
    bar.close()
    return items


def run_learned(codec, files: list[Path], qualities: list[int], cache: Cache,
                progress: bool = True, scorer_paths: tuple = (), refine: int = 0,
                realism: float = 0.0, switches: bool = False, built_in: bool = True) -> Items:
    """A model's rows at ``qualities`` on ``files`` decoded at ``realism`` (from ``cache`` where
    it has them); ``switches``: SAE-SPN's switch accuracy too; ``built_in``: the installed
    LPIPS and DISTS (``scorer_paths``: a user's weights and FID model)."""
    name = learned_name(codec, refine, realism)
    key = f"{codec.fingerprint.hex()}:v{codec.version_written()}:" + ",".join(map(str, qualities))
    if realism:
        key += f":realism{realism:g}:{codec.realism_digest}"
        if refine:  # searched for this decoder, with these settings
            key += f":refined-for-it:{refine_search.realism_search_tag()}"
    if switches:
        key += ":switches"
    items: Items = []
    for f in tqdm(files, desc=name, disable=not progress, unit="img"):
        cached = cache.get(name, f, key)
        if cached is None:
            if _SCORER is None or _SCORER.key != (tuple(scorer_paths), built_in):
                _init_worker(tuple(scorer_paths), built_in)
            cached = learned_rows(codec, f, qualities, refine, realism, switches)
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
            for metric, field in {**PERCEPTUAL_FIELDS, **LEARNED_FIELDS}.items():
                values = [getattr(r, field) for r in sel]
                if not np.isnan(values).all():
                    res.setdefault(metric, []).append(float(np.nanmean(values)))
            if all(r.point.startswith("q") for r in sel):  # a learned model's quality
                res.setdefault("quality", []).append(sel[0].setting)
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
        path = out_dir / f"{file_stem(name)}.json"
        path.write_text(json.dumps(doc, indent=2) + "\n")
        paths.append(path)
    write_csv(rows, out_dir / "per-image.csv")
    return paths


def write_csv(rows: list[Row], path: Path) -> Path:
    """Every row, one per image and point."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(Row._fields)
        writer.writerows(rows)
    return path


def _cell(results: dict, metric: str, i: int, form: str) -> str:
    return format(results[metric][i], form) if metric in results else "-"


def format_table(docs: dict[str, dict], by_point: bool = False, details: bool = False) -> str:
    """A markdown table of the means: one row per codec and point (``by_point``: grouped by
    point, as an equal-bytes comparison reads). LPIPS and DISTS columns where measured; with
    ``details`` (a model card) a learned model's fixed-length rate and switch accuracy where
    measured, and the seconds to encode and decode."""
    def present(metric: str) -> bool:
        return any(metric in d["results"] for d in docs.values())

    perceptual = [m for m in PERCEPTUAL_FIELDS if present(m)]
    fixed = ["fixed-length-bpp"] if details and present("fixed-length-bpp") else []
    switches = ["switch-accuracy"] if details and present("switch-accuracy") else []
    times = ["encoding_time", "decoding_time"] if details else []
    heads = ["codec", "point", "bpp", *(["fixed-length bpp"] if fixed else []), "PSNR (dB)", "MS-SSIM",
             *(m.upper() for m in perceptual), *(["switch acc."] if switches else []),
             *(["enc s", "dec s"] if details else []), "images above target"]
    rows = []
    for name, doc in docs.items():
        r = doc["results"]
        for i in range(len(r["bpp"])):
            rows.append([name, r["point"][i], f"{r['bpp'][i]:.4f}", *(_cell(r, m, i, ".4f") for m in fixed),
                         f"{r['psnr-rgb'][i]:.2f}", f"{r['ms-ssim-rgb'][i]:.4f}",
                         *(_cell(r, m, i, ".4f") for m in perceptual),
                         *(_cell(r, m, i, ".1%") for m in switches),
                         *(_cell(r, m, i, ".2f") for m in times), str(r["above-target"][i] or "")])
    if by_point:
        order = list(dict.fromkeys(c[1] for c in rows))
        rows.sort(key=lambda c: order.index(c[1]))  # stable: codecs keep their order
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(c) + " |" for c in rows]
    return "\n".join(lines)
