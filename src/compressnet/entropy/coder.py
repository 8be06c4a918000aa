"""Range coding of latent symbols and switches with constriction, from integer tables.

The tables are integer frequencies summing to ``2**TABLE_PRECISION``; they reach
constriction as the exactly representable floats ``freq / 2**16`` with
``perfect=False``, so encoder and decoder quantise them identically on every
machine.  Format versions 5 and 6 start the stream with the colour layer
(:mod:`compressnet.colour_layer`).  Symbols are coded channel by channel, row by
row, left to right.  In context scheme 1 each row is one vectorised call, because its contexts (the row
above, the previous channel) are already known to the decoder; scheme 2 also
looks left, so its decoder finishes each symbol before the next one's context.  Scheme 3
(:mod:`compressnet.entropy.context_net`) computes a row's tables with a network from the rows
above and the earlier channels, and decodes a row at a time, in the channels the network codes
(the others as scheme 2).
"""

from __future__ import annotations

from typing import NamedTuple

import constriction
import numpy as np

from compressnet import colour_layer
from compressnet.entropy.context_model import (
    CONTEXT_NEIGHBOURS,
    TABLE_PRECISION,
    latent_contexts_np,
)
from compressnet.entropy.context_net import ExactContextNet

_SCALE = float(1 << TABLE_PRECISION)
_FAMILY = constriction.stream.model.Categorical(perfect=False)


class CodingError(ValueError):
    """The payload does not decode (corrupted or truncated)."""


class Decoded(NamedTuple):
    latent: np.ndarray  # (k, h, w) symbols
    switches: list[np.ndarray]  # SWWAE's sent switches, else empty
    colour: colour_layer.ColourLayer | None  # format versions 5 and 6


def _probs(freqs: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(freqs, dtype=np.float64) / _SCALE


def latent_frequencies(symbols: np.ndarray, tables: np.ndarray | None, scheme: int = 1,
                       net: ExactContextNet | None = None) -> np.ndarray:
    """The integer table (k, h, w, L) that codes each symbol of ``symbols`` (k, h, w): from
    the learned or counted ``tables`` (schemes 1 and 2), or in scheme 3 from the context
    ``net`` in the channels it codes and the counted ``tables`` in the others."""
    if scheme == 3 and net is None:
        raise ValueError("context scheme 3 needs the weights' context network")
    counted = latent_contexts_np(symbols, tables.shape[-1], min(scheme, 2)) if tables is not None else None
    freqs = (tables[np.arange(symbols.shape[0])[:, None, None], counted] if tables is not None
             else None)
    if scheme == 3:
        by_net = net.all_frequencies(symbols)
        keep = [c for c in range(symbols.shape[0]) if not net.codes(c)]
        if keep and freqs is None:
            raise ValueError("the context network leaves channels to counted tables, which are missing")
        if keep:
            by_net[keep] = freqs[keep]
        freqs = by_net
    return freqs


def latent_bits(symbols: np.ndarray, tables: np.ndarray | None, scheme: int = 1,
                net: ExactContextNet | None = None, freqs: np.ndarray | None = None) -> float:
    """Ideal code length in bits of ``symbols`` (k, h, w) under ``tables`` or ``net`` (or
    ``freqs``, their :func:`latent_frequencies` computed before)."""
    freqs = latent_frequencies(symbols, tables, scheme, net) if freqs is None else freqs
    picked = np.take_along_axis(freqs, symbols[..., None].astype(np.int64), -1)
    return float(-np.log2(picked / _SCALE).sum())


def switch_bits(switches: list[np.ndarray], tables: list[np.ndarray]) -> float:
    total = 0.0
    for s, t in zip(switches, tables):
        c = np.arange(s.shape[0])[:, None, None]
        total += float(-np.log2(t[c, s] / _SCALE).sum())
    return total


def encode(symbols: np.ndarray, tables: np.ndarray,
           switches: list[np.ndarray] = (), switch_tables: list[np.ndarray] = (),
           scheme: int = 1, colour: colour_layer.ColourLayer | None = None,
           net: ExactContextNet | None = None, freqs: np.ndarray | None = None) -> bytes:
    """Code the optional colour layer, the latent (k, h, w) and optional switches (each
    (C_l, h_l, w_l)) into bytes; ``freqs``: the latent's :func:`latent_frequencies`, if known."""
    enc = constriction.stream.queue.RangeEncoder()
    if colour is not None:
        colour_layer.encode_into(enc, colour)
    freqs = latent_frequencies(symbols, tables, scheme, net) if freqs is None else freqs
    probs = _probs(freqs.reshape(-1, freqs.shape[-1]))
    enc.encode(symbols.reshape(-1).astype(np.int32), _FAMILY, probs)
    for s, t in zip(switches, switch_tables):
        c = np.arange(s.shape[0])[:, None, None]
        probs = _probs(np.broadcast_to(t[c], s.shape + (4,)).reshape(-1, 4))
        enc.encode(s.reshape(-1).astype(np.int32), _FAMILY, probs)
    return enc.get_compressed().astype("<u4").tobytes()


def _decode_row(dec, probs: np.ndarray, out: np.ndarray, ch: int, i: int, scheme: int) -> None:
    """Decode row ``i`` of channel ``ch`` into ``out``, whose earlier symbols are known;
    ``probs`` are the channel's tables as probabilities (contexts, levels)."""
    levels = probs.shape[-1]
    w = out.shape[2]
    # Digits of neighbours in earlier rows or channels are known for the whole row at once;
    # those in this row (dc = di = 0) are added symbol by symbol.
    base = np.zeros(w, dtype=np.int64)
    same_row: list[tuple[int, int]] = []  # (column offset, place value)
    for n, (dc, di, dj) in enumerate(reversed(CONTEXT_NEIGHBOURS[scheme])):
        place = (levels + 1) ** n
        if dc == 0 and di == 0:
            same_row.append((dj, place))
            continue
        row = out[ch - dc, i - di] if ch >= dc and i >= di else np.full(w, levels)
        base += place * (np.concatenate([np.full(dj, levels), row[:w - dj]]) if dj else row)
    if not same_row:
        out[ch, i] = dec.decode(_FAMILY, probs[base])
        return
    padded = [levels] * max(dj for dj, _ in same_row) + [0] * w  # decoded symbols, left-padded
    offset = len(padded) - w
    for j, ctx in enumerate(base.tolist()):
        for dj, place in same_row:
            ctx += place * padded[offset + j - dj]
        padded[offset + j] = int(dec.decode(_FAMILY, probs[ctx:ctx + 1])[0])
    out[ch, i] = padded[offset:]


def _range_decoder(payload: bytes) -> constriction.stream.queue.RangeDecoder:
    if len(payload) % 4:
        raise CodingError("payload length is not a whole number of 32-bit words")
    return constriction.stream.queue.RangeDecoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))


