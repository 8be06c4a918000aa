"""The registry of bundled models by stable name and id.

Ids are written into every bitstream: never renumber or reuse one.  Id 0 means
"a weights file the user passes with --model PATH".
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import NamedTuple

CUSTOM_MODEL_ID = 0


class ZooEntry(NamedTuple):
    model_id: int
    arch: str
    preset: str

    @property
    def name(self) -> str:
        return f"{self.arch}-{self.preset}"

    @property
    def filename(self) -> str:
        return f"{self.name}.safetensors"


REGISTRY: tuple[ZooEntry, ...] = (
    ZooEntry(1, "sae-spn", "lite"),
    ZooEntry(2, "sae", "lite"),
    ZooEntry(3, "swwae", "lite"),
    ZooEntry(4, "sae-spn", "paper"),
    ZooEntry(5, "sae", "paper"),
    ZooEntry(6, "swwae", "paper"),
)
DEFAULT_MODEL = "sae-spn"
DEFAULT_PRESET = "lite"


def weights_dir() -> Path:
    return Path(str(resources.files("compressnet") / "weights"))


def bundled_path(entry: ZooEntry) -> Path:
    return weights_dir() / entry.filename


def is_bundled(entry: ZooEntry) -> bool:
    return bundled_path(entry).is_file()


def lookup(name: str, preset: str | None = None) -> ZooEntry:
    """``name`` is ``sae-spn`` (with ``preset``) or the full ``sae-spn-lite``."""
    for entry in REGISTRY:
        if name == entry.name or (name == entry.arch and (preset or DEFAULT_PRESET) == entry.preset):
            return entry
    names = ", ".join(e.name for e in REGISTRY)
    raise KeyError(f"unknown model {name!r}{f' (preset {preset})' if preset else ''}; known: {names}")


def by_id(model_id: int) -> ZooEntry:
    for entry in REGISTRY:
        if entry.model_id == model_id:
            return entry
    raise KeyError(f"unknown model id {model_id}")


def kodak_results_path(name: str) -> Path:
    """Where the model card leaves a bundled model's Kodak results (CompressAI-format JSON)."""
    return weights_dir() / f"{name}.kodak.json"


def kodak_results(entry: ZooEntry) -> dict[int, tuple[float, float, float]] | None:
    """Measured Kodak means per quality (bpp, PSNR, MS-SSIM), shipped beside the weights.

    Written by ``python -m compressnet.evaluate.card`` into ``weights/<name>.kodak.json``.
    """
    path = kodak_results_path(entry.name)
    if not path.is_file():
        return None
    r = json.loads(path.read_text())["results"]
    return {q: (b, p, m) for q, b, p, m in zip(r["quality"], r["bpp"], r["psnr-rgb"], r["ms-ssim-rgb"])}
