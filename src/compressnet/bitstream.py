"""The ``.cnet`` container: a 13-to-17-byte header and the range-coded payload.

The full specification, every version included, is docs/format.md.

Layout (format versions 1 to 9)::

    offset  size  field
    0       2     magic b"CN"
    2       1     format version (1 to 9)
    3       1     model id (stable, see compressnet.zoo; 0 = a user's weights file)
    4       2     weights fingerprint (first 2 bytes), so other weights are refused
    6       1     quality (1 = the lowest rate)
    7       1-3   height - 1, unsigned LEB128
    .       1-3   width - 1, unsigned LEB128
    .       4     CRC-32 of every byte before it and of the payload
    .       ...   payload: 32-bit little-endian range-coder words

Versions share this layout and differ in three choices (:data:`VERSIONS`):

- the latent's context tables: the two-neighbour tables learned in training (scheme 1),
  the five-neighbour tables counted after it (scheme 2, :mod:`compressnet.train.fit_entropy`), or
  a network's tables from the rows above and every earlier channel (scheme 3, versions 7,
  8 and 9, :mod:`compressnet.entropy.context_net`);
- the decoder's arithmetic: float32 (versions 1 and 2; pixels can differ by one level between
  CPUs) or exact fixed point (versions 3 to 9; the same pixels on every machine and thread
  count, :mod:`compressnet.models.arithmetic`);
- a colour layer first in the payload (versions 5, 6, 7 and 9): block means of the photo that
  the decoder puts back (:mod:`compressnet.colour_layer`), upsampled bilinearly or, in version 9,
  along the decoded image's edges.

This release writes the version of the richest context the weights carry: 9 (a context
network), 6 (counted tables) or 5, or 8, 4 or 3 without the colour layer; it reads all nine.
The full specification is ``docs/format.md``.

Free of torch: any program can parse a header.
"""

from __future__ import annotations

import zlib
from typing import NamedTuple

MAGIC = b"CN"


class FormatVersion(NamedTuple):
    context_scheme: int  # compressnet.models.context_model.CONTEXT_NEIGHBOURS key
    exact_decoder: bool  # fixed-point decoder arithmetic (portable pixels)
    colour_layer: bool = False  # the payload starts with a colour layer
    guided_colour: bool = False  # its correction follows the decoded image's edges (version 9)


VERSIONS = {1: FormatVersion(1, False), 2: FormatVersion(2, False),
            3: FormatVersion(1, True), 4: FormatVersion(2, True),
            5: FormatVersion(1, True, True), 6: FormatVersion(2, True, True),
            7: FormatVersion(3, True, True), 8: FormatVersion(3, True, False),
            9: FormatVersion(3, True, True, True)}
FORMAT_VERSION = 9  # what the bundled default writes (8 is the same without the colour layer)
SUPPORTED_VERSIONS = tuple(VERSIONS)


def version_for(context_scheme: int, colour_layer: bool = True) -> int:
    """The version this release writes for a latent coded with ``context_scheme``: the newest
    with that context and colour layer (9 over 7: the same payload, edge-aware colour)."""
    return max(v for v, f in VERSIONS.items() if f[:3] == (context_scheme, True, colour_layer))


def describe(version: int) -> str:
    """What a version means, for people: e.g. "counted tables, exact decoder, colour layer"."""
    form = VERSIONS[version]
    tables = {1: "learned tables", 2: "counted tables", 3: "context network"}
    parts = [tables[form.context_scheme],
             "exact decoder" if form.exact_decoder else "float32 decoder"]
    colour = (["edge-aware colour layer"] if form.guided_colour
              else ["colour layer"] if form.colour_layer else [])
    return ", ".join(parts + colour)
MAX_SIDE = 1 << 21  # 3 LEB128 bytes


class BitstreamError(ValueError):
    """A file that is not a valid ``.cnet`` bitstream; the message is meant for users."""


class Header(NamedTuple):
    model_id: int
    fingerprint: bytes  # 2 bytes
    quality: int
    height: int
    width: int
    version: int = FORMAT_VERSION


def _leb128(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_leb128(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(3):
        if pos >= len(data):
            raise BitstreamError("file is truncated (header ends early)")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos
    raise BitstreamError("corrupted header (image size field too long)")


def pack(header: Header, payload: bytes) -> bytes:
    if not (0 <= header.model_id < 256 and 1 <= header.quality < 256):
        raise ValueError("model id and quality must fit in a byte")
    if not (1 <= header.height <= MAX_SIDE and 1 <= header.width <= MAX_SIDE):
        raise ValueError(f"image sides must be between 1 and {MAX_SIDE}")
    if len(header.fingerprint) != 2:
        raise ValueError("fingerprint must be 2 bytes")
    if header.version not in SUPPORTED_VERSIONS:
        raise ValueError(f"cannot write format version {header.version}")
    head = (MAGIC + bytes([header.version, header.model_id]) + header.fingerprint
            + bytes([header.quality]) + _leb128(header.height - 1) + _leb128(header.width - 1))
    crc = zlib.crc32(payload, zlib.crc32(head))
    return head + crc.to_bytes(4, "little") + payload


def unpack(data: bytes) -> tuple[Header, bytes]:
    """Parse and verify a bitstream; raises :class:`BitstreamError` with a clear message."""
    if len(data) == 0:
        raise BitstreamError("file is empty")
    if not MAGIC.startswith(bytes(data[:2])):
        raise BitstreamError("not a CompressNet file (wrong magic bytes)")
    if len(data) < 9:
        raise BitstreamError("file is truncated (header ends early)")
    version = data[2]
    if version not in SUPPORTED_VERSIONS:
        raise BitstreamError(f"format version {version} is not supported by this compressnet "
                             f"(it reads versions {', '.join(map(str, SUPPORTED_VERSIONS))}); "
                             "upgrade compressnet")
    model_id, fingerprint, quality = data[3], bytes(data[4:6]), data[6]
    height, pos = _read_leb128(data, 7)
    width, pos = _read_leb128(data, pos)
    if pos + 4 > len(data):
        raise BitstreamError("file is truncated (header ends early)")
    stored = int.from_bytes(data[pos:pos + 4], "little")
    payload = bytes(data[pos + 4:])
    if zlib.crc32(payload, zlib.crc32(data[:pos])) != stored:
        raise BitstreamError("file is corrupted or truncated (checksum mismatch)")
    if quality == 0:
        raise BitstreamError("corrupted header (quality 0)")
    return Header(model_id, fingerprint, quality, height + 1, width + 1, version), payload
