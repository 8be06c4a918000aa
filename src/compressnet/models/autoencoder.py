"""SAE, SWWAE and SAE-SPN: the three models of Raman et al., "CompressNet: Generative
Compression at Extremely Low Bitrates" (WACV 2020), in one parametrised network.

Data flow (``s_l``: the 2x2 max-pool switches of level ``l``)::

    x --conv7--pool--> p0,s0 --conv3--pool--> p1,s1 --conv3--pool--> p2,s2 --conv3--pool--> p3,s3
        --conv3--conv3--> y --Q--> y_hat (first k of C channels sent, k set by the quality)

    y_hat --conv--9 ResBlocks--> g --conv--> h3 --up(s3)--> h2 --up(s2)--> h1 --up(s1)--> h0
          --up(s0)--> conv7 --> x_hat

    up(h, s) = conv(PixelShuffle(conv(h))               SAE: no switches
                    + unpool(h, s)                      SWWAE: s sent, entropy-coded
                    + unpool(h, argmax SPN(h)))         SAE-SPN: s predicted at the decoder
               --up_blocks[l] ResBlocks-->              (none in the paper)

Faults of the original code that this fixes: the switch predictor is a 4-way
classifier per pooled position (trained with cross-entropy, argmax at decode)
instead of a sigmoid fed into an index map; the nine residual blocks are nine
modules; inputs are plain RGB in [0, 1], never histogram-equalised.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from compressnet.models.arithmetic import FLOAT32, Float32
from compressnet.models.config import ModelConfig
from compressnet.models.context_model import ContextModel
from compressnet.models.layers import (
    ChannelNorm,
    ResidualBlock,
    SoftToHardQuantizer,
    pool_with_switches,
    switch_classes,
    unpool_with_switches,
)

DOWNSAMPLING = 16
SYMBOL_PREFIXES = ("encoder.", "quantizer.")  # the arrays that decide a photo's latent symbols


_act = FLOAT32.act  # the encoder always runs in float32


class EncoderOutput(NamedTuple):
    y: Tensor  # continuous latent (B, C, H/16, W/16)
    switches: list[Tensor]  # per level, (B, w_l, H/2^(l+1), W/2^(l+1)), classes 0..3
    pooled: list[Tensor]  # per level, the pooled features (targets of the stacked loss)


class DecoderOutput(NamedTuple):
    x_hat: Tensor
    features: list[Tensor]  # per level, the decoder's h_l, same shape as pooled[l]
    switch_logits: dict[int, Tensor]  # SPN levels -> (B, w_l, 4, h, w)


class ForwardOutput(NamedTuple):
    x_hat: Tensor
    decoded_latent: Tensor  # y_hat as the decoder saw it (unsent channels zero)
    symbols: Tensor  # (B, C, h, w) int64, first ``keep`` channels meaningful
    latent_bits: Tensor  # (B,) code length of the sent latent
    switch_bits: Tensor  # (B,) code length of sent switches (SWWAE), else zeros
    encoded: EncoderOutput
    decoded: DecoderOutput


class Encoder(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        w = cfg.enc_widths
        self.convs = nn.ModuleList([nn.Conv2d(3, w[0], 7, padding=3)] + [
            nn.Conv2d(w[i], w[i + 1], 3, padding=1) for i in range(4)])
        self.norms = nn.ModuleList([ChannelNorm(c) for c in w])
        self.to_latent = nn.Conv2d(w[4], cfg.latent_channels, 3, padding=1)

    def forward(self, x: Tensor) -> EncoderOutput:
        switches, pooled = [], []
        h = x
        for level in range(4):
            h, s = pool_with_switches(_act(self.norms[level](self.convs[level](h))))
            switches.append(s)
            pooled.append(h)
        y = self.to_latent(_act(self.norms[4](self.convs[4](h))))
        return EncoderOutput(y, switches, pooled)


class Upsampler(nn.Module):
    """One decoder level: 2x up by pixel shuffle, plus switch unpooling where used; returns
    its output activated."""

    def __init__(self, width: int, out_width: int, uses_switches: bool, predicts: bool,
                 blocks: int = 0) -> None:
        super().__init__()
        self.shuffle_conv = nn.Conv2d(width, width * 4, 3, padding=1)
        self.predictor = nn.Conv2d(width, width * 4, 3, padding=1) if predicts else None
        self.uses_switches = uses_switches
        self.out = nn.Conv2d(width, out_width, 3, padding=1)
        self.norm = ChannelNorm(out_width)
        # identity at initialisation, so a trained model can grow them (compressnet.train.grow)
        self.blocks = nn.ModuleList([ResidualBlock(out_width) for _ in range(blocks)])

    def forward(self, h: Tensor, switches: Tensor | None, ar: Float32 = FLOAT32
                ) -> tuple[Tensor, Tensor | None]:
        up = F.pixel_shuffle(ar.conv(self.shuffle_conv, h), 2)
        logits = None
        if self.predictor is not None:
            b, c, hh, ww = h.shape
            logits = ar.conv(self.predictor, h).view(b, c, 4, hh, ww)
            if switches is None:
                switches = switch_classes(logits)
            if not ar.keeps_logits:
                logits = None
        if self.uses_switches:
            up = ar.add(up, unpool_with_switches(h, switches))
        # activated on the way out (in the conv's bands when no blocks follow)
        h = ar.conv(self.out, ar.act(up), self.norm, act=not self.blocks)
        for block in self.blocks:
            h = block(h, ar)
        return (ar.act(h) if self.blocks else h), logits


class Decoder(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        w = cfg.enc_widths
        self.from_latent = nn.Conv2d(cfg.latent_channels, cfg.res_width, 3, padding=1)
        self.res_blocks = nn.Sequential(*[ResidualBlock(cfg.res_width) for _ in range(cfg.res_blocks)])
        self.to_level3 = nn.Conv2d(cfg.res_width, w[3], 3, padding=1)
        self.norm3 = ChannelNorm(w[3])
        used = set(cfg.switch_levels)
        predicted = used if cfg.arch == "sae-spn" else set()
        self.ups = nn.ModuleList([
            Upsampler(w[level], w[level - 1] if level else w[0], level in used, level in predicted,
                      cfg.up_blocks[level])
            for level in range(4)])
        self.to_rgb = nn.Conv2d(w[0], 3, 7, padding=3)

    def forward(self, y_hat: Tensor, switches: dict[int, Tensor] | None = None,
                ar: Float32 = FLOAT32) -> DecoderOutput:
        """``ar``: the arithmetic (:mod:`compressnet.models.arithmetic`); the codec decodes
        files of format 3 and later with the exact one."""
        return self.upsample(self.trunk(y_hat, ar), switches, ar)

    def trunk(self, y_hat: Tensor, ar: Float32 = FLOAT32) -> Tensor:
        """The layers at the latent's resolution: ``h3``, what the upsampling levels start from."""
        h = ar.conv(self.from_latent, y_hat.to(ar.dtype))
        for block in self.res_blocks:
            h = block(h, ar)
        return ar.conv(self.to_level3, ar.act(h), self.norm3)

    def upsample(self, h: Tensor, switches: dict[int, Tensor] | None = None,
                 ar: Float32 = FLOAT32) -> DecoderOutput:
        """From the trunk's ``h3`` to pixels: the four 2x levels and the conv to RGB, where a
        decoder spends its memory (:mod:`compressnet.models.tiling` runs them tile by tile)."""
        switches = switches or {}
        features: list[Tensor] = [None] * 4  # type: ignore[list-item]
        logits: dict[int, Tensor] = {}
        for level in (3, 2, 1, 0):
            features[level] = h
            h, lg = self.ups[level](h, switches.get(level), ar)
            if lg is not None:
                logits[level] = lg
        x_hat = ar.conv(self.to_rgb, h) + 0.5
        return DecoderOutput(x_hat, features, logits)


