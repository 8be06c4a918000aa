"""A context-adaptive probability model for the quantized latent and the switches.

The latent symbol at channel ``c``, row ``i``, column ``j`` is coded with a
categorical distribution chosen by already-decoded neighbours (a missing
neighbour is its own value, ``L``).  Training learns tables for two of them,
the symbol above in the same channel and the one at the same place in channel
``c - 1``: ``(L + 1) ** 2`` tables per channel (context scheme 1).  Once a model
is trained, :mod:`compressnet.train.fit_entropy` counts tables for five neighbours on
its training images (scheme 2, ``(L + 1) ** 5`` tables per channel, about 10%
fewer bytes).  A prefix of channels is always decodable on its own, which is
what channel truncation needs.

:meth:`ContextModel.integer_tables` turns the learned logits into integer
frequency tables once, when weights are exported, so the coder never sees a
float computed at decode time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from compressnet.models.context_net import ContextNet

TABLE_PRECISION = 16  # every table sums to 2**16


# Causal neighbours of latent symbol (c, i, j) per context scheme, as offsets (dc, di, dj) to
# the neighbour (c - dc, i - di, j - dj); the first is the most significant digit of the index.
# Scheme 1 (format versions 1, 3 and 5): above and previous channel, tables learned in training.
# Scheme 2 (format versions 2, 4 and 6): above, left, above-left, two to the left and previous channel,
# tables counted on training images after training (-10% bytes on Kodak at the same image).
CONTEXT_NEIGHBOURS = {
    1: ((0, 1, 0), (1, 0, 0)),
    2: ((0, 1, 0), (0, 0, 1), (0, 1, 1), (0, 0, 2), (1, 0, 0)),
}


def context_count(levels: int, scheme: int = 1) -> int:
    """Tables per channel: each neighbour is a symbol or "missing" (``levels``)."""
    return (levels + 1) ** len(CONTEXT_NEIGHBOURS[scheme])


def latent_contexts(symbols: Tensor, levels: int, scheme: int = 1) -> Tensor:
    """Context index (B, C, H, W) of every latent symbol from its causal neighbours."""
    b, c, h, w = symbols.shape
    ctx = torch.zeros_like(symbols)
    for dc, di, dj in CONTEXT_NEIGHBOURS[scheme]:
        shifted = F.pad(symbols, (dj, 0, di, 0, dc, 0), value=levels)[:, :c, :h, :w]
        ctx = ctx * (levels + 1) + shifted
    return ctx


def latent_contexts_np(symbols: np.ndarray, levels: int, scheme: int = 1) -> np.ndarray:
    """Numpy twin of :func:`latent_contexts` for one image (C, H, W) of int symbols."""
    c, h, w = symbols.shape
    ctx = np.zeros(symbols.shape, dtype=np.int64)
    for dc, di, dj in CONTEXT_NEIGHBOURS[scheme]:
        shifted = np.pad(symbols, ((dc, 0), (di, 0), (dj, 0)), constant_values=levels)[:c, :h, :w]
        ctx = ctx * (levels + 1) + shifted
    return ctx


def quantize_probabilities(probs: np.ndarray, precision: int = TABLE_PRECISION) -> np.ndarray:
    """Integer frequencies (last axis sums to ``2**precision``, each at least 1)."""
    total = 1 << precision
    n = probs.shape[-1]
    freqs = np.floor(probs * (total - n)).astype(np.int64) + 1
    deficit = total - freqs.sum(-1)
    top = probs.argmax(-1)
    np.put_along_axis(freqs, top[..., None],
                      np.take_along_axis(freqs, top[..., None], -1) + deficit[..., None], -1)
    return freqs.astype(np.int32)


class ContextModel(nn.Module):
    """Learned latent tables ``(C, (L+1)^2, L)`` and switch tables ``(levels, width, 4)``."""

    def __init__(self, channels: int, levels: int, switch_widths: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.levels = levels
        self.latent_logits = nn.Parameter(torch.zeros(channels, (levels + 1) ** 2, levels))
        self.switch_logits = nn.ParameterList(
            [nn.Parameter(torch.zeros(w, 4)) for w in switch_widths])
        # Log-probabilities of counted scheme-2 tables once loaded (not a parameter: a frozen
        # coder's tables, used by encoder-side refinement to count bits as the coder will).
        self.counted_log_probs: Tensor | None = None

    def latent_bits(self, y_soft: Tensor, symbols: Tensor, keep: int,
                    net: ContextNet | None = None) -> Tensor:
        """Bits of the first ``keep`` channels per image; differentiable in ``y_soft``.

        The value is the exact code length under the current tables; the
        encoder's gradient flows through a soft assignment of ``y_soft`` to
        the centres (straight-through), the tables' through the log-softmax.
        With a frozen context ``net`` (scheme 3), the channels it codes are counted under its
        float logits and the others under the counted tables, as the coder codes them; the
        soft assignment then also flows through the network's inputs, so moving a symbol
        is charged for what it does to its neighbours' and later channels' predictions.
        """
        symbols = symbols[:, :keep]
        if self.counted_log_probs is not None:
            ctx = latent_contexts(symbols, self.levels, scheme=2)
            logp = self.counted_log_probs[:keep].to(y_soft.device)
        else:
            ctx = latent_contexts(symbols, self.levels)
            logp = F.log_softmax(self.latent_logits[:keep], dim=-1)  # C K L
        c_idx = torch.arange(keep, device=symbols.device).view(1, keep, 1, 1)
        table = logp[c_idx, ctx]  # B C H W L
        hard = -table.gather(-1, symbols.unsqueeze(-1)).squeeze(-1)
        half = (self.levels - 1) // 2
        centers = torch.arange(-half, half + 1, device=y_soft.device, dtype=y_soft.dtype)
        w = torch.softmax(-((y_soft[:, :keep].unsqueeze(-1) - centers) ** 2), dim=-1)
        soft = -(w * table.detach()).sum(-1)
        nats = hard + soft - soft.detach()
        if net is not None:
            nats = torch.where(net.coded[:keep].view(1, keep, 1, 1) > 0.5,
                               self._network_nats(net, w, symbols), nats)
        return (nats / np.log(2.0)).flatten(1).sum(1)

    def _network_nats(self, net: ContextNet, w: Tensor, symbols: Tensor) -> Tensor:
        """Code lengths (B, C, H, W) in nats under ``net``: the hard one-hot planes with
        ``w``'s soft ones straight through, as the network's input and as the picked symbol."""
        soft = F.pad(w, (0, 1)).movedim(-1, 2)  # B C L+1 H W, no weight on "not yet"
        hard = F.one_hot(symbols.long(), self.levels + 1).movedim(-1, 2).to(w.dtype)
        planes = hard + soft - soft.detach()
        logp = F.log_softmax(net.from_planes(planes), 2)
        return -(planes[:, :, : self.levels] * logp).sum(2)

    def switch_bits(self, level_index: int, switches: Tensor) -> Tensor:
        """Bits per image of one level's switches (B, C, H, W) under its tables."""
        logp = F.log_softmax(self.switch_logits[level_index], dim=-1)  # C 4
        c_idx = torch.arange(switches.shape[1], device=switches.device).view(1, -1, 1, 1)
        bits = -logp[c_idx, switches] / np.log(2.0)
        return bits.flatten(1).sum(1)

    @torch.no_grad()
    def load_tables(self, tables: dict[str, np.ndarray]) -> None:
        """Set the logits from a weights file's integer tables (the float logits are not
        shipped), so that this module's bit counts are the coder's ideal code lengths; with
        counted scheme-2 tables (``latent2``), bits are counted under those, as they are coded."""
        def log_probs(freqs: np.ndarray) -> Tensor:
            f = torch.from_numpy(freqs).double()
            return torch.log(f / f.sum(-1, keepdim=True)).float()

        self.latent_logits.copy_(log_probs(tables["latent"]))
        self.counted_log_probs = log_probs(tables["latent2"]) if "latent2" in tables else None
        for i, logits in enumerate(self.switch_logits):
            logits.copy_(log_probs(tables[f"switch{i}"]))

    @torch.no_grad()
    def integer_tables(self) -> dict[str, np.ndarray]:
        """The tables the coder uses, frozen as integers."""
        out = {"latent": quantize_probabilities(
            torch.softmax(self.latent_logits.double(), -1).cpu().numpy())}
        for i, logits in enumerate(self.switch_logits):
            out[f"switch{i}"] = quantize_probabilities(
                torch.softmax(logits.double(), -1).cpu().numpy())
        return out
