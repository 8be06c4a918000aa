"""Give a trained model more decoder depth without losing what it learned.

New residual blocks (``up_blocks``, ``res_blocks``) start as the identity (their second
convolution is zero), so the grown model decodes exactly as the old one did and training
continues from there instead of from scratch::

    compressnet grow runs/x/slim.pt --set '{"up_blocks": [0, 2, 2, 2]}' -o grown.pt
    python -m compressnet.train runs/data --out runs/y --preset-overrides '{"up_blocks": [0, 2, 2, 2]}'
        # with runs/y/ckpt.pt = grown.pt: it resumes from the grown weights

or from a weights file (a bundled model), fresh optimisers, its encoder frozen if asked::

    compressnet train PHOTOS --out runs/g --init sae-spn-lite --freeze-encoder \
        --preset-overrides '{"up_blocks": [1, 2, 2, 0]}'
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from compressnet.models.autoencoder import CompressNetModel
from compressnet.models.config import TUPLE_FIELDS, ModelConfig
from compressnet.train.export import checkpoint_config, save_slim, shipped_weights

GROWABLE = ("up_blocks", "res_blocks")


def grow_state(state: dict[str, torch.Tensor], model: CompressNetModel) -> dict[str, torch.Tensor]:
    """``model``'s state with every tensor that ``state`` has copied in; the rest (the new
    blocks) keeps its identity initialisation. Refuses anything but added blocks."""
    new = model.state_dict()
    missing = set(new) - set(state)
    unexpected = set(state) - set(new)
    if unexpected:
        raise ValueError(f"the grown model lacks {sorted(unexpected)[:3]}: only adding blocks is supported")
    if not all(".blocks." in k or k.startswith("decoder.res_blocks.") for k in missing):
        raise ValueError(f"not only blocks would be new: {sorted(missing)[:3]}")
    for name, tensor in state.items():
        if new[name].shape != tensor.shape:
            raise ValueError(f"{name}: shape {tuple(tensor.shape)} cannot grow to {tuple(new[name].shape)}")
        new[name] = tensor.to(new[name].dtype)
    return new


def grown_config(cfg: ModelConfig, changes: dict) -> ModelConfig:
    """``cfg`` with ``changes`` to the fields in :data:`GROWABLE`; anything else is refused,
    since only added blocks can start from a trained model."""
    if not changes or set(changes) - set(GROWABLE):
        raise ValueError(f"only {', '.join(GROWABLE)} can grow a trained model, got {sorted(changes)}")
    return dataclasses.replace(cfg, **{k: tuple(v) if k in TUPLE_FIELDS else v for k, v in changes.items()})


def grow_checkpoint(checkpoint: str | Path, output: str | Path, changes: dict) -> list[str]:
    """Write a checkpoint of the model grown by ``changes`` (fields in :data:`GROWABLE`),
    discriminator and step kept, optimisers dropped (a resume restarts them). Returns the
    names of the new tensors."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    tc = dict(ckpt["train_config"])
    cfg = grown_config(checkpoint_config(ckpt), changes)
    model = CompressNetModel(cfg)
    old_state = shipped_weights(ckpt)
    state = grow_state(old_state, model)
    tc["preset_overrides"] = {**(tc.get("preset_overrides") or {}), **changes}
    save_slim({**ckpt, "train_config": tc, "model_config": cfg.to_json()}, state, output)
    return sorted(set(state) - set(old_state))


PROG = "compressnet grow"  # `python -m compressnet.train.grow` works too


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a training or slim checkpoint")
    parser.add_argument("--set", required=True, type=json.loads, metavar="JSON",
                        help=f"new values of {', '.join(GROWABLE)}, e.g. '{{\"up_blocks\": [0, 2, 2, 2]}}'")
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args(argv)
    added = grow_checkpoint(args.checkpoint, args.output, args.set)
    print(f"wrote {args.output}: {len(added)} new tensors, the rest copied")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
