"""The latent's probability model as the coder sees it, one object per context scheme.

A format version names a context scheme (:data:`compressnet.bitstream.VERSIONS`); the codec
builds its :class:`LatentCoder` once with :func:`latent_coder` and everything else (encoding,
decoding, the bits a file will take) asks that object, never the scheme number:

- :class:`ContextTables` (schemes 1 and 2): one integer table per channel and context, the
  context being the symbol's causal neighbours
  (:data:`~compressnet.models.context_model.CONTEXT_NEIGHBOURS`);
- :class:`ContextNetwork` (scheme 3): the exact context network's tables
  (:class:`~compressnet.entropy.context_net.ExactContextNet`) in the channels it codes, the
  counted scheme-2 tables in the others.

A channel's frequencies depend on it and the channels before it only, which is what lets a
file send a prefix of channels, and lets :meth:`LatentCoder.prefix_frequencies` reuse a
latent's tables across the qualities that ``--target-bpp`` tries.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import constriction
import numpy as np

from compressnet.entropy.context_net import ExactContextNet
from compressnet.models.context_model import CONTEXT_NEIGHBOURS, TABLE_PRECISION, latent_contexts_np
from compressnet.models.context_net import ContextNet

SCALE = float(1 << TABLE_PRECISION)
FAMILY = constriction.stream.model.Categorical(perfect=False)


def as_probabilities(freqs: np.ndarray) -> np.ndarray:
    """Integer frequencies -> the exactly representable floats constriction quantises back."""
    return np.ascontiguousarray(freqs, dtype=np.float64) / SCALE


class LatentCoder(ABC):
    """Integer frequencies of latent symbols (k, h, w), their ideal bits, and the decoding of
    one channel in an order that makes each symbol's frequencies known before it."""

    levels: int
    network: ContextNet | None = None  # the float network behind the tables, if any (refinement)

    def __init__(self) -> None:
        self._last: tuple[bytes, np.ndarray] | None = None

    @abstractmethod
    def check(self, channels: int) -> None:
        """Raise ValueError if the first ``channels`` channels cannot be coded."""

    @abstractmethod
    def frequencies(self, symbols: np.ndarray) -> np.ndarray:
        """The integer table (k, h, w, L) that codes each symbol of ``symbols`` (k, h, w)."""

    @abstractmethod
    def decode_channel(self, dec: constriction.stream.queue.RangeDecoder, out: np.ndarray,
                       ch: int) -> None:
        """Decode channel ``ch`` into ``out`` (k, h, w), whose earlier channels are known."""

    def prefix_frequencies(self, symbols: np.ndarray, keep: int) -> np.ndarray:
        """:meth:`frequencies` of the first ``keep`` channels of ``symbols`` (C, h, w), reusing
        the last call's when they cover them (a prefix's tables do not depend on what follows)."""
        key = symbols.tobytes() + repr(symbols.shape).encode()
        last = self._last
        if last is None or last[0] != key or len(last[1]) < keep:
            last = (key, self.frequencies(symbols[:keep]))
            self._last = last
        return last[1][:keep]

    def bits(self, symbols: np.ndarray, freqs: np.ndarray | None = None) -> float:
        """Ideal code length in bits of ``symbols`` (k, h, w) (``freqs``: their
        :meth:`frequencies`, if known)."""
        freqs = self.frequencies(symbols) if freqs is None else freqs
        picked = np.take_along_axis(freqs, symbols[..., None].astype(np.int64), -1)
        return float(-np.log2(picked / SCALE).sum())


