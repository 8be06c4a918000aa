"""Large images in tiles: the decoder's tiles are bit-identical to the whole image, the halos are
as small as they may be, and the codec and CLI decode in tiles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ARCHS, photo
from PIL import Image

from compressnet import cli
from compressnet.codec import CodecError, load, single_threaded
from compressnet.models import tiling
from compressnet.models.arithmetic import Exact
from compressnet.models.autoencoder import CompressNetModel
from compressnet.models.config import preset_config

UP_BLOCKS = [(0, 0, 0, 0), (1, 0, 2, 1)]


def random_model(arch: str, up_blocks: tuple[int, ...]) -> CompressNetModel:
    """Every weight random: the residual blocks' zero-initialised second convs too, so each
    block widens the receptive field (an identity block would hide a halo too small)."""
    torch.manual_seed(0)
    model = CompressNetModel(preset_config(arch, "tiny", up_blocks=up_blocks)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return model


def tiled_decode(model, y_hat, given, ar, tile: int) -> torch.Tensor:
    out = torch.full((1, 3, *(16 * s for s in y_hat.shape[-2:])), float("nan"), dtype=ar.dtype)
    for (rows, cols), x_hat in tiling.decode_tiles(model, y_hat, given, ar, tile):
        assert torch.isnan(out[..., rows, cols]).all()  # tiles do not overlap
        out[..., rows, cols] = x_hat
    return out


@pytest.mark.parametrize("up_blocks", UP_BLOCKS)
@pytest.mark.parametrize("arch", ARCHS)
def test_tiles_decode_bit_identically_and_the_halo_is_tight(arch, up_blocks, monkeypatch):
    model = random_model(arch, up_blocks)
    x = torch.rand(1, 3, 16 * 9, 16 * 7)
    with torch.no_grad():
        enc = model.encoder(x - 0.5)
        y_hat, _ = model.quantizer(enc.y)
        given = {lv: enc.switches[lv] for lv in model.cfg.switch_levels} \
            if model.cfg.transmits_switches else None
        ar = Exact(model.decoder)
        whole = model.decode(y_hat, given, ar).x_hat
        for tile in (2, 5):
            assert torch.equal(tiled_decode(model, y_hat, given, ar, tile), whole), tile
        halo = tiling.decoder_halo(model.cfg)
        monkeypatch.setattr(tiling, "decoder_halo", lambda cfg: halo - 1)
        assert not torch.equal(tiled_decode(model, y_hat, given, ar, 3), whole)


@pytest.mark.parametrize("arch", ARCHS)
def test_tiled_encoder_matches_the_whole_image_and_its_halo_is_tight(arch, monkeypatch):
    """Float32 in other shapes may differ in a last bit, never more; one less latent pixel of
    halo changes the latent at the tiles' edges."""
    model = random_model(arch, (0, 0, 0, 0))
    x = torch.rand(1, 3, 16 * 9, 16 * 7)
    with torch.no_grad():
        enc = model.encoder(x - 0.5)
        y, switches = tiling.encode_tiled(model, x, (0, 1, 2, 3), tile=2)
        assert y.shape == enc.y.shape and (y - enc.y).abs().max() < 1e-5
        for lv in range(4):
            assert torch.equal(switches[lv], enc.switches[lv]), lv
        one, _ = tiling.encode_tiled(model, x, tile=100)
        assert torch.equal(one, enc.y)  # an image in one tile is encoded whole, as before
        halo = tiling.encoder_halo()
        monkeypatch.setattr(tiling, "encoder_halo", lambda: halo - 1)
        short, _ = tiling.encode_tiled(model, x, tile=2)
        assert (short - enc.y).abs().max() > 1e-5  # 30 times more than float32 moves it


def test_tiles_cover_the_latent_once():
    for height, width, halo, tile in [(1, 1, 3, 48), (7, 13, 2, 3), (48, 32, 3, 48), (50, 49, 0, 48)]:
        covered = np.zeros((height, width), dtype=int)
        for t in tiling.tiles(height, width, halo, tile):
            covered[t.core] += 1
            for c, w, n in zip(t.core, t.window, (height, width)):
                assert max(0, c.start - halo) == w.start and w.stop == min(n, c.stop + halo)
        assert (covered == 1).all()
    assert len(tiling.tiles(48, 32, 3, 48)) == 1  # a Kodak image is one tile
    with pytest.raises(ValueError, match="tiles need"):
        tiling.tiles(4, 4, 1, 0)


def test_codec_decodes_in_tiles_to_the_same_pixels(tiny_codec):
    img = photo(100, 150, seed=4)
    data = tiny_codec.compress(img, quality=max(tiny_codec.qualities))
    whole = tiny_codec.decompress_array(data)
    decoded, encoded = [], []
    tiny_codec.tile = 2
    try:
        assert tiny_codec.tile_count(100, 150) == 4 * 5
        tiled = tiny_codec.decompress_array(data, on_tile=lambda done, total: decoded.append((done, total)))
        again = tiny_codec.encode(img, quality=max(tiny_codec.qualities),
                                  on_tile=lambda done, total: encoded.append((done, total))).data
    finally:
        tiny_codec.tile = tiling.TILE
    np.testing.assert_array_equal(tiled, whole)
    assert decoded == encoded == [(i, 20) for i in range(1, 21)]
    # encoded in 20 tiles: a file of the same size, give or take a symbol flipped by float32
    assert abs(len(again) - len(data)) <= 2


def test_cli_decompresses_a_tiled_image(spn_weights, tmp_path, monkeypatch):
    src = tmp_path / "wide.png"
    Image.fromarray(photo(80, 200, seed=5)).save(src)
    cnet, whole, tiled = tmp_path / "wide.cnet", tmp_path / "whole.png", tmp_path / "tiled.png"
    model = ["--model", str(spn_weights)]
    assert cli.main(["compress", str(src), "-o", str(cnet), *model]) == 0
    assert cli.main(["decompress", str(cnet), "-o", str(whole), *model]) == 0
    monkeypatch.setattr("compressnet.codec.TILE", 2)
    assert load(str(spn_weights)).tile == 2
    assert cli.main(["decompress", str(cnet), "-o", str(tiled), *model]) == 0
    assert tiled.read_bytes() == whole.read_bytes()


def test_refinement_refuses_an_image_too_large_before_encoding(spn_weights, monkeypatch):
    codec = load(str(spn_weights))
    monkeypatch.setattr("compressnet.codec.REFINE_MAX_PIXELS", 64 * 64)
    img = photo(64, 80)
    called = []
    monkeypatch.setattr("compressnet.codec.encode_tiled", lambda *a, **k: called.append(1))
    with pytest.raises(CodecError, match=r"--refine searches the whole 80x64 image at once .* "
                                         r"images of up to 4,096 pixels"):
        codec.encode(img, refine=2)
    assert not called


def test_tiles_encoded_side_by_side_give_the_same_latent():
    """Several tiles at once, each on one thread: the same latent and switches as one at a
    time, and the progress callback still counts the tiles in order."""
    model = CompressNetModel(preset_config("swwae", "tiny"))
    x = torch.rand(1, 3, 16 * 9, 16 * 7)
    calls = []
    with single_threaded(), torch.no_grad():
        y1, s1 = tiling.encode_tiled(model, x, (0, 3), tile=2)
        y3, s3 = tiling.encode_tiled(model, x, (0, 3), tile=2, workers=3,
                                     on_tile=lambda done, total: calls.append((done, total)))
    assert torch.equal(y1, y3) and all(torch.equal(s1[lv], s3[lv]) for lv in s1)
    assert calls == [(i, 20) for i in range(1, 21)]
