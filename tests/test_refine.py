"""Encoder-side latent refinement: better latents for the same decoder and file format."""

from __future__ import annotations

import base64
import io
import math

import pytest
import torch
from conftest import photo

from compressnet import cli
from compressnet.codec import CodecError, load
from compressnet.image import pad_to_multiple, to_tensor
from compressnet.models import refine
from compressnet.models.autoencoder import DOWNSAMPLING
from compressnet.models.refine import objective, refine_latent


@pytest.fixture(scope="module")
def bundled():
    return load("sae-spn")


def _score(model, x, symbols, keep, size):
    """The objective of the latent that ``symbols`` send, as the decoder renders it."""
    h, w = size
    y_hat = (symbols - (model.cfg.levels - 1) // 2).float()
    y_hat[:, keep:] = 0
    with torch.no_grad():
        x_hat = model.decode(y_hat).x_hat[..., :h, :w]
        return objective(model, x_hat, x[..., :h, :w], y_hat, symbols, keep).item()


def _encoded(codec, height, width, seed, quality):
    """A test photo's padded tensor, the channels ``quality`` sends, and the encoder's symbols
    and continuous latent: where refinement starts."""
    model = codec.model
    x = pad_to_multiple(to_tensor(photo(height, width, seed=seed)), DOWNSAMPLING)
    with torch.no_grad():
        _, symbols, enc = model.encode(x, model.cfg.latent_channels)
    return x, codec.channels_sent(quality), symbols, enc.y


def test_refinement_lowers_the_objective(bundled):
    model = bundled.model
    x, keep, symbols, y = _encoded(bundled, 72, 104, seed=5, quality=3)
    refined = refine_latent(model, x, y, keep, steps=4, size=(72, 104))
    assert not torch.equal(refined[:, :keep], symbols[:, :keep])
    assert torch.equal(refined[:, keep:], symbols[:, keep:])  # unsent channels untouched
    before = _score(model, x, symbols, keep, (72, 104))
    after = _score(model, x, refined, keep, (72, 104))
    assert after < before


def test_refined_files_are_deterministic_and_decode_as_usual(bundled):
    img = photo(48, 80, seed=2)
    plain = bundled.compress(img, quality=2)
    refined = bundled.compress(img, quality=2, refine=3)
    assert refined != plain
    assert bundled.compress(img, quality=2, refine=3) == refined
    assert bundled.decompress_array(refined).shape == img.shape
    assert bundled.compress(img, quality=2, refine=0) == plain


@pytest.mark.parametrize("quality,seed", [(1, 7), (3, 8), (6, 9)])
def test_refined_files_are_never_larger_than_the_encoders(bundled, quality, seed):
    img = photo(64, 96, seed=seed)
    plain = bundled.encode(img, quality=quality)
    refined = bundled.encode(img, quality=quality, refine=4)
    assert len(refined.data) <= len(plain.data)


def test_refinement_sends_only_latents_that_fit(bundled, monkeypatch):
    """With a size test that only the encoder's own latent passes, that latent is sent; the
    rate term's weight doubles after each step that does not fit."""
    model = bundled.model
    x, keep, start, y = _encoded(bundled, 48, 64, seed=6, quality=2)
    asked = []

    def only_the_start(candidate):
        asked.append(candidate.clone())
        return torch.equal(candidate, start)

    weights = []

    def recording(*args, **kwargs):
        weights.append(kwargs.get("rate_weight", refine.RATE_WEIGHT))
        return objective(*args, **kwargs)

    monkeypatch.setattr(refine, "objective", recording)
    refined = refine_latent(model, x, y, keep, steps=3, size=(48, 64), fits=only_the_start)
    assert torch.equal(refined, start)
    assert sorted(set(weights)) == [refine.RATE_WEIGHT * 2**n for n in range(3)]  # steps 1-3
    assert len(asked) == 4 and not torch.equal(asked[-1], start)
    with pytest.raises(ValueError, match="must fit"):
        refine_latent(model, x, y, keep, steps=1, fits=lambda candidate: False)


def test_refinement_reports_each_step(bundled):
    steps = []
    bundled.encode(photo(32, 48, seed=3), quality=1, refine=3, on_step=lambda: steps.append(1))
    assert len(steps) == 3


def test_target_rate_holds_with_refinement(bundled):
    img = photo(64, 96, seed=4)
    target = bundled.encode(img, quality=3).bpp * 1.001
    result = bundled.encode_to_target(img, target, refine=2)
    assert result.bpp <= target and result.quality == 3


def test_loaded_model_counts_the_coders_bits(tiny_codec):
    """A loaded model's entropy module is rebuilt from the shipped integer tables."""
    img = photo(64, 96, seed=1)
    quality = max(tiny_codec.qualities)
    keep = tiny_codec.channels_sent(quality)
    result = tiny_codec.encode(img, quality, colour=False)
    analysis = tiny_codec.analyse(img)
    entropy = tiny_codec.model.entropy
    symbols = torch.from_numpy(analysis.symbols)[None]
    bits = entropy.latent_bits(symbols.float(), symbols, keep).item()
    bits += sum(entropy.switch_bits(i, torch.from_numpy(s)[None]).item()
                for i, s in enumerate(analysis.switches))
    assert bits == pytest.approx(result.estimated_bits, rel=1e-4)


def test_refinement_counts_bits_under_the_context_network(spn_weights):
    """With a context network (format 7), the rate term counts the channels it codes under its
    float logits: within a hair of the coder's exact tables, and not what the counted tables say."""
    codec = load(str(spn_weights))  # a codec of its own: its network's choice is changed here
    entropy, net = codec.model.entropy, codec.context_net.net
    net.coded[:] = torch.arange(len(net.coded)) % 2  # odd channels by the network, even by tables
    img = photo(64, 96, seed=2)
    quality = max(codec.qualities)
    keep = codec.channels_sent(quality)
    result = codec.encode(img, quality, colour=False)
    symbols = torch.from_numpy(codec.analyse(img).symbols)[None]
    bits = entropy.latent_bits(symbols.float(), symbols, keep, net).item()
    assert bits == pytest.approx(result.estimated_bits, rel=1e-3)
    assert entropy.latent_bits(symbols.float(), symbols, keep).item() != pytest.approx(bits, rel=1e-2)


def test_rate_gradient_reaches_the_symbols_in_a_context(spn_weights):
    """Under the network, a symbol's gradient holds more than its own code length's: what it
    does to the predictions of the symbols whose context it is in."""
    codec = load(str(spn_weights))
    entropy, net = codec.model.entropy, codec.context_net.net
    net.coded[:] = 1
    keep, half = net.channels, (net.levels - 1) // 2
    torch.manual_seed(0)
    y = (torch.randn(1, keep, 6, 7) * 1.5).clamp(-half, half).requires_grad_(True)
    symbols = y.detach().round().long() + half
    entropy.latent_bits(y, symbols, keep, net).sum().backward()
    centres = torch.arange(-half, half + 1, dtype=y.dtype)
    own_y = y.detach().clone().requires_grad_(True)
    w = torch.softmax(-((own_y.unsqueeze(-1) - centres) ** 2), -1)
    with torch.no_grad():
        logp = torch.log_softmax(net(symbols), 2).movedim(2, -1)
    (-(w * logp).sum() / math.log(2)).backward()
    assert torch.isfinite(y.grad).all()
    assert not torch.allclose(y.grad, own_y.grad, atol=1e-4)
    # earlier channels are in every later channel's context
    assert y.grad[:, :-1].sub(own_y.grad[:, :-1]).abs().sum() > 0


def test_codec_refines_under_the_network_that_codes_its_file(spn_weights, monkeypatch):
    import compressnet.codec as codec_module

    codec = load(str(spn_weights))
    seen = []

    def recording(*args, **kwargs):
        seen.append(args[-1])  # the network, the last positional argument
        return refine_latent(*args, **kwargs)

    monkeypatch.setattr(codec_module, "refine_latent", recording)
    img = photo(32, 48, seed=1)
    codec.encode(img, 1, refine=1)
    codec.encode(img, 1, refine=1, colour=False)
    assert seen == [codec.context_net.net] * 2


def test_refinement_runs_on_the_callers_threads(bundled, monkeypatch):
    """The search is the slow part of a refined encode: it may use every thread it is given
    (the encoder network before it still runs each tile on one)."""
    import compressnet.codec as codec_module

    seen = []

    def recording(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return refine_latent(*args, **kwargs)

    monkeypatch.setattr(codec_module, "refine_latent", recording)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        bundled.encode(photo(32, 48, seed=1), 1, refine=1)
    finally:
        torch.set_num_threads(before)
    assert seen == [2]


def test_negative_refine_is_refused(bundled):
    with pytest.raises(CodecError, match="refine"):
        bundled.encode(photo(32, 32), refine=-1)


def test_cli_compress_with_refine(tmp_path, capsys):
    from PIL import Image

    src = tmp_path / "in.png"
    Image.fromarray(photo(40, 56, seed=3)).save(src)
    assert cli.main(["compress", str(src), "--refine", "2", "-q", "1"]) == 0
    assert cli.main(["decompress", str(tmp_path / "in.cnet"), "-o", str(tmp_path / "out.png")]) == 0
    assert Image.open(tmp_path / "out.png").size == (56, 40)
    assert cli.main(["compress", str(src), "--refine", "-3", "--force"]) == 1
    assert "refine" in capsys.readouterr().err


def test_refinement_for_the_realism_decoder_searches_through_it(bundled):
    """--refine-realism: the search runs through the realism decoder under its loss, so its
    file shows better there (LPIPS-Alex of the realism-decoded image) than the file refined
    for the faithful decoder; the file is no larger than the encoder's own."""
    from compressnet.perceptual import LPIPS

    img = photo(64, 96, seed=11)
    plain = bundled.encode(img, quality=1)
    for_faithful = bundled.encode(img, quality=1, refine=8)  # 8: the realism search's smaller
    for_realism = bundled.encode(img, quality=1, refine=8, refine_realism=1.0)  # steps need them
    assert for_realism.data != for_faithful.data
    assert len(for_realism.data) <= len(plain.data)
    alex = LPIPS("alex")

    def seen(data: bytes) -> float:
        decoded = bundled.decompress_array(data, realism=1.0)
        as_tensor = [torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255 for a in (decoded, img)]
        with torch.no_grad():
            return alex(*as_tensor).item()

    assert seen(for_realism.data) < seen(for_faithful.data)
    assert seen(for_realism.data) < seen(plain.data)


def test_refinement_for_the_realism_decoder_at_a_target_rate(bundled):
    """--target-bpp with --refine-realism: the quality and colour blocks rate control picks,
    the latent searched for the realism decoder, the file still within the target."""
    img = photo(48, 80, seed=5)
    target = len(bundled.compress(img, quality=2)) * 8 / img[..., 0].size
    plain = bundled.encode_to_target(img, target)
    for_faithful = bundled.encode_to_target(img, target, refine=3)
    for_realism = bundled.encode_to_target(img, target, refine=3, refine_realism=1.0)
    assert for_realism.quality == plain.quality and for_realism.bpp <= target
    assert len(for_realism.data) <= len(plain.data)
    assert for_realism.data != for_faithful.data
    assert bundled.compress(img, target_bpp=target, refine=3, refine_realism=1.0) == for_realism.data


def test_the_web_page_refines_for_the_decoder_it_shows(bundled):
    """A job with refine steps searches for the realism its image is decoded at."""
    from PIL import Image

    from compressnet.server.service import compress_upload

    img = photo(48, 64, seed=3)
    upload = io.BytesIO()
    Image.fromarray(img).save(upload, "PNG")
    for realism in (0.0, 1.0):
        result = compress_upload(bundled, upload.getvalue(), "a.png", 1, None, False, 10**6,
                                 lambda p, stage: None, refine=2, realism=realism)
        assert base64.b64decode(result["cnet"]) == bundled.compress(
            img, quality=1, refine=2, refine_realism=realism)


def test_refinement_for_realism_after_a_realism_decode():
    """The blended decoder a decode caches (built in inference mode) serves a later search:
    a server decodes at realism 1, then refines for it."""
    codec = load("sae-spn")
    img = photo(32, 48, seed=9)
    codec.decompress_array(codec.compress(img, quality=1), realism=1.0)
    refined = codec.compress(img, quality=1, refine=2, refine_realism=1.0)
    assert codec.decompress_array(refined, realism=1.0).shape == img.shape


def test_an_evaluation_recomputes_realism_refined_rows_when_the_search_changes(bundled, tmp_path,
                                                                             monkeypatch):
    """Cached rows refined for the realism decoder name the search's settings: rows searched
    with other settings are computed again, the same settings come from the cache."""
    from PIL import Image

    from compressnet.evaluate import compare

    Image.fromarray(photo(32, 32)).save(tmp_path / "a.png")
    computed = []

    def rows(codec, path, qualities, refine_steps, realism, switches):
        computed.append(refine.REALISM_STEP_SIZE)
        return []

    monkeypatch.setattr(compare, "learned_rows", rows)
    monkeypatch.setattr(compare, "_SCORER", type("Scorer", (), {"key": ((), True)})())
    cache = compare.Cache(tmp_path / "cache")
    for step in (0.05, 0.05, 0.1):
        monkeypatch.setattr(refine, "REALISM_STEP_SIZE", step)
        compare.run_learned(bundled, [tmp_path / "a.png"], [1], cache, progress=False, refine=2,
                            realism=1.0)
    assert computed == [0.05, 0.1]


def test_refine_realism_is_refused_where_it_cannot_apply(bundled, tmp_path, capsys):
    from PIL import Image

    with pytest.raises(CodecError, match="realism"):
        bundled.encode(photo(32, 32), refine=2, refine_realism=1.5)
    with pytest.raises(CodecError, match="refine steps"):
        bundled.encode(photo(32, 32), refine_realism=1.0)
    with pytest.raises(CodecError, match="refine steps"):
        bundled.compress(photo(32, 32), target_bpp=0.1, refine_realism=1.0)
    src = tmp_path / "in.png"
    Image.fromarray(photo(32, 48, seed=3)).save(src)
    assert cli.main(["compress", str(src), "--refine-realism", "1"]) == 1
    assert "--refine STEPS" in capsys.readouterr().err
    assert not (tmp_path / "in.cnet").exists()