class ContextTables(LatentCoder):
    """Schemes 1 and 2: ``tables`` (C, contexts, L), one row per context of a channel."""

    def __init__(self, tables: np.ndarray, scheme: int) -> None:
        super().__init__()
        if scheme not in CONTEXT_NEIGHBOURS:
            raise ValueError(f"no context tables for scheme {scheme}")
        self.tables, self.scheme = tables, scheme
        self.levels = tables.shape[-1]

    def check(self, channels: int) -> None:
        if channels > len(self.tables):
            raise ValueError(f"{channels} channels, but tables for {len(self.tables)}")

    def frequencies(self, symbols: np.ndarray) -> np.ndarray:
        contexts = latent_contexts_np(symbols, self.levels, self.scheme)
        return self.tables[np.arange(symbols.shape[0])[:, None, None], contexts]

    def decode_channel(self, dec, out: np.ndarray, ch: int) -> None:
        probs = as_probabilities(self.tables[ch])
        for i in range(out.shape[1]):
            self._decode_row(dec, probs, out, ch, i)

    def _decode_row(self, dec, probs: np.ndarray, out: np.ndarray, ch: int, i: int) -> None:
        """Row ``i`` of channel ``ch``. Digits of neighbours in earlier rows or channels are
        known for the whole row at once (one vectorised call when there are no others, as in
        scheme 1); those in this row (scheme 2 looks left) are added symbol by symbol."""
        levels, w = self.levels, out.shape[2]
        base = np.zeros(w, dtype=np.int64)
        same_row: list[tuple[int, int]] = []  # (column offset, place value)
        for n, (dc, di, dj) in enumerate(reversed(CONTEXT_NEIGHBOURS[self.scheme])):
            place = (levels + 1) ** n
            if dc == 0 and di == 0:
                same_row.append((dj, place))
                continue
            row = out[ch - dc, i - di] if ch >= dc and i >= di else np.full(w, levels)
            base += place * (np.concatenate([np.full(dj, levels), row[:w - dj]]) if dj else row)
        if not same_row:
            out[ch, i] = dec.decode(FAMILY, probs[base])
            return
        padded = [levels] * max(dj for dj, _ in same_row) + [0] * w  # decoded, left-padded
        offset = len(padded) - w
        for j, ctx in enumerate(base.tolist()):
            for dj, place in same_row:
                ctx += place * padded[offset + j - dj]
            padded[offset + j] = int(dec.decode(FAMILY, probs[ctx:ctx + 1])[0])
        out[ch, i] = padded[offset:]


class ContextNetwork(LatentCoder):
    """Scheme 3: the network's tables where it codes a channel (a row at a time: a row's
    tables depend on the rows above and the earlier channels), ``counted`` tables elsewhere."""

    def __init__(self, net: ExactContextNet, counted: ContextTables | None) -> None:
        super().__init__()
        self.net, self.counted = net, counted
        self.levels = net.levels
        self.network = net.net

    def check(self, channels: int) -> None:
        if self.counted is None and not all(self.net.codes(c) for c in range(channels)):
            raise ValueError("the context network leaves channels to counted tables, which are missing")

    def frequencies(self, symbols: np.ndarray) -> np.ndarray:
        self.check(symbols.shape[0])
        freqs = self.net.all_frequencies(symbols)
        left = [c for c in range(symbols.shape[0]) if not self.net.codes(c)]
        if left:
            freqs[left] = self.counted.frequencies(symbols)[left]
        return freqs

    def decode_channel(self, dec, out: np.ndarray, ch: int) -> None:
        if not self.net.codes(ch):
            self.counted.decode_channel(dec, out, ch)
            return
        earlier = self.net.earlier(out, ch)
        for i in range(out.shape[1]):
            out[ch, i] = dec.decode(FAMILY, as_probabilities(self.net.row_frequencies(out, ch, i, earlier)))


def latent_coder(scheme: int, tables: np.ndarray | None, net: ExactContextNet | None = None
                 ) -> LatentCoder:
    """The coder of context ``scheme``: ``tables`` are the learned ones (scheme 1) or the
    counted ones (scheme 2, and scheme 3's channels that its ``net`` leaves to them)."""
    if scheme == 3:
        if net is None:
            raise ValueError("context scheme 3 needs the weights' context network")
        return ContextNetwork(net, None if tables is None else ContextTables(tables, 2))
    if tables is None:
        raise ValueError(f"context scheme {scheme} needs its tables")
    return ContextTables(tables, scheme)
