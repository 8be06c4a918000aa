"""Context schemes, counted tables (compressnet.train.fit_entropy) and the format versions they select."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_weights, photo

from compressnet import bitstream
from compressnet.codec import CodecError, load
from compressnet.entropy import coder
from compressnet.entropy.latent_coder import latent_coder
from compressnet.models.context_model import latent_contexts, latent_contexts_np
from compressnet.train.fit_entropy import add_latent_models, channel_ranges, count_tables, main


@pytest.mark.parametrize("scheme", [1, 2])
def test_torch_and_numpy_contexts_agree(scheme):
    symbols = np.random.default_rng(0).integers(0, 5, (4, 6, 7))
    expected = latent_contexts_np(symbols, 5, scheme)
    got = latent_contexts(torch.from_numpy(symbols)[None], 5, scheme)[0].numpy()
    np.testing.assert_array_equal(got, expected)
    assert expected.max() < 6 ** (2 if scheme == 1 else 5)


def test_scheme_1_is_the_format_1_context():
    """Format-1 files index their tables with above * (L + 1) + previous channel."""
    s = np.random.default_rng(1).integers(0, 5, (3, 4, 5))
    above = np.full_like(s, 5)
    above[:, 1:] = s[:, :-1]
    prev = np.full_like(s, 5)
    prev[1:] = s[:-1]
    np.testing.assert_array_equal(latent_contexts_np(s, 5, 1), above * 6 + prev)


def test_counted_tables_exploit_the_left_neighbour():
    rng = np.random.default_rng(2)
    # rows that repeat one random symbol: the left neighbour predicts everything
    maps = [np.repeat(rng.integers(0, 5, (4, 8, 1)), 12, axis=2) for _ in range(200)]
    tables = count_tables(maps, channels=4, levels=5)
    assert tables.shape == (4, 6**5, 5) and (tables.sum(-1) == 1 << 16).all() and tables.min() >= 1
    test = np.repeat(rng.integers(0, 5, (4, 8, 1)), 12, axis=2)
    latent = latent_coder(2, tables.astype(np.int64))
    bits = latent.bits(test)
    assert bits < 0.25 * test.size * np.log2(5)
    data = coder.encode(test, latent)
    decoded = coder.decode(data, latent, test.shape).latent
    np.testing.assert_array_equal(decoded, test)


@pytest.fixture(scope="module")
def learned_and_counted(weights_dir):
    base = make_weights(weights_dir, "sae-spn", seed=3)
    return load(str(base)), load(str(make_weights(weights_dir, "sae-spn", seed=3, counted=True)))


def test_counted_tables_write_format_6_and_old_files_still_decode(learned_and_counted):
    learned, counted = learned_and_counted
    assert (learned.format_version, counted.format_version) == (5, 6)
    img = photo(96, 128, seed=4)
    old, new = learned.compress(img, quality=2), counted.compress(img, quality=2)
    assert bitstream.unpack(old)[0].version == 5 and bitstream.unpack(new)[0].version == 6
    # the same latent either way: format 3 decodes bit-exactly with the refitted weights
    np.testing.assert_array_equal(counted.decompress_array(old), learned.decompress_array(old))
    np.testing.assert_array_equal(counted.decompress_array(new), learned.decompress_array(old))
    with pytest.raises(CodecError, match="other weights"):
        learned.decompress_array(new)


def test_loaded_rate_model_counts_what_the_coder_codes(learned_and_counted):
    """Refinement's rate term must use the coder's own (counted) tables."""
    _, counted = learned_and_counted
    x = torch.from_numpy(photo(64, 96, seed=5)).permute(2, 0, 1)[None].float() / 255
    keep = counted.channels_sent(2)
    with torch.no_grad():
        enc = counted.model.encoder(x - 0.5)
        _, symbols = counted.model.quantizer(enc.y)
        bits = counted.model.entropy.latent_bits(enc.y, symbols, keep).item()
    coded = latent_coder(2, counted.tables["latent2"]).bits(symbols[0, :keep].numpy())
    assert bits == pytest.approx(coded, rel=1e-4)


def test_fit_command_writes_a_new_file_and_never_overwrites(tmp_path, weights_dir, capsys):
    from PIL import Image

    base = make_weights(weights_dir, "sae", seed=4)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(photo(64, 64)).save(photos / "a.png")
    out = tmp_path / "fitted.safetensors"
    assert main([str(base), str(photos), "-o", str(out), "--no-context-net"]) == 0
    assert load(str(out)).format_version == 6 and "fingerprint" in capsys.readouterr().out
    with_net = tmp_path / "with-net.safetensors"
    assert main([str(base), str(photos), "-o", str(with_net), "--net-steps", "5"]) == 0
    assert load(str(with_net)).format_version == 9 and "bits/symbol" in capsys.readouterr().out
    before = out.read_bytes()
    assert main([str(base), str(photos), "-o", str(out)]) == 1
    assert "exists" in capsys.readouterr().err and out.read_bytes() == before
    assert main([str(base), str(tmp_path / "none"), "-o", str(tmp_path / "x.safetensors")]) == 1


def test_fit_keeps_every_other_array(weights_dir, tmp_path):
    from safetensors.numpy import load_file

    base = make_weights(weights_dir, "swwae", seed=5)
    files = [tmp_path / "a.png"]
    from PIL import Image

    Image.fromarray(photo(64, 64)).save(files[0])
    out = tmp_path / "fitted.safetensors"
    add_latent_models(base, files, out, net_steps=3, progress=False)
    before, after = load_file(str(base)), load_file(str(out))
    added = set(after) - set(before)
    assert "tables.latent2" in added and all(k.startswith("context_net.") for k in added - {"tables.latent2"})
    assert len(added) > 1
    for name, array in before.items():
        np.testing.assert_array_equal(after[name], array)


def test_fit_names_coded_channels_from_one():
    """The fit's note numbers channels as the README and cards do (0.6.0 wrote 0-based lists)."""
    assert channel_ranges([3, 4, 5, 6, 9, 11, 12]) == "3-6, 9, 11-12"
    assert channel_ranges([1]) == "1"
    assert channel_ranges([]) == "none"


