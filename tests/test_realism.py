"""The realism decoder: trained behind a frozen encoder, attached to the codec, blended with the
faithful decoder at decode time, exact on any thread count; realism 0 is the faithful decoder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import photo
from PIL import Image

from compressnet import cli
from compressnet.codec import CodecError, load, single_threaded
from compressnet.models.realism import blend, load_realism_decoder, save_realism_decoder
from compressnet.train.realism import RealismConfig, train_realism


def _perturbed(decoder: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """A stand-in for a trained realism decoder: the faithful one with every weight moved."""
    import copy

    other = copy.deepcopy(decoder)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return other


@pytest.fixture(scope="module")
def realism_file(spn_weights, tmp_path_factory):
    codec = load(str(spn_weights))
    path = tmp_path_factory.mktemp("realism") / "tiny.realism.safetensors"
    save_realism_decoder(_perturbed(codec.model.decoder), codec.weights_fingerprint, path,
                         {"default_realism": "1"})
    return path


@pytest.fixture()
def codec_pair(spn_weights, realism_file):
    plain, with_realism = load(str(spn_weights)), load(str(spn_weights))
    with_realism.attach_realism(realism_file)
    return plain, with_realism


def test_blend_ends_and_middle(spn_weights, realism_file):
    decoder = load(str(spn_weights)).model.decoder
    weights = load_realism_decoder(realism_file)
    assert blend(decoder, weights, 0.0) is decoder  # realism 0: the faithful decoder itself
    one = blend(decoder, weights, 1.0).state_dict()
    half = blend(decoder, weights, 0.5).state_dict()
    for name, w0 in decoder.state_dict().items():
        if not w0.is_floating_point():
            continue
        w1 = torch.from_numpy(weights.arrays[name].astype(np.float32))
        assert torch.equal(one[name], w1)
        expected = (w0.double() + 0.5 * (w1.double() - w0.double())).float()
        assert torch.equal(half[name], expected)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="from 0 to 1"):
            blend(decoder, weights, bad)


def test_realism_zero_is_the_faithful_decoder_bit_for_bit(codec_pair):
    plain, with_realism = codec_pair
    data = plain.compress(photo(48, 80, seed=3), quality=1)
    faithful = plain.decompress_array(data)
    assert np.array_equal(with_realism.decompress_array(data, realism=0), faithful)
    sharp = with_realism.decompress_array(data, realism=1)
    middle = with_realism.decompress_array(data, realism=0.5)
    assert sharp.shape == faithful.shape and not np.array_equal(sharp, faithful)
    # halfway in weights lands between the two in pixels, on average
    d_end = np.abs(sharp.astype(int) - faithful).mean()
    assert 0 < np.abs(middle.astype(int) - faithful).mean() < d_end


def test_realism_decoding_is_exact_on_any_thread_count(codec_pair):
    _, codec = codec_pair
    data = codec.compress(photo(64, 96, seed=4), quality=2)
    with single_threaded():
        one = codec.decompress_array(data, realism=0.75)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        codec._blended = None  # built again, under two threads
        two = codec.decompress_array(data, realism=0.75)
    finally:
        torch.set_num_threads(previous)
    assert np.array_equal(one, two)


def test_refusals(codec_pair, tmp_path, spn_weights):
    plain, with_realism = codec_pair
    data = plain.compress(photo(32, 32), quality=1)
    with pytest.raises(CodecError, match="no realism decoder"):
        plain.decompress_array(data, realism=1)
    with pytest.raises(CodecError, match="from 0 to 1"):
        with_realism.decompress_array(data, realism=2)
    other = tmp_path / "other.realism.safetensors"
    save_realism_decoder(plain.model.decoder, b"\x00" * 8, other)
    with pytest.raises(CodecError, match="other weights"):
        plain.attach_realism(other)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="not a realism decoder file"):
        plain.attach_realism(junk)


def test_cli_decompress_with_realism(spn_weights, realism_file, tmp_path, capsys):
    codec = load(str(spn_weights))
    src = tmp_path / "a.cnet"
    src.write_bytes(codec.compress(photo(48, 64, seed=5), quality=1))
    base = ["decompress", str(src), "--model", str(spn_weights)]
    assert cli.main(base + ["-o", str(tmp_path / "r0.png"), "--realism", "0"]) == 0
    assert cli.main(base + ["-o", str(tmp_path / "r1.png"), "--realism-decoder", str(realism_file)]) == 0
    assert "realism 1" in capsys.readouterr().out  # the decoder file's default
    r0, r1 = (np.asarray(Image.open(tmp_path / f"r{i}.png")) for i in (0, 1))
    assert np.array_equal(r0, codec.decompress_array(src.read_bytes())) and not np.array_equal(r0, r1)
    assert cli.main(base + ["-o", str(tmp_path / "r2.png"), "--realism", "1"]) == 1
    assert "no realism decoder" in capsys.readouterr().err
    assert not (tmp_path / "r2.png").exists()


def test_train_realism_resumes_and_exports(spn_weights, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(photo(128, 160, seed=20 + i)).save(folder / f"{i}.png")
    cfg = RealismConfig(str(folder), str(tmp_path / "run"), model=str(spn_weights), max_side=160,
                        crop=64, batch=2, steps=3, val_photos=1, val_every=2, ckpt_every=2)
    path = train_realism(cfg, progress=False)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "psnr@2" in r] == [0, 2]  # held-out scores at the start and step 2
    assert all(np.isfinite(v) for r in log for k, v in r.items() if k != "time")
    codec = load(str(spn_weights))
    codec.attach_realism(path)
    assert load_realism_decoder(path).metadata["steps"] == "3"
    train_realism(cfg._replace(steps=5), progress=False)  # resumes at step 3
    assert load_realism_decoder(path).metadata["steps"] == "5"
    data = codec.compress(photo(64, 64), quality=1)
    assert codec.decompress_array(data, realism=1).shape == (64, 64, 3)
    # carried to a fresh machine: the slim checkpoint (fp16, no optimiser) goes on in a new folder
    from compressnet.train.realism import save_slim

    slim = save_slim(tmp_path / "run" / "checkpoint.pt", tmp_path / "slim.safetensors")
    assert slim.stat().st_size < (tmp_path / "run" / "checkpoint.pt").stat().st_size / 2
    again = train_realism(cfg._replace(out=str(tmp_path / "run2"), steps=6, resume_slim=str(slim)),
                          progress=False)
    assert load_realism_decoder(again).metadata["steps"] == "6"
    log2 = [json.loads(line) for line in (tmp_path / "run2" / "log.jsonl").read_text().splitlines()]
    assert log2[0]["step"] == 6 and "psnr@2" in log2[0]  # resumed at 5: one step, then validated
