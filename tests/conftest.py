"""Shared fixtures: tiny models with random weights, exported like real ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from compressnet.codec import Codec, load
from compressnet.models.autoencoder import CompressNetModel
from compressnet.models.config import preset_config
from compressnet.models.io import export_weights

ARCHS = ("sae", "swwae", "sae-spn")


def make_weights(tmp_path: Path, arch: str, seed: int = 0, counted: bool = False,
                 net: bool = False, **overrides) -> Path:
    """Random tiny weights; ``counted`` adds scheme-2 tables counted on a few photos (format
    version 6), ``net`` a briefly fitted context network too (format 9, as the bundled default)."""
    torch.manual_seed(seed)
    model = CompressNetModel(preset_config(arch, "tiny", **overrides))
    with torch.no_grad():  # skewed tables, so the coder has something to exploit
        model.entropy.latent_logits.normal_(0, 1.5)
        model.entropy.latent_logits[..., 2] += 2.0
        for logits in model.entropy.switch_logits:
            logits.normal_(0, 1.0)
        # spread the latent over several levels so all symbols occur
        model.encoder.to_latent.weight.mul_(8.0)
    path = tmp_path / f"{arch}-tiny-{seed}.safetensors"
    export_weights(model, path)
    if not (counted or net):
        return path
    from PIL import Image

    from compressnet.train.fit_entropy import add_latent_models

    files = []
    for i in range(3):
        files.append(tmp_path / f"fit-{arch}-{seed}-{i}.png")
        Image.fromarray(photo(96, 128, seed=10 + i)).save(files[-1])
    out = tmp_path / f"{arch}-tiny-{seed}-{'net' if net else 'counted'}.safetensors"
    add_latent_models(path, files, out, context_net=net, net_steps=30, progress=False)
    return out


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("weights")


@pytest.fixture(scope="session", params=[(a, False) for a in ARCHS] + [("sae-spn", True), ("swwae", True)],
                ids=lambda p: f"{p[0]}-v{6 if p[1] else 5}")  # the format version each writes
def tiny_codec(request, weights_dir) -> Codec:
    arch, counted = request.param
    return load(str(make_weights(weights_dir, arch, counted=counted)))


@pytest.fixture(scope="session")
def spn_weights(weights_dir) -> Path:
    """A tiny SAE-SPN that writes format version 9, like the bundled default."""
    return make_weights(weights_dir, "sae-spn", seed=1, net=True)


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth, photo-like uint8 RGB image (gradients plus a little noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    base = np.stack([np.sin(xx / 17.0 + c) * np.cos(yy / 23.0 - c) for c in range(3)], -1)
    img = 128 + 90 * base + rng.normal(0, 8, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)
