"""Layers and models: switches, unpooling, the quantizer, distinct blocks, the SPN."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from compressnet.models.autoencoder import CompressNetModel
from compressnet.models.config import ModelConfig, preset_config
from compressnet.models.context_model import ContextModel, quantize_probabilities
from compressnet.models.layers import SoftToHardQuantizer, pool_with_switches, unpool_with_switches


def test_switches_are_argmax_positions_and_unpool_inverts_pool():
    x = torch.randn(2, 3, 8, 10)
    pooled, switches = pool_with_switches(x)
    torch.testing.assert_close(pooled, torch.nn.functional.max_pool2d(x, 2))
    assert switches.min() >= 0 and switches.max() <= 3
    assert len(torch.unique(switches)) == 4  # all four corners occur, not just top-left
    restored = unpool_with_switches(pooled, switches)
    mask = restored != 0
    torch.testing.assert_close(restored[mask], x[mask])
    assert int(mask.sum()) == pooled.numel()


def test_switch_ties_go_to_first_position():
    x = torch.zeros(1, 1, 2, 2)
    assert pool_with_switches(x)[1].item() == 0


def test_pooling_and_norm_give_the_same_values_with_and_without_gradients():
    """Inference takes faster routes (strided views, in-place norm); training's autograd path
    must see the same numbers, ties included."""
    from compressnet.models.layers import ChannelNorm

    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 3, (2, 5, 8, 10), generator=g).float()  # many ties
    with torch.no_grad():
        fast = pool_with_switches(x)
    slow = pool_with_switches(x.clone().requires_grad_())
    assert torch.equal(fast[0], slow[0].detach()) and torch.equal(fast[1], slow[1])
    norm = ChannelNorm(5)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0, generator=g)
        norm.bias.normal_(generator=g)
        fast_norm = norm(x.clone())
    assert torch.equal(fast_norm, norm(x.clone().requires_grad_()).detach())


def test_quantizer_rounds_forward_and_passes_soft_gradient():
    q = SoftToHardQuantizer(5).train()
    y = torch.tensor([-3.0, -1.4, 0.2, 0.6, 2.7], requires_grad=True)
    y_hat, symbols = q(y)
    assert y_hat.tolist() == [-2.0, -1.0, 0.0, 1.0, 2.0]
    assert symbols.tolist() == [0, 1, 2, 3, 4]
    y_hat.sum().backward()
    assert torch.all(y.grad[1:4] > 0)


def test_nine_residual_blocks_are_nine_modules():
    model = CompressNetModel(preset_config("sae", "lite"))
    blocks = list(model.decoder.res_blocks)
    assert len(blocks) == 9
    ptrs = {b.conv1.weight.data_ptr() for b in blocks}
    assert len(ptrs) == 9


@pytest.mark.parametrize("arch", ["sae", "swwae", "sae-spn"])
def test_shapes_and_switch_usage(arch):
    cfg = preset_config(arch, "tiny")
    model = CompressNetModel(cfg).eval()
    x = torch.rand(2, 3, 32, 48)
    out = model(x, keep=2)
    assert out.x_hat.shape == x.shape
    assert out.symbols.shape == (2, cfg.latent_channels, 2, 3)
    assert (out.switch_bits > 0).all() == (arch == "swwae")
    assert set(out.decoded.switch_logits) == ({0} if arch == "sae-spn" else set())


def test_spn_is_a_four_way_classifier_that_learns_switches():
    torch.manual_seed(0)
    model = CompressNetModel(preset_config("sae-spn", "tiny")).train()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    x = torch.rand(4, 3, 32, 32)
    for _ in range(60):
        out = model(x)
        logits = out.decoded.switch_logits[0]
        assert logits.shape[2] == 4
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), out.encoded.switches[0])
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = model(x)
    accuracy = (out.decoded.switch_logits[0].argmax(2) == out.encoded.switches[0]).float().mean()
    predicted = out.decoded.switch_logits[0].argmax(2)
    assert accuracy > 0.3  # chance is 0.25
    assert len(torch.unique(predicted)) > 1  # not collapsed to one corner


def test_paper_preset_has_the_papers_widths():
    cfg = preset_config("sae-spn", "paper")
    assert cfg.enc_widths == (60, 120, 240, 480, 960) and cfg.levels == 5


def test_config_round_trips_through_json():
    cfg = preset_config("swwae", "tiny")
    assert ModelConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError):
        preset_config("vae")
    with pytest.raises(ValueError):
        preset_config("sae", "lite", qualities=(4, 2))
    grown = preset_config("sae-spn", "tiny", up_blocks=[0, 1, 2, 0])  # JSON gives lists
    assert grown.up_blocks == (0, 1, 2, 0) and ModelConfig.from_json(grown.to_json()) == grown
    with pytest.raises(ValueError):
        preset_config("sae", "tiny", up_blocks=(1, 1))


def test_config_written_before_up_blocks_loads_with_none():
    raw = json.loads(preset_config("sae", "tiny").to_json())
    del raw["up_blocks"]
    assert ModelConfig.from_json(json.dumps(raw)).up_blocks == (0, 0, 0, 0)


def test_integer_tables_sum_to_power_of_two_and_cover_every_symbol():
    probs = np.random.default_rng(0).dirichlet(np.full(5, 0.05), size=(7, 36))
    freqs = quantize_probabilities(probs)
    assert (freqs.sum(-1) == 1 << 16).all() and freqs.min() >= 1


def test_rate_estimate_matches_table_lookup():
    cm = ContextModel(3, 5)
    with torch.no_grad():
        cm.latent_logits.normal_()
    symbols = torch.randint(0, 5, (1, 3, 4, 5))
    y = symbols.float() - 2
    bits = cm.latent_bits(y, symbols, keep=3)
    uniform = ContextModel(3, 5).latent_bits(y, symbols, keep=3)
    assert bits.shape == (1,) and torch.allclose(uniform, torch.tensor([60 * np.log2(5)]).float())


def test_switch_classes_are_argmax_with_its_ties():
    from compressnet.models.layers import switch_classes

    logits = torch.randint(-2, 3, (2, 5, 4, 7, 9)).double()  # many ties
    assert torch.equal(switch_classes(logits), logits.argmax(2))
    logits.requires_grad_(True)  # as in training and refinement
    assert torch.equal(switch_classes(logits * 2), logits.argmax(2))
