"""The container: fields, versions, and corrupted or truncated files."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import photo

from compressnet import bitstream
from compressnet.bitstream import BitstreamError, Header
from compressnet.codec import CodecError, load


def test_pack_unpack_round_trip():
    for h, w in [(1, 1), (128, 129), (16384, 3), (2**21, 2**21)]:
        header = Header(3, b"\x01\x02", 7, h, w)
        data = bitstream.pack(header, b"\x00" * 8)
        parsed, payload = bitstream.unpack(data)
        assert parsed == header and payload == b"\x00" * 8


@pytest.mark.parametrize("data,message", [
    (b"", "empty"),
    (b"PNG\x00\x00\x00\x00\x00\x00\x00", "magic"),
    (b"C", "truncated"),
    (b"CN\x01\x01", "truncated"),
    (b"CN\x0a\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00", "version 10"),
    (b"CN\xff\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00", "version 255"),
])
def test_bad_headers(data, message):
    with pytest.raises(BitstreamError, match=message):
        bitstream.unpack(data)


def test_unknown_model_id_is_refused():
    from compressnet.codec import load_for_header

    data = bitstream.pack(Header(200, b"\x00\x00", 1, 8, 8), b"")
    with pytest.raises(CodecError, match="unknown model id 200"):
        load_for_header(data)


def _decode_or_error(codec, data):
    try:
        out = codec.decompress_array(data)
    except (BitstreamError, CodecError):
        return None
    assert out.dtype == np.uint8 and out.ndim == 3  # a valid image when nothing could tell
    return out


def test_every_truncation_fails_cleanly(spn_weights):
    codec = load(str(spn_weights))
    data = codec.compress(photo(48, 64), quality=2)
    start = time.monotonic()
    for n in range(len(data)):
        assert _decode_or_error(codec, data[:n]) is None, f"truncated to {n} bytes decoded"
    assert time.monotonic() - start < 60


def test_random_byte_flips_fail_cleanly_or_decode(tiny_codec):
    data = bytearray(tiny_codec.compress(photo(48, 64), quality=2))
    rng = np.random.default_rng(0)
    for _ in range(60):
        bad = bytearray(data)
        for pos in rng.integers(0, len(bad), rng.integers(1, 4)):
            bad[pos] ^= 1 << int(rng.integers(8))
        _decode_or_error(tiny_codec, bytes(bad))


def test_corrupted_payload_with_fixed_checksum_still_terminates(spn_weights):
    """Even with a recomputed CRC, a garbage payload gives an image or a clean error."""
    codec = load(str(spn_weights))
    header, payload = bitstream.unpack(codec.compress(photo(64, 64), quality=2))
    rng = np.random.default_rng(1)
    for size in (0, 4, len(payload), len(payload) + 4):
        junk = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        _decode_or_error(codec, bitstream.pack(header, junk))
    with pytest.raises(BitstreamError):
        codec.decompress_array(bitstream.pack(header, payload + b"\x01"))


def test_a_payload_must_end_where_its_symbols_do(spn_weights):
    """A short payload with a valid CRC (a 4-byte one, or the file's own less its last word)
    and one with words after the last symbol are refused, not decoded to a wrong image. (One
    extra word is what the range decoder's look-ahead cannot tell from its own last: two are.)"""
    codec = load(str(spn_weights))
    header, payload = bitstream.unpack(codec.compress(photo(64, 64), quality=2))
    assert len(payload) > 8
    for bad in (payload[:4], payload[:-4], payload + b"\x01\x02\x03\x04" * 2):
        with pytest.raises(BitstreamError, match="corrupted payload"):
            codec.decompress_array(bitstream.pack(header, bad))


def test_declared_size_above_the_limit_is_refused(spn_weights):
    codec = load(str(spn_weights))
    header, payload = bitstream.unpack(codec.compress(photo(16, 16), quality=1))
    huge = bitstream.pack(header._replace(height=2**20, width=2**20), payload)
    with pytest.raises(BitstreamError, match="above the limit"):
        codec.decompress_array(huge)
