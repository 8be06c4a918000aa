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

# Weights that a release bundled and a later one replaced: (model id, 2-byte fingerprint as
# bitstreams carry it) -> the last release that bundled them. Files they wrote are refused with
# this pointer, and decode with that release or with its weights passed as --model PATH.
# Every fingerprint a file could carry counts (formats 1, 3 and 5 use one without the
# counted tables).
RETIRED: dict[tuple[int, str], str] = {
    (1, "fb2e"): "0.1.0",  # sae-spn-lite, 6,002 steps; replaced by colour-layer training
    (1, "8a64"): "0.1.0",
    (1, "a239"): "0.2.0",  # sae-spn-lite, 11,165 steps; replaced by 8,478 more
    (1, "63af"): "0.2.0",
    (1, "a73d"): "0.3.0",  # sae-spn-lite, 19,643 steps; replaced by 5,591 more
    (1, "e1b1"): "0.3.0",
    (1, "19f2"): "0.6.1",  # sae-spn-lite, 25,234 steps (0.4.0 to 0.6.1); replaced by 4,450
    (1, "e0af"): "0.6.1",  # more of the decoder alone and a refitted context network
    (1, "e8c3"): "0.6.1",
}


def weights_dir() -> Path:
    return Path(str(resources.files("compressnet") / "weights"))


def bundled_path(entry: ZooEntry) -> Path:
    return weights_dir() / entry.filename


def realism_path(entry: ZooEntry) -> Path:
    """The realism decoder bundled for a model's files (:mod:`compressnet.models.realism`)."""
    return weights_dir() / f"{entry.name}.realism.safetensors"


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


def retired_release(model_id: int, fingerprint: bytes) -> str | None:
    """The release whose bundled weights wrote a file with this header, if they were replaced."""
    return RETIRED.get((model_id, fingerprint.hex()))


def kodak_results_path(name: str) -> Path:
    """Where the model card leaves a bundled model's Kodak results (CompressAI-format JSON)."""
    return weights_dir() / f"{name}.kodak.json"


def kodak_results(entry: ZooEntry) -> dict[int, tuple[float, float, float]] | None:
    """Measured Kodak means per quality (bpp, PSNR, MS-SSIM), shipped beside the weights.

    Written by ``compressnet card`` into ``weights/<name>.kodak.json``.
    """
    path = kodak_results_path(entry.name)
    if not path.is_file():
        return None
    r = json.loads(path.read_text())["results"]
    return {q: (b, p, m) for q, b, p, m in zip(r["quality"], r["bpp"], r["psnr-rgb"], r["ms-ssim-rgb"])}
