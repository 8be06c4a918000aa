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
(``compressnet fit-entropy --scheme 3``); adding it to a weights file leaves
the files of earlier formats decodable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from compressnet.models.arithmetic import Exact, to_grid
from compressnet.models.context_model import TABLE_PRECISION
from compressnet.models.context_net import ContextNet, one_hot

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
        x = self.exact.conv(self.net.above, planes.unsqueeze(0), pad_rows=False)  # the centre row
        x = x.add_(earlier[:, :, row: row + 1]).add_(self.bias[channel, :, None, None])
        return self._head(to_grid(x))[0, 0]
