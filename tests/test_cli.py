"""The command line: outputs, overwrite protection, atomic writes, exit codes, messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import photo
from PIL import Image

from compressnet import cli


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "compressnet.cli", *args], capture_output=True,
                          text=True, timeout=300)


@pytest.fixture()
def image_file(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(photo(40, 72)).save(path)
    return path


def test_compress_decompress_info(tmp_path, image_file, spn_weights, capsys):
    before = image_file.read_bytes()
    assert cli.main(["compress", str(image_file), "--model", str(spn_weights), "-q", "1"]) == 0
    cnet = tmp_path / "photo.cnet"
    out = capsys.readouterr().out
    assert cnet.is_file() and f"{cnet.stat().st_size} bytes" in out and "q1" in out
    assert cli.main(["info", str(cnet)]) == 0
    info = capsys.readouterr().out
    assert "quality 1, 72x40" in info
    assert "format v9 (context network, exact decoder, edge-aware colour layer)" in info
    assert cli.main(["decompress", str(cnet), "--model", str(spn_weights)]) == 0
    decoded = Image.open(tmp_path / "photo.decoded.png")
    assert decoded.size == (72, 40) and decoded.mode == "RGB"
    assert image_file.read_bytes() == before  # the input is never touched


def test_no_colour_layer_writes_format_8(tmp_path, image_file, spn_weights, capsys):
    out = tmp_path / "plain.cnet"
    assert cli.main(["compress", str(image_file), "--model", str(spn_weights), "-o", str(out),
                     "--no-colour-layer"]) == 0
    assert cli.main(["info", str(out)]) == 0
    assert "format v8 (context network, exact decoder), weights" in capsys.readouterr().out
    assert cli.main(["decompress", str(out), "--model", str(spn_weights)]) == 0


def test_refuses_to_overwrite_without_force(tmp_path, image_file, spn_weights, capsys):
    target = tmp_path / "photo.cnet"
    target.write_bytes(b"precious")
    assert cli.main(["compress", str(image_file), "--model", str(spn_weights)]) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "--force" in err
    assert target.read_bytes() == b"precious"
    assert cli.main(["compress", str(image_file), "--model", str(spn_weights), "--force"]) == 0
    assert target.read_bytes()[:2] == b"CN"


def test_interrupted_write_leaves_nothing(tmp_path, image_file, spn_weights, monkeypatch, capsys):
    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    assert cli.main(["compress", str(image_file), "--model", str(spn_weights)]) == 1
    assert "disk full" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]


def test_out_dir_and_several_inputs(tmp_path, image_file, spn_weights):
    second = tmp_path / "second.png"
    Image.fromarray(photo(20, 20, seed=2)).save(second)
    out = tmp_path / "out"
    assert cli.main(["compress", str(image_file), str(second), "--out-dir", str(out),
                     "--model", str(spn_weights)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["photo.cnet", "second.cnet"]
    assert cli.main(["compress", str(image_file), str(second), "-o", str(tmp_path / "x.cnet"),
                     "--model", str(spn_weights)]) == 1


@pytest.mark.parametrize("content,message", [
    (b"", "empty"),
    (b"hello, not an image", "not an image"),
    (None, "truncated"),
])
def test_bad_images_exit_1_with_one_line(tmp_path, spn_weights, content, message):
    bad = tmp_path / "bad.png"
    if content is None:
        buf = tmp_path / "good.png"
        Image.fromarray(photo(64, 64)).save(buf)
        content = buf.read_bytes()[:200]
    bad.write_bytes(content)
    result = run("compress", str(bad), "--model", str(spn_weights))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("compressnet: error:") and message in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "bad.cnet").exists()


@pytest.mark.parametrize("content,message", [
    (b"", "empty"),
    (b"GIF89a......", "magic"),
    (b"CN\x01\x01\x00\x00\x01\x07\x07\x00\x00\x00\x00", "checksum"),
])
def test_bad_bitstreams_exit_1(tmp_path, content, message):
    bad = tmp_path / "bad.cnet"
    bad.write_bytes(content)
    for command in ("decompress", "info"):
        result = run(command, str(bad))
        assert result.returncode == 1, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "bad.decoded.png").exists()


def test_missing_input_and_bad_usage_exit_1(tmp_path, spn_weights):
    result = run("compress", str(tmp_path / "nope.png"), "--model", str(spn_weights))
    assert result.returncode == 1 and "no such file" in result.stderr
    assert run("compress").returncode == 1
    assert run("compress", "x.png", "--quality", "abc").returncode == 1


def test_too_large_image_is_refused(tmp_path, spn_weights, monkeypatch, capsys):
    from compressnet import image

    monkeypatch.setattr(image, "MAX_PIXELS", 100)
    path = tmp_path / "big.png"
    Image.fromarray(photo(20, 20)).save(path)
    assert cli.main(["compress", str(path), "--model", str(spn_weights)]) == 1
    assert "too large (limit 100 pixels)" in capsys.readouterr().err


def test_user_model_file_needs_model_flag(tmp_path, image_file, spn_weights):
    assert cli.main(["compress", str(image_file), "--model", str(spn_weights)]) == 0
    result = run("decompress", str(tmp_path / "photo.cnet"))
    assert result.returncode == 1 and "--model PATH" in result.stderr


def test_two_inputs_with_one_output_name_are_refused(tmp_path, spn_weights, capsys):
    for suffix in ("png", "bmp"):
        Image.fromarray(photo(16, 16)).save(tmp_path / f"same.{suffix}")
    args = ["compress", str(tmp_path / "same.png"), str(tmp_path / "same.bmp"), "--force",
            "--model", str(spn_weights)]
    assert cli.main(args) == 1
    assert "would both be written" in capsys.readouterr().err
    assert not (tmp_path / "same.cnet").exists()


def test_decompress_writes_the_format_its_output_names(tmp_path, image_file, spn_weights, capsys):
    cnet = tmp_path / "photo.cnet"
    assert cli.main(["compress", str(image_file), "--model", str(spn_weights)]) == 0
    assert cli.main(["decompress", str(cnet), "--model", str(spn_weights)]) == 0
    png = np.asarray(Image.open(tmp_path / "photo.decoded.png"))
    for name, fmt in [("a.webp", "WEBP"), ("b.JPG", "JPEG"), ("c.tif", "TIFF"), ("d", "PNG")]:
        out = str(tmp_path / name)
        assert cli.main(["decompress", str(cnet), "--model", str(spn_weights), "-o", out]) == 0
        with Image.open(tmp_path / name) as im:
            assert im.format == fmt and im.size == (72, 40)
            if fmt != "JPEG":  # the lossless ones hold the decoded pixels exactly
                np.testing.assert_array_equal(np.asarray(im.convert("RGB")), png)
    assert cli.main(["decompress", str(cnet), "--model", str(spn_weights), "--format", "webp",
                     "--out-dir", str(tmp_path / "out")]) == 0
    assert Image.open(tmp_path / "out" / "photo.decoded.webp").format == "WEBP"


def test_an_output_suffix_without_a_format_is_refused_before_decoding(tmp_path, image_file, spn_weights,
                                                                    capsys, monkeypatch):
    cnet = tmp_path / "photo.cnet"
    assert cli.main(["compress", str(image_file), "--model", str(spn_weights)]) == 0
    capsys.readouterr()
    monkeypatch.setattr(cli, "load_for_header", lambda *a: pytest.fail("decoded before the check"))
    assert cli.main(["decompress", str(cnet), "-o", str(tmp_path / "photo.gif")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("compressnet: error:") and "cannot write .gif images" in err and ".png" in err
    assert not (tmp_path / "photo.gif").exists()


def test_folders_expand_to_their_images_and_files(tmp_path, spn_weights, capsys):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    for name in ("b.png", "a.JPG"):
        Image.fromarray(photo(32, 48)).save(photos / name)
    Image.fromarray(photo(32, 48)).save(photos / "sub" / "c.png")  # not a file of the folder itself
    (photos / "notes.txt").write_text("not a photo")
    out = tmp_path / "small"
    assert cli.main(["compress", str(photos), "--model", str(spn_weights), "--out-dir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.cnet", "b.cnet"]
    assert cli.main(["info", str(out)]) == 0
    assert [line.split(":")[0] for line in capsys.readouterr().out.splitlines()[-2:]] == [
        str(out / "a.cnet"), str(out / "b.cnet")]
    assert cli.main(["decompress", str(out), "--model", str(spn_weights), "--format", "webp"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.cnet", "a.decoded.webp", "b.cnet", "b.decoded.webp"]
    capsys.readouterr()
    assert cli.main(["compress", str(photos / "sub" / "c.png"), str(tmp_path / "empty"),
                     "--model", str(spn_weights)]) == 1  # a missing path is still an error
    (tmp_path / "empty").mkdir()
    assert cli.main(["compress", str(tmp_path / "empty"), "--model", str(spn_weights)]) == 1
    assert "a folder with no images in it" in capsys.readouterr().err


def test_one_bad_input_among_several_does_not_stop_the_others(tmp_path, spn_weights):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.png", "c.png"):
        Image.fromarray(photo(32, 48)).save(photos / name)
    (photos / "b.png").write_bytes((photos / "a.png").read_bytes()[:100])  # truncated
    result = run("compress", str(photos), "--model", str(spn_weights))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and "b.png" in lines[0] and "truncated" in lines[0]
    assert lines[1] == "compressnet: 1 of 3 inputs failed"
    assert (photos / "a.cnet").is_file() and (photos / "c.cnet").is_file()
    assert not (photos / "b.cnet").exists()
    (photos / "c.cnet").write_bytes(b"CN garbage")
    result = run("decompress", str(photos), "--model", str(spn_weights))
    assert result.returncode == 1 and (photos / "a.decoded.png").is_file()
    assert "c.cnet" in result.stderr and "1 of 2 inputs failed" in result.stderr


def test_version(capsys):
    import compressnet

    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"compressnet {compressnet.__version__} ") and "writes 9" in out


def test_small_gaps_in_the_command_line(spn_weights, tmp_path, capsys, monkeypatch):
    """-q 0 and a nan/inf target are refused up front; an existing output is refused before
    the work; an unwritable folder is named, not the temporary file beside the output; a
    missing folder to evaluate is one plain line."""

    img = tmp_path / "a.png"
    Image.fromarray(photo(32, 48)).save(img)
    base = ["compress", str(img), "--model", str(spn_weights)]
    for bad_serve in (["--workers", "0"], ["--time-limit", "nan"]):  # refused before anything starts
        assert cli.main(["serve", *bad_serve]) == 1
    for bad in (["-q", "0"], ["--target-bpp", "nan"], ["--target-bpp", "inf"], ["--target-bpp", "0"]):
        with pytest.raises(SystemExit) as exit_:
            cli.main(base + ["-o", str(tmp_path / "x.cnet"), *bad])
        assert exit_.value.code == 1
        assert "must be" in capsys.readouterr().err
    assert not (tmp_path / "x.cnet").exists()
    out = tmp_path / "a.cnet"
    out.write_bytes(b"keep me")
    opened = []
    monkeypatch.setattr("compressnet.cli.open_image", lambda p: opened.append(p))
    assert cli.main(base + ["-o", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err and not opened and out.read_bytes() == b"keep me"
    monkeypatch.undo()

    def refuse(*args, dir=None, **kwargs):  # a folder this user may not write to (root may)
        raise PermissionError(13, "Permission denied", f"{dir}/.a.cnet.x1y2.tmp")

    monkeypatch.setattr("compressnet.io_utils.tempfile.mkstemp", refuse)
    assert cli.main(base + ["-o", str(tmp_path / "locked" / "a.cnet")]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'locked' / 'a.cnet'}: cannot write there (Permission denied)" in err
    assert ".tmp" not in err
    monkeypatch.undo()
    assert cli.main(["eval", str(tmp_path / "missing"), "--codecs"]) == 1
    assert capsys.readouterr().err.strip().endswith("missing: no such folder")