def decode_colour_layer(payload: bytes, size: tuple[int, int]) -> colour_layer.ColourLayer:
    """Only the colour layer that starts a stream (format versions 5 to 7) of an image of
    ``size`` (height, width): no latent, so no tables, network or weights are needed."""
    dec = _range_decoder(payload)
    try:
        return colour_layer.decode_from(dec, *size)
    except (ValueError, RuntimeError, AssertionError) as exc:
        raise CodingError(f"payload does not decode ({exc})") from None


def decode(payload: bytes, tables: np.ndarray, shape: tuple[int, int, int],
           switch_shapes: list[tuple[int, int, int]] = (),
           switch_tables: list[np.ndarray] = (), scheme: int = 1,
           colour_size: tuple[int, int] | None = None,
           net: ExactContextNet | None = None) -> Decoded:
    """Inverse of :func:`encode`; ``shape`` is (k, h, w) of the latent, ``colour_size`` the
    image's (height, width) when the stream starts with a colour layer."""
    if scheme == 3 and net is None:
        raise ValueError("context scheme 3 needs the weights' context network")
    if scheme == 3 and tables is None and not all(net.codes(c) for c in range(shape[0])):
        raise ValueError("the context network leaves channels to counted tables, which are missing")
    levels = net.levels if scheme == 3 else tables.shape[-1]
    k, h, w = shape
    try:
        dec = _range_decoder(payload)
        colour = colour_layer.decode_from(dec, *colour_size) if colour_size else None
        out = np.empty((k, h, w), dtype=np.int64)
        for ch in range(k):
            if scheme == 3 and net.codes(ch):
                earlier = net.earlier(out, ch)
                for i in range(h):
                    out[ch, i] = dec.decode(_FAMILY, _probs(net.row_frequencies(out, ch, i, earlier)))
                continue
            probs = _probs(tables[ch])
            for i in range(h):
                _decode_row(dec, probs, out, ch, i, min(scheme, 2))
        switches = []
        for (sc, sh, sw), t in zip(switch_shapes, switch_tables):
            level = np.empty((sc, sh, sw), dtype=np.int64)
            for ch in range(sc):
                probs = _probs(np.broadcast_to(t[ch], (sh * sw, 4)))
                level[ch] = dec.decode(_FAMILY, probs).reshape(sh, sw)
            switches.append(level)
    except (ValueError, RuntimeError, AssertionError) as exc:
        raise CodingError(f"payload does not decode ({exc})") from None
    if int(out.max(initial=0)) >= levels or int(out.min(initial=0)) < 0:
        raise CodingError("payload decodes to symbols out of range")
    return Decoded(out, switches, colour)
