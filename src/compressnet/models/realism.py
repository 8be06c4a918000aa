"""Realism decoders: a second decoder for a model's files, and the blend between the two.

A realism decoder file holds only ``decoder.*`` weights (fp16, safetensors) and the
fingerprint of the model whose encoder it was trained behind, so it decodes that model's
files, today's and older ones alike, and is refused for any other model's.

``realism`` R in [0, 1] picks the decoder's weights on the line between the faithful decoder
(R = 0, its own weights untouched, so its pixels are bit for bit the same) and the realism
decoder (R = 1): ``w(R) = w0 + R * (w1 - w0)``. The realism decoder was fine-tuned from the
faithful one, so the two sit in one basin and the weights between them decode images between
them, from smooth and faithful to sharp and textured (network interpolation, as ESRGAN's
authors use it; Agustsson et al. 2023 condition a generator on the trade-off instead, which
needs training with it). The blend is computed in float64 from the stored fp16 weights, one
IEEE operation per value, so every machine builds the same decoder.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from compressnet.models.io import read_arrays, write_arrays

REALISM_FORMAT = "compressnet-realism/1"
PREFIX = "decoder."


class RealismWeights(NamedTuple):
    arrays: dict[str, np.ndarray]  # decoder state names (without the prefix) -> fp16 values
    base_fingerprint: bytes  # the faithful model's weights fingerprint (8 bytes)
    metadata: dict[str, str]
    path: Path | None = None


def save_realism_decoder(decoder: nn.Module, base_fingerprint: bytes, path: str | Path,
                         extra: dict[str, str] | None = None) -> Path:
    """Write ``decoder``'s weights as fp16 for the model with ``base_fingerprint``
    (atomically)."""
    arrays = {PREFIX + k: v.detach().cpu().numpy().astype(np.float16)
              for k, v in decoder.state_dict().items() if v.is_floating_point()}
    meta = {"format": REALISM_FORMAT, "base_fingerprint": base_fingerprint.hex(), **(extra or {})}
    return write_arrays(path, arrays, meta)


def load_realism_decoder(path: str | Path) -> RealismWeights:
    path = Path(path)
    arrays, meta = read_arrays(path, REALISM_FORMAT, "realism decoder file", "a realism decoder file")
    arrays = {k.removeprefix(PREFIX): v for k, v in arrays.items() if k.startswith(PREFIX)}
    return RealismWeights(arrays, bytes.fromhex(meta["base_fingerprint"]), meta, path)


def check_realism(realism: float) -> float:
    realism = float(realism)
    if not 0.0 <= realism <= 1.0:  # also refuses NaN
        raise ValueError(f"realism must be a number from 0 to 1, not {realism}")
    return realism


def blend(decoder: nn.Module, weights: RealismWeights, realism: float) -> nn.Module:
    """A copy of ``decoder`` with weights ``w0 + realism * (w1 - w0)`` (float64 arithmetic
    from the fp16-stored values, then float32; the exact decoder rounds them to its grid).
    ``realism`` 0 returns ``decoder`` itself."""
    realism = check_realism(realism)
    if realism == 0.0:
        return decoder
    state = decoder.state_dict()
    missing = sorted(set(k for k, v in state.items() if v.is_floating_point()) - set(weights.arrays))
    if missing:
        raise ValueError(f"realism decoder does not fit this model's decoder (missing {missing[:3]})")
    out = copy.deepcopy(decoder)
    blended = {}
    for name, w0 in state.items():
        if not w0.is_floating_point():
            blended[name] = w0
            continue
        a = w0.detach().double()
        b = torch.from_numpy(weights.arrays[name].astype(np.float64))
        if a.shape != b.shape:
            raise ValueError(f"realism decoder's {name} is {tuple(b.shape)}, the model's {tuple(a.shape)}")
        blended[name] = (b if realism == 1.0 else a + realism * (b - a)).float()
    out.load_state_dict(blended)
    return out.eval()
