"""Fit richer latent models for a trained model on its training photos.

Training learns tables for two neighbours only (a differentiable rate needs few
parameters).  Once the encoder is frozen, its symbols can be modelled with richer
contexts:

- scheme 2: tables counted for five neighbours
  (:data:`~compressnet.models.context_model.CONTEXT_NEIGHBOURS`: above, left, above-left,
  two to the left, previous channel); on Kodak about 10% smaller than scheme 1;
- scheme 3: a small network (:mod:`compressnet.entropy.context_net`) fitted to predict
  each symbol from the rows above and every earlier channel.

    compressnet fit-entropy WEIGHTS PHOTOS/ -o WEIGHTS_OUT

The output is the input weights file plus ``tables.latent2`` (kept as they are if the input
has them, unless ``--recount``) and the ``context_net.*`` arrays (unless
``--no-context-net``); every other array is kept byte for byte, so files written before
still decode with it.
A rerun on another machine or thread count may round a handful of the millions of
counted symbols the other way, so a few table entries, and with them the
fingerprint, can differ from the shipped ones.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from compressnet.image import pad_to_multiple, to_tensor
from compressnet.models.autoencoder import DOWNSAMPLING, SYMBOL_PREFIXES, CompressNetModel
from compressnet.models.context_model import context_count, latent_contexts_np, quantize_probabilities
from compressnet.models.context_net import PREFIX as NET_PREFIX
from compressnet.models.context_net import ContextNet
from compressnet.train.data import find_images, read_photo

LR = 2e-3  # the context network's Adam step, cut by 0.3 at 60% and again at 85% of its steps
PLAN_AFTER = 200  # steps timed before a time-budgeted fit plans its length
PLAN_EVERY = 500  # steps between its re-plans, each from the pace of the last ones
PRIOR = 0.5  # pseudo-count per symbol: best of 0.02-0.5 on held-out BSDS500 val latents
SCHEME = 2


def count_tables(symbol_maps: Iterable[np.ndarray], channels: int, levels: int,
                 prior: float = PRIOR) -> np.ndarray:
    """Integer tables (channels, contexts, levels) from the symbols (C, h, w) of many images."""
    counts = np.zeros((channels, context_count(levels, SCHEME) * levels), dtype=np.int64)
    for symbols in symbol_maps:
        symbols = symbols.astype(np.int64)
        flat = latent_contexts_np(symbols, levels, SCHEME) * levels + symbols
        for c in range(channels):
            counts[c] += np.bincount(flat[c].ravel(), minlength=counts.shape[1])
    counts = counts.reshape(channels, -1, levels) + prior
    return quantize_probabilities(counts / counts.sum(-1, keepdims=True))


def latent_symbols(model: CompressNetModel, files: list[Path], max_side: int = 1024,
                   progress: bool = True) -> Iterator[np.ndarray]:
    """The encoder's symbols (C, h, w) of each photo, read as training reads it."""
    for path in tqdm(files, desc="encoding", unit="img", disable=not progress):
        arr = read_photo(path, max_side)
        with torch.inference_mode():
            _, symbols, _ = model.encode(pad_to_multiple(to_tensor(arr), DOWNSAMPLING),
                                         model.cfg.latent_channels)
        yield symbols[0].numpy()