class CompressNetModel(nn.Module):
    """One of SAE / SWWAE / SAE-SPN, selected by ``cfg.arch``.

    Submodule names are fixed (``encoder``, ``quantizer``, ``decoder``,
    ``entropy``): weight files depend on them.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.quantizer = SoftToHardQuantizer(cfg.levels)
        self.decoder = Decoder(cfg)
        sent = cfg.switch_levels if cfg.transmits_switches else ()
        self.entropy = ContextModel(cfg.latent_channels, cfg.levels,
                                    tuple(cfg.enc_widths[lv] for lv in sent))

    def encode(self, x: Tensor, keep: int) -> tuple[Tensor, Tensor, EncoderOutput]:
        """Quantized latent with channels >= ``keep`` zeroed, its symbols, encoder output."""
        enc = self.encoder(x - 0.5)
        y_hat, symbols = self.quantizer(enc.y)
        mask = torch.zeros_like(y_hat)
        mask[:, :keep] = 1
        return y_hat * mask, symbols, enc

    def decode(self, y_hat: Tensor, switches: dict[int, Tensor] | None = None,
               ar: Float32 = FLOAT32) -> DecoderOutput:
        """``switches`` only for SWWAE (the sent ones) or teacher-forced training."""
        return self.decoder(y_hat, switches, ar)

    def forward(self, x: Tensor, keep: int | None = None, teacher_switches: bool = False
                ) -> ForwardOutput:
        keep = self.cfg.latent_channels if keep is None else keep
        y_hat, symbols, enc = self.encode(x, keep)
        given = None
        if self.cfg.transmits_switches or teacher_switches:
            given = {lv: enc.switches[lv] for lv in self.cfg.switch_levels}
        dec = self.decode(y_hat, given)
        latent_bits = self.entropy.latent_bits(enc.y, symbols, keep)
        switch_bits = torch.zeros_like(latent_bits)
        if self.cfg.transmits_switches:
            for i, lv in enumerate(self.cfg.switch_levels):
                switch_bits = switch_bits + self.entropy.switch_bits(i, enc.switches[lv])
        return ForwardOutput(dec.x_hat, y_hat, symbols, latent_bits, switch_bits, enc, dec)
