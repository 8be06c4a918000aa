"""Evaluation: matched-rate bisection, result files, plots, BD-rate, the HTML report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import photo
from PIL import Image

from compressnet import cli
from compressnet.evaluate import classical
from compressnet.evaluate.bdrate import bd_rate, compare_curves
from compressnet.evaluate.plot import load_results

CODECS = [name for name in classical.CODECS if classical.available(name) is None]


def test_all_codecs_of_the_issue_are_available_here():
    assert {"jpeg", "webp", "jpeg2000", "avif", "hevc", "jxl"} <= set(CODECS)


@pytest.mark.parametrize("name", CODECS)
def test_bisection_never_exceeds_the_target(name):
    codec = classical.CODECS[name]
    pixels = photo(96, 128, seed=4)
    for budget in (300, 900, 2500):
        match = classical.largest_under(codec, pixels, budget)
        if match.fits:
            assert len(match.data) <= budget
            assert match.data == codec.encode(pixels, match.setting)
            if match.setting < codec.highest:  # the next setting up does not fit
                assert len(codec.encode(pixels, match.setting + 1)) > budget or \
                    len(codec.encode(pixels, match.setting + 1)) <= len(match.data)
        else:
            assert match.setting == codec.lowest and len(match.data) > budget
        assert codec.decode(match.data, size=(128, 96)).shape == pixels.shape


@pytest.mark.parametrize("name", ["hevc@1/2", "avif@1/3"])
def test_shrunken_copies_are_coded_small_and_enlarged_again(name):
    codec = classical.CODECS[name]
    pixels = photo(96, 129, seed=5)
    data = codec.encode(pixels, 50)
    small = codec.decode(data)
    shrink = int(name[-1])
    assert small.shape[:2] == (round(96 / shrink), round(129 / shrink))
    assert codec.decode(data, size=(129, 96)).shape == pixels.shape
    full = classical.CODECS[name.split("@")[0]]
    assert len(data) < len(full.encode(pixels, 50))


def test_bd_rate_of_a_curve_against_itself_is_zero_and_sign_is_right():
    rate, quality = [0.03, 0.05, 0.1, 0.2], [22.0, 24.0, 26.5, 29.0]
    assert bd_rate(rate, quality, rate, quality) == pytest.approx(0.0, abs=1e-9)
    assert bd_rate(rate, quality, [r * 0.8 for r in rate], quality) == pytest.approx(-20.0)
    assert bd_rate(rate[:3], quality[:3], [r * 1.1 for r in rate[:3]], quality[:3]) == pytest.approx(10.0)
    with pytest.raises(ValueError):
        bd_rate(rate, quality, rate, [40, 41, 42, 43])


@pytest.fixture(scope="module")
def eval_run(tmp_path_factory, spn_weights):
    folder = tmp_path_factory.mktemp("images")
    for i in range(2):
        Image.fromarray(photo(176, 192, seed=i)).save(folder / f"img{i}.png")
    out = tmp_path_factory.mktemp("results")
    args = ["eval", str(folder), "--models", str(spn_weights), "--codecs", "jpeg", "hevc", "avif",
            "--target-bpp", "0.2", "0.5", "-o", str(out), "--workers", "1", "--no-progress"]
    assert cli.main(args) == 0
    return folder, out, args


def test_eval_writes_compressai_schema(eval_run):
    folder, out, _ = eval_run
    for name in ("jpeg", "hevc", "avif", spn_name(out)):
        doc = json.loads((out / f"{name}.json").read_text())
        assert doc["name"] == name and doc["description"]
        r = doc["results"]
        for key in ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"):
            assert len(r[key]) == len(r["bpp"]) >= 1
        assert all(np.isfinite(r["psnr-rgb"])) and all(0 < m <= 1 for m in r["ms-ssim-rgb"])
        load_results(out / f"{name}.json")
    rows = (out / "per-image.csv").read_text().splitlines()
    assert rows[0].startswith("codec,image,point") and len(rows) == 1 + 2 * (2 * 3 + 2)


def spn_name(out):
    return next(p.stem for p in out.glob("*.json") if p.stem not in classical.CODECS)


def test_classical_points_respect_their_targets(eval_run):
    _, out, _ = eval_run
    import csv

    for row in csv.DictReader((out / "per-image.csv").open()):
        if row["codec"] in classical.CODECS and row["above_target"] == "False":
            assert float(row["bpp"]) <= float(row["point"]) + 1e-9


def test_report_references_every_image_and_plot_loads_back(eval_run, tmp_path):
    folder, out, _ = eval_run
    html = (out / "report.html").read_text()
    for image in folder.iterdir():
        assert f"id='{image.name}'" in html
    assert html.count("data:image/png;base64,") >= 1 + 2 * 5  # plot + 2 images x 5 crops
    assert (out / "rd.png").stat().st_size > 1000
    target = tmp_path / "again.png"
    jsons = [str(p) for p in out.glob("*.json")]
    assert cli.main(["plot", *jsons, "-o", str(target), "--log-x"]) == 0
    assert target.stat().st_size > 1000


def test_rerun_uses_the_cache(eval_run, monkeypatch):
    _, _, args = eval_run

    def no_encoding(*a, **k):
        raise AssertionError("re-encoded despite the cache")

    monkeypatch.setattr(classical, "largest_under", no_encoding)
    assert cli.main([*args, "--no-report"]) == 0


def test_plot_overlays_published_curves_and_rejects_bad_json(tmp_path, capsys):
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps({"name": "bpg", "results": {"bpp": [0.1, 0.2], "psnr-rgb": [27, 29],
                                                          "ms-ssim-rgb": [0.9, 0.93]}}))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"results": {"psnr": [1]}}))
    assert cli.main(["plot", str(ref), "-o", str(tmp_path / "p.png")]) == 0
    assert cli.main(["plot", str(ref), str(bad), "-o", str(tmp_path / "q.png")]) == 1
    assert "CompressAI's results format" in capsys.readouterr().err


def test_eval_without_the_colour_layer_is_its_own_curve(eval_run, tmp_path):
    """Files without the colour layer are smaller: their curve gets its own name and cache."""
    folder, out, args = eval_run
    plain = tmp_path / "plain"
    argv = [a if a != str(out) else str(plain) for a in args]
    argv[argv.index("--codecs") + 1:argv.index("--target-bpp")] = []
    assert cli.main([*argv, "--no-colour-layer", "--no-report"]) == 0
    name = spn_name(plain)
    assert name == spn_name(out) + "-no-colour-layer"
    with_layer = json.loads((out / f"{spn_name(out)}.json").read_text())["results"]["bpp"]
    without = json.loads((plain / f"{name}.json").read_text())["results"]["bpp"]
    assert all(w < c for w, c in zip(without, with_layer))


def test_compare_curves_tabulates_both_and_their_bd_rate():
    anchor = {"bpp": [0.02, 0.04, 0.08], "psnr-rgb": [22.0, 23.0, 24.0], "ms-ssim-rgb": [0.80, 0.84, 0.88]}
    test = {"bpp": [0.01, 0.02, 0.04], "psnr-rgb": [22.0, 23.0, 24.0], "ms-ssim-rgb": [0.70, 0.72, 0.74]}
    lines = compare_curves(anchor, test, "old", "new")
    assert lines[0] == "| quality | bpp old | PSNR old | MS-SSIM old | bpp new | PSNR new | MS-SSIM new |"
    assert lines[2] == "| 1 | 0.0200 | 22.00 | 0.8000 | 0.0100 | 22.00 | 0.7000 |"
    assert lines[-2] == "- BD-rate (PSNR) of new against old: -50.0%"  # half the bits everywhere
    assert lines[-1].startswith("- BD-rate (MS-SSIM) of new against old: - (")  # no overlap
    with pytest.raises(ValueError):
        compare_curves(anchor, {k: v[:2] for k, v in test.items()}, "old", "new")
    some = compare_curves(anchor, {**test, "quality": [1, 3, 5]}, "old", "new")  # a subset
    assert [line.split(" | ")[0] for line in some[2:5]] == ["| 1", "| 3", "| 5"]


def test_equal_size_crops_hold_classical_files_to_compressnets_size(spn_weights):
    from compressnet.codec import load
    from compressnet.evaluate.report import CROP, equal_size_crops
    from compressnet.metrics import psnr

    codec = load(str(spn_weights))
    pixels = photo(300, 280, seed=6)
    crops = equal_size_crops(codec, pixels, 1, codecs=("jpeg", "webp"))
    assert [c.name for c in crops] == ["original", f"{codec.name} q1", "jpeg", "webp"]
    ours = crops[1]
    assert ours.bytes == len(codec.compress(pixels, quality=1))
    np.testing.assert_array_equal(crops[0].pixels, pixels[22:22 + CROP, 12:12 + CROP])
    for c in crops[2:]:
        assert c.pixels.shape == (CROP, CROP, 3)
        assert (c.bytes <= ours.bytes) == c.fits
        assert ("smallest file is larger" in c.label) != c.fits
    decoded = codec.decompress_array(codec.compress(pixels, quality=1))
    assert abs(ours.psnr - psnr(pixels, decoded)) < 1e-9 and ours.bpp == ours.bytes * 8 / (300 * 280)


def test_equal_bytes_eval_with_realism_and_perceptual_metrics(spn_weights, tmp_path):
    """--equal-bytes matches every classical file, per image, to the model's file at each
    quality; --realism adds the realism decoder's curve for the same files; every row has
    LPIPS-Alex, LPIPS-VGG and DISTS; --limit takes the first images."""
    import torch

    from compressnet.codec import load
    from compressnet.models.realism import save_realism_decoder

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(photo(64, 96, seed=i)).save(folder / f"{i}.png")
    codec = load(str(spn_weights))
    decoder = codec.model.decoder
    with torch.no_grad():
        for p in decoder.parameters():
            p.add_(0.02)
    realism = save_realism_decoder(decoder, codec.weights_fingerprint, tmp_path / "r.safetensors")
    out = tmp_path / "out"
    assert cli.main(["eval", str(folder), "--models", str(spn_weights), "--qualities", "1", "2",
                     "--equal-bytes", "--realism", "0", "1", "--realism-decoder", str(realism),
                     "--codecs", "jpeg", "hevc@1/2", "--limit", "2", "-o", str(out), "--workers", "1",
                     "--no-progress", "--no-report"]) == 0
    rows = (out / "per-image.csv").read_text().splitlines()
    header = rows[0].split(",")
    records = [dict(zip(header, r.split(","))) for r in rows[1:]]
    assert {r["image"] for r in records} == {"0.png", "1.png"}
    name = spn_weights.stem
    assert {r["codec"] for r in records} == {name, f"{name}@realism1", "jpeg", "hevc@1/2"}
    ours = {(r["image"], r["point"]): int(r["bytes"]) for r in records if r["codec"] == name}
    assert ours == {(r["image"], r["point"]): int(r["bytes"]) for r in records
                    if r["codec"] == f"{name}@realism1"}  # the same files, decoded two ways
    for r in records:
        scores = [float(r[k]) for k in ("lpips_alex", "lpips_vgg", "dists")]
        assert all(np.isfinite(v) and v >= 0 for v in scores)
        if r["codec"] in ("jpeg", "hevc@1/2"):
            assert r["point"] in ("q1", "q2")
            assert (int(r["bytes"]) <= ours[(r["image"], r["point"])]) == (r["above_target"] == "False")
    doc = json.loads((out / "hevc@1-2.json").read_text())
    assert doc["results"]["point"] == ["q1", "q2"] and len(doc["results"]["dists"]) == 2


def test_model_card_runs_the_eval_pipeline_and_ships_one_results_file(spn_weights, tmp_path, monkeypatch):
    """`compressnet card`: a table per quality with the fixed-length rate and SAE-SPN's switch
    accuracy, results written once (with --ship: beside the weights, linked from the card)."""
    from compressnet import zoo

    data = tmp_path / "photos"
    data.mkdir()
    for i in range(2):
        Image.fromarray(photo(40, 56, seed=i)).save(data / f"p{i}.png")
    shipped = tmp_path / "weights"
    shipped.mkdir()
    monkeypatch.setattr(zoo, "weights_dir", lambda: shipped)
    out = tmp_path / "cards"
    assert cli.main(["card", str(spn_weights), "--data", str(data), "--out", str(out),
                     "--no-perceptual", "--ship"]) == 0
    name = spn_weights.stem
    doc = json.loads((shipped / f"{name}.kodak.json").read_text())["results"]
    assert doc["quality"] == [1, 2] and len(doc["fixed-length-bpp"]) == 2
    assert all(0 <= a <= 1 for a in doc["switch-accuracy"]) and "lpips-vgg" not in doc
    assert not (out / f"{name}.json").exists()  # one copy
    card = (out / f"{name}.md").read_text()
    assert f"../weights/{name}.kodak.json" in card and "switch acc." in card
    assert sum(line.startswith(f"| {name} | q") for line in card.splitlines()) == 2
