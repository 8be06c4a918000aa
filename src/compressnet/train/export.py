"""Turn a training checkpoint into a shippable weights file, choosing the quality ladder.

The ladder (channels sent per quality) is picked after training, on held-out images:
a model trained with random channel truncation can send any prefix of its latent.

    compressnet export runs/x/ckpt.pt --qualities 6 8 11 16 \
        -o src/compressnet/weights/sae-spn-lite.safetensors
    compressnet export runs/x/ckpt.pt --sweep VAL_FOLDER   # rate/PSNR per k
    compressnet export runs/x/ckpt.pt --slim x.pt   # fp16, no optimiser state
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load_file

from compressnet.image import open_image, pad_to_multiple, to_tensor, to_uint8
from compressnet.metrics import psnr
from compressnet.models.autoencoder import DOWNSAMPLING, SYMBOL_PREFIXES, CompressNetModel
from compressnet.models.config import ModelConfig, preset_config
from compressnet.models.io import export_weights
from compressnet.train.data import find_images


def model_from_checkpoint(path: str | Path, qualities: tuple[int, ...] | None = None) -> CompressNetModel:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    cfg = checkpoint_config(ckpt)
    if qualities:
        cfg = dataclasses.replace(cfg, qualities=tuple(qualities))
    model = CompressNetModel(cfg)
    model.load_state_dict(shipped_weights(ckpt))
    return model.eval()


def checkpoint_config(ckpt: dict) -> ModelConfig:
    """The model a checkpoint holds: its own record (runs from ``--init`` train the init
    file's model, whatever ``--arch`` says), else, before 0.6.1, the run's preset."""
    if "model_config" in ckpt:
        return ModelConfig.from_json(ckpt["model_config"])
    tc = ckpt["train_config"]
    return preset_config(tc["arch"], tc["preset"], **(tc.get("preset_overrides") or {}))


LATENT_META = ("context_tables", "context_net")  # metadata that describes the latent models


class LatentModels(NamedTuple):
    """A weights file's latent models (coder tables, counted tables, context network) and the
    metadata that describes their fit: what a model with the same encoder can carry over."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, str]


def weights_file_meta(weights: str | Path) -> dict[str, str]:
    with safe_open(str(weights), framework="numpy") as f:
        return dict(f.metadata() or {})


def latent_models_of(weights: str | Path, encoder_of: CompressNetModel | None = None) -> LatentModels:
    """``weights``' latent models; with ``encoder_of``, refused unless they were fitted on that
    model's symbols (same encoder and quantiser): another encoder's would code its symbols
    badly or, with other quantiser levels, wrongly."""
    from compressnet.models.context_net import PREFIX

    arrays = load_file(str(weights))
    for name, t in (encoder_of.state_dict().items() if encoder_of is not None else ()):
        if name.startswith(SYMBOL_PREFIXES) and t.is_floating_point() and (
                name not in arrays or not np.array_equal(
                    arrays[name], t.detach().cpu().numpy().astype(arrays[name].dtype))):
            raise ValueError(f"{weights}: its latent models were fitted on another encoder "
                             f"({name} differs)")
    meta = weights_file_meta(weights)
    return LatentModels({k: v for k, v in arrays.items() if k.startswith(("tables.", PREFIX))},
                        {k: meta[k] for k in LATENT_META if k in meta})


def init_file(ckpt: dict) -> Path | None:
    """The weights file a run started from (``--init``), if any."""
    init = (ckpt.get("train_config") or {}).get("init")
    if not init:
        return None
    from compressnet.codec import load  # the CLI's own name-or-path resolution

    return load(init).weights_path


def run_facts(steps: int, seconds: float, init: Path | None) -> dict[str, str]:
    """Steps and training seconds the weights have seen: a run from ``--init`` adds its own to
    the init file's."""
    if init is not None:
        meta = weights_file_meta(init)
        steps += int(meta.get("steps", 0))
        seconds += float(meta.get("train_seconds", 0))
    return {"steps": str(steps), "train_seconds": f"{seconds:.0f}"}


def shipped_weights(ckpt: dict) -> dict:
    """The moving average of the weights where the run kept one (``--ema``), else the weights."""
    return ckpt.get("ema", ckpt["model"])


@torch.no_grad()
def sweep(model: CompressNetModel, folder: str) -> list[tuple[int, float, float]]:
    """(k, mean estimated bpp, mean PSNR) for every number of channels k."""
    images = [open_image(p) for p in find_images(folder)]
    rows = []
    for keep in range(1, model.cfg.latent_channels + 1):
        bpps, psnrs = [], []
        for arr in images:
            h, w = arr.shape[:2]
            out = model(pad_to_multiple(to_tensor(arr), DOWNSAMPLING), keep=keep)
            bpps.append(float(out.latent_bits.sum() + out.switch_bits.sum()) / (h * w))
            psnrs.append(psnr(arr, to_uint8(out.x_hat[..., :h, :w])))
        rows.append((keep, float(np.mean(bpps)), float(np.mean(psnrs))))
        print(f"k={keep:2d}  bpp~{rows[-1][1]:.4f}  PSNR {rows[-1][2]:.2f} dB", flush=True)
    return rows


def write_slim(checkpoint: str | Path, output: str | Path) -> None:
    """Models and run facts in fp16, without optimiser or RNG state: about a sixth of the
    size, to move a run between machines; ``--resume`` from it restarts the optimisers."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    save_slim(ckpt, shipped_weights(ckpt), output)


def save_slim(ckpt: dict, model_state: dict, output: str | Path) -> None:
    """Write ``model_state`` and ``ckpt``'s discriminator in fp16 with its run facts (step,
    elapsed time, training config), atomically."""
    slim = {k: ckpt[k] for k in ("step", "elapsed", "train_config", "model_config") if k in ckpt}
    for key, state in (("model", model_state), ("disc", ckpt["disc"])):
        slim[key] = {n: t.half() if t.is_floating_point() else t for n, t in state.items()}
    tmp = Path(str(output) + ".tmp")
    torch.save(slim, tmp)
    tmp.replace(output)


PROG = "compressnet export"  # `python -m compressnet.train.export` works too


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--qualities", nargs="+", type=int, help="channels sent per quality")
    parser.add_argument("-o", "--output", help="weights file to write (fp16 safetensors)")
    parser.add_argument("--sweep", metavar="FOLDER", help="print rate and PSNR for every k")
    parser.add_argument("--meta", nargs="*", default=[], metavar="KEY=VALUE",
                        help="facts for the model card (hardware=..., data=..., command=...)")
    parser.add_argument("--latent-models", metavar="WEIGHTS",
                        help="carry the coder tables and context network of this weights file "
                        "(fitted on the same encoder's symbols, e.g. by compressnet.train.fit_entropy); "
                        "a --freeze-encoder run carries its init's by default")
    parser.add_argument("--slim", metavar="FILE", help="write an fp16 checkpoint without "
                        "optimiser state (to move a run between machines)")
    args = parser.parse_args(argv)
    if args.slim:
        write_slim(args.checkpoint, args.slim)
        print(f"wrote {args.slim}")
        if not (args.sweep or args.output):
            return 0
    model = model_from_checkpoint(args.checkpoint, args.qualities)
    if args.sweep:
        sweep(model, args.sweep)
    if args.output:
        ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
        try:
            init = init_file(ckpt)
            latent = latent_models_of(init) if init and ckpt["train_config"].get("freeze_encoder") \
                else None  # a frozen encoder's symbols are its init's: so are its latent models
            if args.latent_models:
                latent = latent_models_of(args.latent_models, encoder_of=model)
            extra = (latent.meta if latent else {}) | dict(kv.split("=", 1) for kv in args.meta)
            extra |= run_facts(ckpt["step"], ckpt.get("elapsed", 0), init)
        except (FileNotFoundError, ValueError) as exc:
            print(f"compressnet: error: {exc}", file=sys.stderr)
            return 1
        fp = export_weights(model, args.output, extra=extra,
                            latent_models=latent.arrays if latent else None)
        print(f"wrote {args.output} (fingerprint {fp[:2].hex()}, qualities {model.cfg.qualities})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
