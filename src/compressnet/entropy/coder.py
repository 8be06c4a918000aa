"""Range coding of a ``.cnet`` payload with constriction: the colour layer, the latent, the
switches, in that order.

The tables are integer frequencies summing to ``2**TABLE_PRECISION``; they reach
constriction as the exactly representable floats ``freq / 2**16`` with
``perfect=False``, so encoder and decoder quantise them identically on every
machine.  Format versions 5, 6, 7 and 9 start the stream with the colour layer
(:mod:`compressnet.colour_layer`).  Latent symbols are coded channel by channel, row by
row, left to right, with the frequencies of the format's
:class:`~compressnet.entropy.latent_coder.LatentCoder` (context tables or a context network).
"""

from __future__ import annotations

from typing import NamedTuple

import constriction
import numpy as np

from compressnet import colour_layer
from compressnet.entropy.latent_coder import FAMILY, SCALE, LatentCoder, as_probabilities


class CodingError(ValueError):
    """The payload does not decode (corrupted or truncated)."""


class Decoded(NamedTuple):
    latent: np.ndarray  # (k, h, w) symbols
    switches: list[np.ndarray]  # SWWAE's sent switches, else empty
    colour: colour_layer.ColourLayer | None  # format versions 5, 6, 7 and 9


def switch_bits(switches: list[np.ndarray], tables: list[np.ndarray]) -> float:
    total = 0.0
    for s, t in zip(switches, tables):
        c = np.arange(s.shape[0])[:, None, None]
        total += float(-np.log2(t[c, s] / SCALE).sum())
    return total


def encode(symbols: np.ndarray, latent: LatentCoder,
           switches: list[np.ndarray] = (), switch_tables: list[np.ndarray] = (),
           colour: colour_layer.ColourLayer | None = None, freqs: np.ndarray | None = None) -> bytes:
    """Code the optional colour layer, the latent (k, h, w) and optional switches (each
    (C_l, h_l, w_l)) into bytes; ``freqs``: the latent's frequencies, if known."""
    latent.check(symbols.shape[0])
    enc = constriction.stream.queue.RangeEncoder()
    if colour is not None:
        colour_layer.encode_into(enc, colour)
    freqs = latent.frequencies(symbols) if freqs is None else freqs
    probs = as_probabilities(freqs.reshape(-1, freqs.shape[-1]))
    enc.encode(symbols.reshape(-1).astype(np.int32), FAMILY, probs)
    for s, t in zip(switches, switch_tables):
        c = np.arange(s.shape[0])[:, None, None]
        probs = as_probabilities(np.broadcast_to(t[c], s.shape + (4,)).reshape(-1, 4))
        enc.encode(s.reshape(-1).astype(np.int32), FAMILY, probs)
    return enc.get_compressed().astype("<u4").tobytes()


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


def decode(payload: bytes, latent: LatentCoder, shape: tuple[int, int, int],
           switch_shapes: list[tuple[int, int, int]] = (),
           switch_tables: list[np.ndarray] = (),
           colour_size: tuple[int, int] | None = None) -> Decoded:
    """Inverse of :func:`encode`; ``shape`` is (k, h, w) of the latent, ``colour_size`` the
    image's (height, width) when the stream starts with a colour layer."""
    latent.check(shape[0])
    try:
        dec = _range_decoder(payload)
        colour = colour_layer.decode_from(dec, *colour_size) if colour_size else None
        out = np.empty(shape, dtype=np.int64)
        for ch in range(shape[0]):
            latent.decode_channel(dec, out, ch)
        switches = []
        for (sc, sh, sw), t in zip(switch_shapes, switch_tables):
            level = np.empty((sc, sh, sw), dtype=np.int64)
            for ch in range(sc):
                probs = as_probabilities(np.broadcast_to(t[ch], (sh * sw, 4)))
                level[ch] = dec.decode(FAMILY, probs).reshape(sh, sw)
            switches.append(level)
        # the symbols must end where the payload does: a truncated payload (or one with data
        # after the last symbol) still yields symbols, which would decode to a wrong image.
        # (The decoder reads one word ahead, so a single extra word passes; two do not.)
        exhausted = dec.maybe_exhausted()
    except (ValueError, RuntimeError, AssertionError) as exc:
        raise CodingError(f"payload does not decode ({exc})") from None
    if not exhausted:
        raise CodingError("payload length does not match its symbols (truncated or padded)")
    if int(out.max(initial=0)) >= latent.levels or int(out.min(initial=0)) < 0:
        raise CodingError("payload decodes to symbols out of range")
    return Decoded(out, switches, colour)
