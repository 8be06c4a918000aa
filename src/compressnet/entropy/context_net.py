"""A learned context network for the latent (context scheme 3, format versions 7 and 8).

The counted tables of scheme 2 see five neighbours: the row above and the left in the same
channel, and one symbol of the previous channel.  But when channel ``c`` is decoded, every
earlier channel is already known *everywhere*, and the bundled encoder leaves much of later
channels predictable from earlier ones: on Kodak a small network that looks at all earlier
channels (3x3 around the symbol) and at the two rows above in its own channel codes
sae-spn-lite's 11 channels in 1.71 bits a symbol, against 1.96 with the counted tables.

::

    earlier channels (one-hot, "not yet" for c and later) --3x3 conv--.
    own channel, two rows above (one-hot)   --5x5 conv, masked--------+--> + channel bias
                                                                       |
                       logits (L) <-- 1x1 <-- act <-- 1x1 <-- act <-- 1x1 <-- act

A row's symbols depend only on rows above and on earlier channels, so the decoder
decodes a row at a time, as with scheme 1.  The network does not see the symbols to the left,
which the counted tables do, and those matter most in the first channels (nothing earlier to
look at): so the fit marks per channel (``coded``) whether the network or the counted tables
code it, whichever gave fewer bits on held-out photos.  The network runs in the exact fixed-point
arithmetic of :mod:`compressnet.models.arithmetic` at both ends, and its logits become
integer frequencies through integer steps and a fixed table of exponentials
(:func:`frequencies`): every machine and thread count computes the same tables.

The network is fitted after the autoencoder, on its frozen symbols
(``python -m compressnet.entropy.fit --scheme 3``); adding it to a weights file leaves
the files of earlier formats decodable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from compressnet.entropy.context_model import TABLE_PRECISION
from compressnet.models.arithmetic import Exact, to_grid

PREFIX = "context_net."  # array names in a weights file
LOGIT_STEPS = 32  # logits are rounded to 1/32 nat before the table of exponentials
EXP_BITS = 20
# exp(-d / LOGIT_STEPS) * 2^EXP_BITS, rounded, for d = 0 .. 511 (from 466 on, 0). Python's
# exp is within an ulp everywhere, and every entry is at least 0.0005 from a rounding tie (an ulp
# here is about 1e-10); a test pins the table's hash.
EXP_TABLE = np.array([round(math.ldexp(math.exp(-d / LOGIT_STEPS), EXP_BITS)) for d in range(512)],
                     dtype=np.int64)


def frequencies(logits: np.ndarray) -> np.ndarray:
    """Integer frequencies (last axis sums to ``2**TABLE_PRECISION``, each at least 1) of
    exact logits (..., L), with integer arithmetic only."""
    z = np.round(logits * LOGIT_STEPS).astype(np.int64)  # exact: logits lie on a fine grid
    weights = EXP_TABLE[np.minimum(z.max(-1, keepdims=True) - z, len(EXP_TABLE) - 1)]
    n = logits.shape[-1]
    free = (1 << TABLE_PRECISION) - n
    freqs = weights * free // weights.sum(-1, keepdims=True) + 1
    deficit = (1 << TABLE_PRECISION) - freqs.sum(-1, keepdims=True)
    top = weights.argmax(-1)[..., None]
    np.put_along_axis(freqs, top, np.take_along_axis(freqs, top, -1) + deficit, -1)
    return freqs


def one_hot(symbols: Tensor, levels: int) -> Tensor:
    """(..., H, W) symbols (``levels`` = not yet decoded) to (..., levels + 1, H, W) planes."""
    planes = F.one_hot(symbols.long(), levels + 1).movedim(-1, -3)
    return planes.to(torch.get_default_dtype())


class ContextNet(nn.Module):
    """Logits of every latent symbol from decoded ones; see the module docstring."""

    def __init__(self, channels: int, levels: int, width: int = 64, kernel: int = 5) -> None:
        super().__init__()
        self.channels, self.levels = channels, levels
        self.earlier = nn.Conv2d(channels * (levels + 1), width, 3, padding=1)
        self.above = nn.Conv2d(levels + 1, width, kernel, padding=kernel // 2)
        self.channel_bias = nn.Parameter(torch.zeros(channels, width))
        self.hidden1 = nn.Conv2d(width, width, 1)
        self.hidden2 = nn.Conv2d(width, width, 1)
        self.logits = nn.Conv2d(width, levels, 1)
        mask = torch.zeros_like(self.above.weight)
        mask[:, :, : kernel // 2] = 1  # rows above the symbol only
        self.register_buffer("mask", mask, persistent=False)
        # 1 where the network codes a channel, 0 where the counted scheme-2 tables do
        self.register_buffer("coded", torch.ones(channels))

    def earlier_input(self, planes: Tensor, channel: Tensor) -> Tensor:
        """The earlier layer's input (N, C * (L + 1), H, W) from one-hot ``planes``
        (N, c, L + 1, H, W) of c <= C channels: item n's channels from ``channel[n]`` on, and
        those past c, marked as not yet decoded."""
        n, c, states, h, w = planes.shape
        later = torch.arange(c, device=planes.device).view(1, c, 1, 1, 1) >= channel.view(n, 1, 1, 1, 1)
        missing = torch.zeros(states, device=planes.device, dtype=planes.dtype)
        missing[self.levels] = 1
        missing = missing.view(1, 1, states, 1, 1)
        known = torch.where(later, missing, planes)
        if c < self.channels:  # a prefix of channels: the rest are "not yet" too
            known = torch.cat([known, missing.expand(n, self.channels - c, states, h, w)], 1)
        return known.reshape(n, -1, h, w)

    def forward(self, symbols: Tensor) -> Tensor:
        """Float logits (B, C, L, H, W) of every channel of ``symbols`` (B, C, H, W): training."""
        return self.from_planes(one_hot(symbols, self.levels))

    def from_planes(self, planes: Tensor) -> Tensor:
        """:meth:`forward` of one-hot planes (B, C, L + 1, H, W); they may carry a gradient
        (encoder-side refinement passes soft assignments through, straight-through), so a
        symbol's cost reaches the symbols whose contexts it is part of."""
        b, c, states, h, w = planes.shape
        channel = torch.arange(c, device=planes.device).repeat(b)
        # (B * C) items, item k predicts channel k % C
        x = self.earlier(self.earlier_input(planes.repeat_interleave(c, 0), channel))
        x = x + F.conv2d(planes.reshape(b * c, states, h, w), self.above.weight * self.mask,
                         self.above.bias, padding=self.above.padding)
        x = x + self.channel_bias[channel][:, :, None, None]
        for layer in (self.hidden1, self.hidden2):
            x = layer(F.leaky_relu(x, 0.2))
        return self.logits(F.leaky_relu(x, 0.2)).view(b, c, self.levels, h, w)

    def bits(self, symbols: Tensor) -> Tensor:
        """Ideal bits per channel (C,) of ``symbols`` under the float logits."""
        logp = F.log_softmax(self(symbols), 2)
        picked = logp.gather(2, symbols.long().unsqueeze(2)).squeeze(2)
        return -picked.sum((0, 2, 3)) / math.log(2.0)

    def state_arrays(self) -> dict[str, np.ndarray]:
        """fp16 arrays for a weights file (the mask applied)."""
        state = {k: v.detach().clone() for k, v in self.state_dict().items()}
        state["above.weight"] *= self.mask
        return {PREFIX + k: v.cpu().numpy().astype(np.float16) for k, v in state.items()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ContextNet:
        """The network stored by :meth:`state_arrays` (names with :data:`PREFIX`)."""
        state = {k[len(PREFIX):]: torch.from_numpy(v.astype(np.float32))
                 for k, v in arrays.items() if k.startswith(PREFIX)}
        width, inputs = state["earlier.weight"].shape[:2]
        levels = state["logits.weight"].shape[0]
        net = cls(inputs // (levels + 1), levels, width, state["above.weight"].shape[-1])
        net.load_state_dict(state)
        with torch.no_grad():
            net.above.weight.mul_(net.mask)
        return net.eval()


class ExactContextNet:
    """The network in exact arithmetic: the frequency tables the coder uses, the same on
    every machine whether computed for all rows at once (encoder) or row by row (decoder)."""

    def __init__(self, net: ContextNet) -> None:
        with torch.no_grad():
            net.above.weight.mul_(net.mask)  # a no-op for stored networks; exact needs zeros
        self.net = net
        self.levels = net.levels
        self.exact = Exact(net)
        self.bias = to_grid(net.channel_bias.detach().double().clone())
        self.pad = net.above.kernel_size[0] // 2

    def _head(self, x: Tensor) -> np.ndarray:
        """Frequencies (B, H, W, L) from the summed first layer (B, width, H, W)."""
        ex, net = self.exact, self.net
        for layer in (net.hidden1, net.hidden2):
            x = ex.conv(layer, ex.act(x))
        logits = ex.conv(net.logits, ex.act(x))
        return frequencies(logits.permute(0, 2, 3, 1).numpy())

    def _earlier(self, symbols: Tensor, channels: Sequence[int]) -> Tensor:
        sym = symbols.unsqueeze(0).expand(len(channels), -1, -1, -1)
        planes = self.net.earlier_input(one_hot(sym, self.levels), torch.tensor(list(channels)))
        return self.exact.conv(self.net.earlier, planes.double())

    @torch.inference_mode()
    def all_frequencies(self, symbols: np.ndarray) -> np.ndarray:
        """Frequencies (k, h, w, L) of every symbol of ``symbols`` (k, h, w), all known; a
        channel at a time, which bounds memory for large images."""
        sym = torch.from_numpy(symbols.astype(np.int64))
        out = []
        for c in range(sym.shape[0]):
            x = self._earlier(sym, [c])
            x = x.add_(self.exact.conv(self.net.above, one_hot(sym[c:c + 1], self.levels).double()))
            out.append(self._head(to_grid(x.add_(self.bias[c, :, None, None])))[0])
        return np.stack(out)

    def codes(self, channel: int) -> bool:
        """Whether the network (not the counted tables) codes ``channel``."""
        return bool(self.net.coded[channel] > 0.5)

    @torch.inference_mode()
    def earlier(self, out: np.ndarray, channel: int) -> Tensor:
        """The earlier channels' term for ``channel``, from ``out``'s first ``channel``
        channels (decoded): computed once per channel by the decoder."""
        return self._earlier(torch.from_numpy(out[:channel].astype(np.int64)), [channel])

    @torch.inference_mode()
    def row_frequencies(self, out: np.ndarray, channel: int, row: int, earlier: Tensor) -> np.ndarray:
        """Frequencies (w, L) of row ``row`` of ``channel``, from the rows above it in ``out``
        (decoded) and :meth:`earlier`: equal to :meth:`all_frequencies`' for that row."""
        w = out.shape[2]
        window = torch.full((2 * self.pad + 1, w), -1, dtype=torch.int64)
        top = max(0, row - self.pad)
        window[top - (row - self.pad): self.pad] = torch.from_numpy(out[channel, top:row].astype(np.int64))
        planes = one_hot(window.clamp(min=0), self.levels).double() * (window >= 0)
        x = self.exact.conv(self.net.above, planes.unsqueeze(0))[:, :, self.pad: self.pad + 1]
        x = x.add_(earlier[:, :, row: row + 1]).add_(self.bias[channel, :, None, None])
        return self._head(to_grid(x))[0, 0]
