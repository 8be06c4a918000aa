"""Turn a training checkpoint into a shippable weights file, choosing the quality ladder.

The ladder (channels sent per quality) is picked after training, on held-out images:
a model trained with random channel truncation can send any prefix of its latent.

    python -m compressnet.train.export runs/x/ckpt.pt --qualities 6 8 11 16 \
        -o src/compressnet/weights/sae-spn-lite.safetensors
    python -m compressnet.train.export runs/x/ckpt.pt --sweep VAL_FOLDER   # rate/PSNR per k
    python -m compressnet.train.export runs/x/ckpt.pt --slim x.pt   # fp16, no optimiser state
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch

from compressnet.image import open_image, pad_to_multiple, to_tensor, to_uint8
from compressnet.metrics import psnr
from compressnet.models.autoencoder import DOWNSAMPLING, CompressNetModel
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--qualities", nargs="+", type=int, help="channels sent per quality")
    parser.add_argument("-o", "--output", help="weights file to write (fp16 safetensors)")
    parser.add_argument("--sweep", metavar="FOLDER", help="print rate and PSNR for every k")
    parser.add_argument("--meta", nargs="*", default=[], metavar="KEY=VALUE",
                        help="facts for the model card (hardware=..., data=..., command=...)")
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
        extra = dict(kv.split("=", 1) for kv in args.meta)
        extra.update(steps=str(ckpt["step"]), train_seconds=f"{ckpt.get('elapsed', 0):.0f}")
        fp = export_weights(model, args.output, extra=extra)
        print(f"wrote {args.output} (fingerprint {fp[:2].hex()}, qualities {model.cfg.qualities})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
