"""LPIPS, DISTS, FID and KID load real weight files (written here, since none can be
downloaded) in the formats users have: torchvision, lpips, DISTS, TorchScript."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import photo
from PIL import Image

from compressnet import cli
from compressnet.evaluate import perceptual


def _torchvision_state(kind: str, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    features = perceptual._alexnet_features() if kind == "alex" else perceptual._vgg16_features()
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.1.weight"] = torch.zeros(2, 2)  # torchvision files carry a classifier too
    return state


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("perceptual")
    paths = {}
    for kind, taps in (("alex", perceptual.ALEXNET_TAPS), ("vgg", perceptual.VGG16_TAPS)):
        torch.save(_torchvision_state(kind), d / f"{kind}net.pth")
        lin = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(taps.values())}
        torch.save(lin, d / f"{kind}_lin.pth")
        paths[kind] = (d / f"{kind}net.pth", d / f"{kind}_lin.pth")
    total = sum(perceptual.DISTS.CHANNELS)
    torch.save({"alpha": torch.rand(1, total, 1, 1), "beta": torch.rand(1, total, 1, 1)}, d / "dists.pt")
    paths["dists"] = d / "dists.pt"

    class Tiny(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.adaptive_avg_pool2d(x / 255.0, 2).flatten(1)

    torch.jit.script(Tiny()).save(str(d / "features.pt"))
    paths["fid"] = d / "features.pt"
    return paths


@pytest.mark.parametrize("kind", ["alex", "vgg"])
def test_lpips_loads_torchvision_and_lpips_files(weight_files, kind):
    metric = perceptual.LPIPS(*weight_files[kind])
    assert metric.kind == kind
    a, b = photo(64, 64, seed=0), photo(64, 64, seed=1)
    assert metric(a, a) == pytest.approx(0.0, abs=1e-7)
    assert metric(a, b) > 0
    assert metric(a, b) == pytest.approx(metric(b, a), rel=1e-5)
    blurred = np.asarray(Image.fromarray(a).resize((16, 16)).resize((64, 64)))
    assert metric(a, blurred) > 0


def test_lpips_refuses_mismatched_files(weight_files, tmp_path):
    with pytest.raises(ValueError, match="lin1"):
        perceptual.LPIPS(weight_files["alex"][0], weight_files["vgg"][1])
    junk = tmp_path / "junk.pth"
    torch.save({"fc.weight": torch.zeros(1)}, junk)
    with pytest.raises(ValueError, match="features"):
        perceptual.load_backbone(junk)


def test_dists(weight_files):
    metric = perceptual.DISTS(weight_files["vgg"][0], weight_files["dists"])
    a, b = photo(64, 64, seed=0), photo(64, 64, seed=2)
    assert metric(a, a) == pytest.approx(0.0, abs=1e-5)
    assert metric(a, b) > metric(a, a)
    with pytest.raises(ValueError, match="VGG16"):
        perceptual.DISTS(weight_files["alex"][0], weight_files["dists"])


def test_fid_and_kid():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4))
    y = rng.normal(size=(400, 4)) + 1.0
    assert perceptual.fid(x, x) == pytest.approx(0.0, abs=1e-6)
    assert perceptual.fid(x, y) == pytest.approx(4.0, rel=0.25)  # mean shift of 1 in 4 dims
    assert abs(perceptual.kid(x, rng.normal(size=(400, 4)))) < 0.05 < perceptual.kid(x, y)


def test_patches_follow_hifics_protocol():
    patches = perceptual.patches(np.zeros((512, 768, 3), np.uint8))
    assert patches.shape == (6 + 2, 256, 256, 3)  # 2x3 grid + the grid shifted by 128


def test_eval_reports_perceptual_metrics_with_weights(weight_files, spn_weights, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(photo(256, 256, seed=i)).save(folder / f"{i}.png")
    out = tmp_path / "out"
    alex, alex_lin = weight_files["alex"]
    assert cli.main(["eval", str(folder), "--models", str(spn_weights), "--codecs", "jpeg",
                     "--qualities", "1", "--target-bpp", "0.5", "-o", str(out), "--no-progress",
                     "--no-report", "--workers", "1", "--lpips-backbone", str(alex),
                     "--lpips-lin", str(alex_lin), "--fid-model", str(weight_files["fid"])]) == 0
    for name in ("jpeg", spn_weights.stem):
        r = json.loads((out / f"{name}.json").read_text())["results"]
        for key in ("lpips", "fid", "kid"):
            assert len(r[key]) == len(r["bpp"]) and all(np.isfinite(r[key]))
        assert "dists" not in r


def test_missing_weights_are_explained(spn_weights, tmp_path, capsys):
    lines = perceptual.availability(None, None, None, None)
    assert len(lines) == 3 and all("unavailable" in line for line in lines)
    assert cli.main(["eval", str(tmp_path), "--lpips-backbone", str(tmp_path / "none.pth"),
                     "--lpips-lin", str(tmp_path / "none.pth")]) == 1
