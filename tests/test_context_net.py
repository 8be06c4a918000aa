"""Context scheme 3: the context network, its exact integer tables and format versions 7 and 8."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from conftest import make_weights, photo

from compressnet import bitstream
from compressnet.codec import CodecError, load
from compressnet.entropy import coder
from compressnet.entropy.context_net import EXP_TABLE, ExactContextNet, frequencies
from compressnet.entropy.latent_coder import latent_coder
from compressnet.models.context_net import ContextNet
from compressnet.train.fit_entropy import choose_channels, count_tables, fit_context_net


def random_net(seed: int = 0, channels: int = 6, width: int = 16) -> ExactContextNet:
    """A stored-and-loaded network with large random weights (peaked, varied tables)."""
    torch.manual_seed(seed)
    net = ContextNet(channels, 5, width)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.4)
    return ExactContextNet(ContextNet.from_arrays(net.state_arrays()))


def test_exp_table_is_the_same_everywhere():
    """The table turns logits into frequencies on every machine; a libm that rounded one
    entry differently would change files, so its bytes are pinned."""
    assert EXP_TABLE[0] == 1 << 20 and (np.diff(EXP_TABLE) <= 0).all() and EXP_TABLE[-1] == 0
    assert hashlib.sha256(EXP_TABLE.astype("<i8").tobytes()).hexdigest()[:16] == "f29c9f2b5f5d8353"


def test_frequencies_are_valid_integer_tables():
    logits = np.random.default_rng(0).integers(-400, 400, (1000, 5)) / 32  # on the logit grid
    freqs = frequencies(logits)
    assert freqs.dtype == np.int64 and (freqs.sum(-1) == 1 << 16).all() and freqs.min() >= 1
    # a larger logit never gets a smaller frequency, and a shift of all logits changes nothing
    larger = logits[:, :, None] > logits[:, None, :]
    assert (freqs[:, :, None] >= freqs[:, None, :])[larger].all()
    np.testing.assert_array_equal(frequencies(logits + 3.0), freqs)


def test_encoder_tables_equal_the_decoders_row_by_row():
    net = random_net()
    symbols = np.random.default_rng(1).integers(0, 5, (4, 7, 9))  # a prefix of the 6 channels
    at_once = net.all_frequencies(symbols)
    out = np.empty_like(symbols)
    for c in range(4):
        earlier = net.earlier(out, c)
        for i in range(7):
            np.testing.assert_array_equal(net.row_frequencies(out, c, i, earlier), at_once[c, i])
            out[c, i] = symbols[c, i]
    assert len(np.unique(at_once.reshape(-1, 5), axis=0)) > 50  # the tables vary with context


def test_tables_do_not_depend_on_the_thread_count():
    net = random_net(seed=2)
    symbols = np.random.default_rng(3).integers(0, 5, (6, 12, 16))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = net.all_frequencies(symbols)
        torch.set_num_threads(2)
        two = net.all_frequencies(symbols)
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(one, two)


def test_scheme_3_round_trip_and_its_code_length():
    net = random_net(seed=4)
    symbols = np.random.default_rng(5).integers(0, 5, (5, 6, 8))
    latent = latent_coder(3, None, net)
    data = coder.encode(symbols, latent)
    np.testing.assert_array_equal(coder.decode(data, latent, symbols.shape).latent, symbols)
    bits = latent.bits(symbols)
    assert bits <= len(data) * 8 <= bits + 64
    with pytest.raises(ValueError, match="context network"):
        latent_coder(3, None)


def test_channels_the_network_leaves_are_coded_with_the_counted_tables():
    net = random_net(seed=9)
    with torch.no_grad():
        net.net.coded[:2] = 0  # channels 0 and 1 by the tables, as the fit chooses for sae-spn-lite
    rng = np.random.default_rng(10)
    tables = rng.integers(1, 5000, (6, 6 ** 5, 5))
    tables[..., 0] += (1 << 16) - tables.sum(-1)
    symbols = rng.integers(0, 5, (4, 5, 7))
    latent = latent_coder(3, tables, net)
    freqs = latent.frequencies(symbols)
    np.testing.assert_array_equal(freqs[:2], latent_coder(2, tables).frequencies(symbols)[:2])
    np.testing.assert_array_equal(freqs[2:], net.all_frequencies(symbols)[2:])
    data = coder.encode(symbols, latent)
    np.testing.assert_array_equal(coder.decode(data, latent, symbols.shape).latent, symbols)
    with pytest.raises(ValueError, match="counted tables"):
        coder.encode(symbols, latent_coder(3, None, net))


def test_fitted_network_predicts_a_channel_from_an_earlier_one():
    """Channel 1 copies channel 0 shifted down a row, a pattern the counted tables (previous
    channel at the same place only) cannot see; the network learns it."""
    rng = np.random.default_rng(6)
    maps = []
    for _ in range(40):
        first = rng.integers(0, 5, (1, 13, 12))
        maps.append(np.concatenate([first[:, 1:], first[:, :-1]], 0))  # (2, 12, 12)
    net, _ = fit_context_net(maps, 5, steps=300, crop=8, batch=8, width=16, progress=False)
    test = maps[0]
    with torch.no_grad():
        per_channel = net.bits(torch.from_numpy(test)[None]) / test[0].size
    assert per_channel[0] > 2.0 and per_channel[1] < 0.5


@pytest.fixture(scope="module")
def counted_and_net(weights_dir):
    return (load(str(make_weights(weights_dir, "sae-spn", seed=7, counted=True))),
            load(str(make_weights(weights_dir, "sae-spn", seed=7, net=True))))


def test_network_weights_write_format_9_and_read_format_6(counted_and_net):
    counted, with_net = counted_and_net
    assert (counted.format_version, with_net.format_version) == (6, 9)
    img = photo(96, 128, seed=8)
    old, new = counted.compress(img, quality=2), with_net.compress(img, quality=2)
    assert bitstream.unpack(new)[0].version == 9
    assert bitstream.unpack(with_net.compress(img, quality=2, colour=False))[0].version == 8
    # same encoder and decoder: the same pixels from either file (9's payload under 7's header,
    # whose colour correction is 6's)
    header, payload = bitstream.unpack(new)
    as7 = bitstream.pack(header._replace(version=7), payload)
    np.testing.assert_array_equal(with_net.decompress_array(as7), counted.decompress_array(old))
    np.testing.assert_array_equal(with_net.decompress_array(old), counted.decompress_array(old))
    np.testing.assert_array_equal(with_net.decompress_array(new), with_net.reconstruct(img, quality=2))
    with pytest.raises(CodecError, match="other weights"):
        counted.decompress_array(new)
    assert bitstream.describe(7) == "context network, exact decoder, colour layer"


def test_the_fit_gives_each_channel_to_whichever_codes_it_smaller():
    """Channel 0 repeats one symbol along each row (the counted tables see the left
    neighbour, the network does not); channel 2 is channel 1 shifted down a row (the network
    sees it, the tables' one earlier-channel neighbour does not)."""
    rng = np.random.default_rng(11)

    def sample() -> np.ndarray:
        rows = np.repeat(rng.integers(0, 5, (1, 12, 1)), 12, axis=2)
        field = rng.integers(0, 5, (1, 13, 12))
        return np.concatenate([rows, field[:, 1:], field[:, :-1]], 0)

    maps = [sample() for _ in range(60)]
    net, _ = fit_context_net(maps, 5, steps=300, crop=8, batch=8, width=16, progress=False)
    tables = count_tables(maps, channels=3, levels=5).astype(np.int64)
    chosen, tables_only = choose_channels(net, tables, [sample() for _ in range(5)])
    assert net.coded[0] == 0 and net.coded[2] == 1
    assert chosen < tables_only - 0.3