def test_symbol_maps_are_cached_for_the_same_photos_and_encoder(weights_dir, tmp_path, monkeypatch):
    """``--maps``: a fit elsewhere (a GPU machine with a packed copy of the photos) reads the
    symbols encoded here; a cache from another encoder is refused, not silently used."""
    from PIL import Image

    from compressnet.models.io import load_weights
    from compressnet.train import fit_entropy as fit

    files = []
    for i in range(2):
        files.append(tmp_path / f"p{i}.png")
        Image.fromarray(photo(64, 80, seed=i)).save(files[-1])
    model = load_weights(make_weights(weights_dir, "sae", seed=21)).model
    cache = tmp_path / "maps.npz"
    first = fit.cached_symbols(model, files, cache, progress=False)
    assert cache.exists()

    def no_encoding(*args, **kwargs):
        raise AssertionError("the cache should have been read")

    monkeypatch.setattr(fit, "latent_symbols", no_encoding)
    packed = [f.with_suffix(".webp") for f in files]  # a packed copy: same stems
    again = fit.cached_symbols(model, packed, cache, progress=False)
    assert len(again) == len(first)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    other = load_weights(make_weights(weights_dir, "sae", seed=22)).model
    with pytest.raises(ValueError, match="another encoder"):
        fit.cached_symbols(other, files, cache, progress=False)


def test_a_time_budgeted_fit_cuts_its_steps():
    """``--net-minutes``: the steps are planned after timing the first ones."""
    from compressnet.train.fit_entropy import PLAN_AFTER, fit_context_net

    rng = np.random.default_rng(0)
    maps = [rng.integers(0, 5, (3, 12, 12)) for _ in range(2)]
    _, steps = fit_context_net(maps, 5, steps=10**6, crop=8, batch=2, width=8, progress=False,
                               minutes=1e-9)
    assert steps == PLAN_AFTER
    _, steps = fit_context_net(maps, 5, steps=7, crop=8, batch=2, width=8, progress=False)
    assert steps == 7


def test_a_time_budgeted_fit_that_slows_down_still_ends_at_its_deadline(monkeypatch):
    """A plan made from the first steps' pace is not trusted to the end: on a clock where the
    first 200 steps take 2 s and every later one 0.1 s, a 10-second fit (planned at 1,000 steps
    from that first pace) stops at its deadline, 80 steps after the plan."""
    from compressnet.train import fit_entropy as fit

    calls = iter(range(10**6))

    def clock() -> float:
        n = next(calls)  # call 0: the start; call 1: after step PLAN_AFTER; then one a step
        return 0.0 if n == 0 else 2.0 + 0.1 * (n - 1)

    monkeypatch.setattr(fit.time, "perf_counter", clock)
    rng = np.random.default_rng(0)
    maps = [rng.integers(0, 5, (3, 12, 12)) for _ in range(2)]
    _, steps = fit.fit_context_net(maps, 5, steps=10**6, crop=8, batch=2, width=8,
                                   progress=False, minutes=10 / 60)
    assert fit.PLAN_AFTER == 200
    assert steps == 280
