"""Previews: a file's colour layer read on its own, without weights or networks."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import photo
from PIL import Image

from compressnet import bitstream, cli, codec, colour_layer
from compressnet.codec import load, preview_array


@pytest.fixture(scope="module")
def spn(spn_weights):
    return load(str(spn_weights))


@pytest.mark.parametrize("quality", [1, 2])
def test_the_preview_is_the_photos_block_colours(spn, quality):
    img = photo(72, 104, seed=4)
    preview = preview_array(spn.compress(img, quality))
    layer = colour_layer.analyse(img, spn.colour_block(quality), codec.COLOUR_STEP)
    assert preview.shape == (*colour_layer.grid_shape(72, 104, layer.block), 3)
    np.testing.assert_array_equal(preview, colour_layer.block_colours(layer))
    # and it is what the photo looks like at that scale: each block's mean within a step
    blocks = img[:layer.block * (72 // layer.block), :layer.block * (104 // layer.block)]
    means = blocks.reshape(72 // layer.block, layer.block, 104 // layer.block, layer.block, 3)
    means = means.mean((1, 3))
    assert np.abs(preview[:means.shape[0], :means.shape[1]] - means).max() <= codec.COLOUR_STEP / 2 + 0.5


def test_files_without_a_colour_layer_and_corrupted_ones_are_refused(spn):
    img = photo(40, 48, seed=1)
    with pytest.raises(bitstream.BitstreamError, match="version 8 .* no colour layer"):
        preview_array(spn.compress(img, 1, colour=False))
    header, payload = bitstream.unpack(spn.compress(img, 1))
    garbage = bitstream.pack(header, bytes(len(payload)))  # a valid checksum over zeros
    with pytest.raises(bitstream.BitstreamError, match="corrupted payload"):
        preview_array(garbage)
    odd = bitstream.pack(header, payload[:-1])
    with pytest.raises(bitstream.BitstreamError, match="32-bit words"):
        preview_array(odd)


def test_cli_preview_needs_no_weights(tmp_path, spn, monkeypatch, capsys):
    src = tmp_path / "p.cnet"
    data = spn.compress(photo(64, 96, seed=2), 2)
    src.write_bytes(data)

    def no_weights(*args, **kwargs):
        raise AssertionError("a preview loaded a model")

    monkeypatch.setattr(cli, "load_for_header", no_weights)
    monkeypatch.setattr(cli, "load", no_weights)
    assert cli.main(["decompress", str(src), "--preview"]) == 0
    out = tmp_path / "p.preview.png"
    np.testing.assert_array_equal(np.asarray(Image.open(out)), preview_array(data))
    assert "colour blocks" in capsys.readouterr().out
    assert cli.main(["decompress", str(src), "--preview"]) == 1  # exists: --force to overwrite
    assert "exists" in capsys.readouterr().err
