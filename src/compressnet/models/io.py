"""Weights files: safetensors with the config, fp16 weights and the frozen integer tables.

The integer probability tables are stored as int32 tensors (``tables.*``) and are
what the coder uses: they never pass through a float computation at decode time.
The fingerprint is a hash of everything in the file that shapes the decoded
image, so a bitstream can refuse to decode with other weights.  Files of format
versions 1 and 3 were coded without the counted scheme-2 tables (``tables.latent2``, added by
:mod:`compressnet.train.fit_entropy`), so they carry a fingerprint that leaves them out:
adding those tables to a model keeps its old files decodable.  In the same way files of
versions 1 to 6 carry a fingerprint without the context network (``context_net.*``, format
versions 7 and 8), so adding one keeps them decodable too.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load_file as np_load_file
from safetensors.numpy import save_file as np_save_file

from compressnet.models.autoencoder import CompressNetModel
from compressnet.models.config import ModelConfig
from compressnet.models.context_net import PREFIX as CONTEXT_NET_PREFIX
from compressnet.models.context_net import ContextNet

WEIGHTS_FORMAT = "compressnet-weights/1"


class LoadedModel(NamedTuple):
    model: CompressNetModel  # float32, eval mode
    tables: dict[str, np.ndarray]  # integer coder tables
    fingerprint: bytes  # 8 bytes; bitstreams carry a prefix of it
    metadata: dict[str, str]
    # context scheme -> the fingerprint its files carry: the arrays that scheme reads (so adding
    # tables or a network to weights leaves the files written before decodable)
    scheme_fingerprints: dict[int, bytes]
    context_net: ContextNet | None = None  # context scheme 3's network, if the file has one
    path: Path | None = None  # the weights file it was read from


FORMAT2_ONLY = ("tables.latent2",)


def _fingerprint(config_json: str, arrays: dict[str, np.ndarray], exclude: tuple[str, ...] = ()
                 ) -> bytes:
    digest = hashlib.sha256(config_json.encode())
    for name in sorted(set(arrays) - set(exclude)):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    return digest.digest()[:8]


def read_arrays(path: Path, fmt: str, noun: str, kind: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The arrays and metadata of a safetensors file whose ``format`` metadata is ``fmt``; one
    clear error otherwise ("no such {noun}", "not {kind}")."""
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
        arrays = np_load_file(str(path))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such {noun}") from None
    except Exception as exc:  # safetensors raises its own error types
        raise ValueError(f"{path}: not {kind} ({exc})") from None
    if meta.get("format") != fmt:
        raise ValueError(f"{path}: not {kind} (format {meta.get('format')!r})")
    return arrays, meta


def write_arrays(path: str | Path, arrays: dict[str, np.ndarray], meta: dict[str, str]) -> Path:
    """Write a safetensors file atomically (a temporary file renamed into place)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    np_save_file(arrays, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def export_weights(model: CompressNetModel, path: str | Path, extra: dict[str, str] | None = None,
                   dtype: np.dtype = np.float16,
                   latent_models: dict[str, np.ndarray] | None = None) -> bytes:
    """Write ``model`` for shipping: fp16 weights, int32 tables. Returns the fingerprint.
    ``latent_models`` (``tables.*``, ``context_net.*`` arrays of another weights file) replace
    the model's own tables: a decoder fine-tuned behind a frozen encoder keeps them."""
    arrays = {name: t.detach().cpu().numpy().astype(dtype)
              for name, t in model.state_dict().items()
              if not name.startswith("entropy.") and t.is_floating_point()}
    for name, table in model.entropy.integer_tables().items():
        arrays[f"tables.{name}"] = table
    arrays.update(latent_models or {})
    config_json = model.cfg.to_json()
    meta = {"format": WEIGHTS_FORMAT, "config": config_json, **(extra or {})}
    write_arrays(path, arrays, meta)
    return _fingerprint(config_json, arrays)


def copy_without(path: str | Path, out: str | Path, names: tuple[str, ...] = (),
                 prefix: str | None = None) -> Path:
    """A copy of weights ``path`` at ``out`` without the arrays ``names`` and those starting
    with ``prefix``: e.g. the weights as they were before counted tables or a context network
    were added, which write the older formats."""
    with safe_open(str(path), framework="numpy") as f:
        arrays = {k: f.get_tensor(k) for k in f.keys()
                  if k not in names and not (prefix and k.startswith(prefix))}
        meta = f.metadata()
    np_save_file(arrays, str(out), metadata=meta)
    return Path(out)


def load_weights(path: str | Path) -> LoadedModel:
    """Load a weights file written by :func:`export_weights`, as float32 in eval mode."""
    path = Path(path)
    arrays, meta = read_arrays(path, WEIGHTS_FORMAT, "weights file", "a CompressNet weights file")
    cfg = ModelConfig.from_json(meta["config"])
    model = CompressNetModel(cfg)
    state = {k: torch.from_numpy(v.astype(np.float32)) for k, v in arrays.items()
             if not k.startswith(("tables.", CONTEXT_NET_PREFIX))}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("entropy.") and "centers" not in k]
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match the config (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    tables = {k.split(".", 1)[1]: v.astype(np.int64) for k, v in arrays.items()
              if k.startswith("tables.")}
    model.entropy.load_tables(tables)
    model.eval()
    net_arrays = tuple(k for k in arrays if k.startswith(CONTEXT_NET_PREFIX))
    net = ContextNet.from_arrays(arrays) if net_arrays else None
    prints = {1: _fingerprint(meta["config"], arrays, FORMAT2_ONLY + net_arrays),
              2: _fingerprint(meta["config"], arrays, net_arrays),
              3: _fingerprint(meta["config"], arrays)}
    return LoadedModel(model, tables, prints[3], meta, prints, net, path)