def encoder_digest(model: CompressNetModel) -> str:
    """A hash of the arrays that decide the symbols (encoder and quantiser), to tie a cache of
    symbol maps to the weights whose encoder wrote it."""
    digest = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        if name.startswith(SYMBOL_PREFIXES):
            digest.update(name.encode())
            digest.update(t.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def cached_symbols(model: CompressNetModel, files: list[Path], cache: Path | None,
                   progress: bool = True) -> list[np.ndarray]:
    """The symbol maps of ``files``, read from ``cache`` (an ``.npz``) when it holds the same
    photos under the same encoder, else encoded and (with a ``cache``) written there, so that
    fits on another machine or with other settings skip the encoding."""
    key = np.array([encoder_digest(model), *(p.stem for p in files)])  # stems: a packed copy matches
    if cache is not None and cache.exists():
        with np.load(cache) as z:
            if "key" not in z or not np.array_equal(z["key"], key):
                raise ValueError(f"{cache} holds the symbols of other photos or another encoder")
            return [z[f"map{i}"] for i in range(len(files))]
    maps = list(latent_symbols(model, files, progress=progress))
    if cache is not None:
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez_compressed(tmp, key=key, **{f"map{i}": m.astype(np.uint8) for i, m in enumerate(maps)})
        tmp.replace(cache)
    return maps


class NetFit(NamedTuple):
    net: ContextNet
    held_out_bits: float  # bits per symbol on the held-out maps, each channel coded as chosen
    held_out_counted_bits: float  # the same under the scheme-2 tables alone


def fit_context_net(maps: list[np.ndarray], levels: int, steps: int = 5000, crop: int = 16,
                    batch: int = 4, width: int = 64, seed: int = 0, progress: bool = True,
                    device: str = "cpu", minutes: float | None = None) -> tuple[ContextNet, int]:
    """Fit a :class:`ContextNet` on random crops of symbol maps (C, h, w); returns it (on the
    CPU) and the steps taken. Crops are drawn on the CPU from a seeded generator, so ``device``
    changes only the arithmetic's rounding. With ``minutes``, the steps are cut to what fits in
    that time: planned after the first ``PLAN_AFTER`` steps, then re-planned every
    ``PLAN_EVERY`` from the latest pace (a GPU slows as other jobs start on it: a fit planned
    once, beside three training runs, overran its 7.8 minutes by 1.9), ending at the deadline
    whatever the plan; the learning-rate drops move with the plan but are never undone."""
    gen = torch.Generator().manual_seed(seed)
    channels = maps[0].shape[0]
    crop = min([crop] + [min(m.shape[1:]) for m in maps])
    data = [torch.from_numpy(m.astype(np.int64)) for m in maps]
    torch.manual_seed(seed)
    net = ContextNet(channels, levels, width).to(device)
    opt = torch.optim.Adam(net.parameters(), LR)
    bar = tqdm(total=steps, desc="context network", unit="step", disable=not progress)
    step, started, requested, scale = 0, time.perf_counter(), steps, 1.0
    deadline = None if minutes is None else started + 60 * minutes
    mark = (0, started)  # (step, time) the pace is measured from
    while step < steps:
        t = step / steps  # drops at 60% and 85% of the (planned) steps
        scale = min(scale, (0.3 if t >= 0.6 else 1.0) * (0.3 if t >= 0.85 else 1.0))
        opt.param_groups[0]["lr"] = LR * scale
        items = []
        for k in torch.randint(len(data), (batch,), generator=gen).tolist():
            m = data[k]
            i = int(torch.randint(m.shape[1] - crop + 1, (1,), generator=gen))
            j = int(torch.randint(m.shape[2] - crop + 1, (1,), generator=gen))
            items.append(m[:, i:i + crop, j:j + crop])
        x = torch.stack(items).to(device)
        loss = net.bits(x).sum() / x.numel()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if deadline is not None and step >= PLAN_AFTER:
            now = time.perf_counter()
            if now >= deadline:
                steps = step
            elif (step - PLAN_AFTER) % PLAN_EVERY == 0:
                pace = (step - mark[0]) / max(now - mark[1], 1e-9)  # steps a second, lately
                steps = max(step, min(requested, step + int(pace * (deadline - now))))
                mark = (step, now)
            bar.total = steps
        bar.update()
        if step % 50 == 0:
            bar.set_postfix(bits=f"{loss.item():.3f}")
    bar.close()
    return net.cpu().eval(), step


def per_channel_bits(net: ContextNet, tables: np.ndarray, maps: list[np.ndarray]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Bits per symbol of each channel (C,) of ``maps`` under ``net`` (float) and under the
    counted ``tables``."""
    from compressnet.entropy.latent_coder import latent_coder

    coder = latent_coder(SCHEME, tables)
    net_bits, counted, total = np.zeros(tables.shape[0]), np.zeros(tables.shape[0]), 0
    with torch.no_grad():
        for m in maps:
            m = m.astype(np.int64)
            net_bits += net.bits(torch.from_numpy(m)[None]).numpy()
            freqs = np.take_along_axis(coder.frequencies(m), m[..., None], -1)
            counted += -np.log2(freqs / float(1 << 16)).sum((1, 2, 3))
            total += m[0].size
    return net_bits / total, counted / total


def choose_channels(net: ContextNet, tables: np.ndarray, held_out: list[np.ndarray]
                    ) -> tuple[float, float]:
    """Mark in ``net.coded`` the channels that the network codes in fewer held-out bits than
    the counted tables; returns the bits per symbol with that choice and with the tables only."""
    by_net, by_tables = per_channel_bits(net, tables, held_out)
    with torch.no_grad():
        net.coded.copy_(torch.from_numpy((by_net < by_tables).astype(np.float32)))
    return float(np.minimum(by_net, by_tables).mean()), float(by_tables.mean())


def channel_ranges(channels: list[int]) -> str:
    """``[3, 4, 5, 9]`` as ``"3-5, 9"``: the coded channels of a fit, numbered from 1 as the
    README and cards number them."""
    runs: list[list[int]] = []
    for c in channels:
        if runs and c == runs[-1][-1] + 1:
            runs[-1].append(c)
        else:
            runs.append([c])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs) or "none"


def add_latent_models(weights: str | Path, files: list[Path], output: str | Path,
                      prior: float = PRIOR, context_net: bool = True, recount: bool = False,
                      net_steps: int = 5000, progress: bool = True, net_batch: int = 4,
                      device: str = "cpu", maps_cache: Path | None = None,
                      net_minutes: float | None = None) -> tuple[bytes, NetFit | None]:
    """Write ``weights`` plus counted scheme-2 tables and (``context_net``) a scheme-3
    network to ``output``; returns the new fingerprint and the network's fit. Every 20th
    photo is held out of the network's fit to report its bits against the tables'."""
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    from compressnet.models.io import load_weights

    model = load_weights(weights).model
    arrays = {k: v for k, v in load_file(str(weights)).items() if not k.startswith(NET_PREFIX)}
    with safe_open(str(weights), framework="numpy") as f:
        meta = dict(f.metadata() or {})
    maps = cached_symbols(model, files, maps_cache, progress)
    cfg = model.cfg
    if recount or "tables.latent2" not in arrays:
        tables = count_tables(maps, cfg.latent_channels, cfg.levels, prior)
        arrays["tables.latent2"] = tables.astype(np.uint16)  # frequencies are 1..2**16 - 4
        meta["context_tables"] = f"scheme {SCHEME}, counted on {len(files)} images, prior {prior}"
    fit = None
    if context_net:
        held = maps[::20] if len(maps) >= 20 else maps[:1]
        train = [m for i, m in enumerate(maps) if i % 20] if len(maps) >= 20 else maps
        net, net_steps = fit_context_net(train, cfg.levels, net_steps, batch=net_batch,
                                         progress=progress, device=device, minutes=net_minutes)
        fit = NetFit(net, *choose_channels(net, arrays["tables.latent2"].astype(np.int64), held))
        arrays.update(net.state_arrays())
        coded = [c + 1 for c in range(cfg.latent_channels) if net.coded[c] > 0.5]
        meta["context_net"] = (f"scheme 3, fitted {net_steps} steps on {len(train)} of {len(files)} "
                               f"images (batch {net_batch}), codes channels {channel_ranges(coded)} of "
                               f"{cfg.latent_channels} (counted tables the others); "
                               f"held-out {fit.held_out_bits:.4f} bits/symbol against "
                               f"{fit.held_out_counted_bits:.4f} with the counted tables alone")
    output = Path(output)
    tmp = output.with_name(output.name + ".tmp")
    save_file(arrays, str(tmp), metadata=meta)
    tmp.replace(output)
    return load_weights(output).fingerprint, fit


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="compressnet fit-entropy", description=__doc__.split("\n")[0])
    p.add_argument("weights", help="a CompressNet weights file")
    p.add_argument("data", help="the model's training photos (folder, or a clic/cityscapes root)")
    p.add_argument("-o", "--output", required=True, help="weights file to write")
    p.add_argument("--layout", default="folder", choices=["folder", "clic", "cityscapes"])
    p.add_argument("--prior", type=float, default=PRIOR, help="pseudo-count per symbol")
    p.add_argument("--no-context-net", action="store_true",
                   help="counted tables only (format 6), no context network (format 7)")
    p.add_argument("--recount", action="store_true",
                   help="count the tables again even if the weights have them (changes the "
                        "fingerprint of format-6 files)")
    p.add_argument("--net-steps", type=int, default=5000, help="the network's training steps")
    p.add_argument("--net-minutes", type=float, default=None,
                   help="cut the network's steps to what fits in this many minutes")
    p.add_argument("--net-batch", type=int, default=4, help="crops of 16x16 symbols per step")
    p.add_argument("--device", default="cpu", help="where the network is fitted (cpu, cuda)")
    p.add_argument("--maps", type=Path, default=None,
                   help="cache of the photos' symbol maps (.npz): read if it exists, else written")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    args = p.parse_args(argv)
    if Path(args.output).exists() and not args.force:
        print(f"compressnet: error: {args.output} exists (use --force)", file=sys.stderr)
        return 1
    try:
        files = find_images(args.data, args.layout)
        fp, fit = add_latent_models(args.weights, files, args.output, args.prior,
                                    not args.no_context_net, args.recount, args.net_steps,
                                    net_batch=args.net_batch, device=args.device,
                                    maps_cache=args.maps, net_minutes=args.net_minutes)
    except (FileNotFoundError, ValueError) as exc:
        print(f"compressnet: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.output} (fingerprint {fp[:2].hex()}, from {len(files)} images)")
    if fit is not None:
        print(f"context network: {fit.held_out_bits:.4f} bits/symbol on held-out photos, "
              f"counted tables {fit.held_out_counted_bits:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
