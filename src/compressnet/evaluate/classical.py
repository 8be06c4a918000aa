"""Classical codecs through well-kept libraries, and a search for matched file sizes.

JPEG, WebP, JPEG 2000 and AVIF go through Pillow; HEVC intra through pillow-heif
(libheif with x265), the stand-in for BPG, which is packaged nowhere here; JPEG XL
through pillow-jxl-plugin.  Each codec exposes one integer setting whose file size
grows with it, so :func:`largest_under` can bisect it to the largest file that is not
above a byte budget.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from PIL import Image

from compressnet.image import register_plugins

BPG_NOTE = ("HEVC intra is x265 through pillow-heif (libheif), the engine inside BPG; "
            "BPG itself is not packaged for this platform")


@dataclass(frozen=True)
class ClassicalCodec:
    name: str
    lowest: int  # setting with the smallest file
    highest: int
    _encode: Callable[[Image.Image, int], bytes]
    note: str = ""
    shrink: int = 1  # code a copy 1/shrink the size (Lanczos), enlarged again on decoding

    def encode(self, pixels: np.ndarray, setting: int) -> bytes:
        image = Image.fromarray(pixels)
        if self.shrink > 1:
            h, w = pixels.shape[:2]
            image = image.resize(shrunk_size(w, h, self.shrink), Image.LANCZOS)
        return self._encode(image, setting)

    def memoized(self) -> ClassicalCodec:
        """A copy that remembers each setting's file: for several searches on ONE image."""
        memo: dict[int, bytes] = {}

        def encode(image: Image.Image, setting: int) -> bytes:
            if setting not in memo:
                memo[setting] = self._encode(image, setting)
            return memo[setting]

        return ClassicalCodec(self.name, self.lowest, self.highest, encode, self.note, self.shrink)

    def decode(self, data: bytes, size: tuple[int, int] | None = None) -> np.ndarray:
        """Decoded (H, W, 3) pixels; a shrunken copy is enlarged (Lanczos) to ``size``
        (width, height), the photo's."""
        register_plugins()
        with Image.open(io.BytesIO(data)) as im:
            image = im.convert("RGB")
            if size is not None and image.size != tuple(size):
                image = image.resize(tuple(size), Image.LANCZOS)
            return np.array(image)


def shrunk_size(width: int, height: int, shrink: int) -> tuple[int, int]:
    return max(1, round(width / shrink)), max(1, round(height / shrink))


def _save(fmt: str, **fixed) -> Callable[[Image.Image, int], bytes]:
    def encode(image: Image.Image, setting: int) -> bytes:
        register_plugins()
        buf = io.BytesIO()
        image.save(buf, format=fmt, **fixed, **_setting_kwargs(fmt, setting))
        return buf.getvalue()

    return encode


def _setting_kwargs(fmt: str, setting: int) -> dict:
    if fmt == "JPEG2000":  # setting = target in milli-bpp; OpenJPEG takes a ratio to 24-bit raw
        return {"quality_mode": "rates", "quality_layers": [24000.0 / setting]}
    return {"quality": setting}


CODECS: dict[str, ClassicalCodec] = {
    "jpeg": ClassicalCodec("jpeg", 1, 95, _save("JPEG", optimize=True)),
    "webp": ClassicalCodec("webp", 0, 100, _save("WEBP", method=6)),
    "jpeg2000": ClassicalCodec("jpeg2000", 1, 24000, _save("JPEG2000")),
    "avif": ClassicalCodec("avif", 0, 100, _save("AVIF", speed=4)),
    "hevc": ClassicalCodec("hevc", 0, 100, _save("HEIF"), note=BPG_NOTE),
    "jxl": ClassicalCodec("jxl", 1, 99, _save("JXL", effort=7)),  # libjxl refuses lossy q=100
}
# What users do when a codec cannot get small enough: shrink the photo, code it, enlarge it
# again. Bytes are counted against the full-size photo's pixels.
SHRINK_NOTE = "coded at 1/{0} of each side (Lanczos down and up); bpp over the full-size pixels"
for _base in ("hevc", "avif"):
    for _shrink in (2, 3):
        _c = CODECS[_base]
        CODECS[f"{_base}@1/{_shrink}"] = ClassicalCodec(
            f"{_base}@1/{_shrink}", _c.lowest, _c.highest, _c._encode,
            " ".join(filter(None, [_c.note, SHRINK_NOTE.format(_shrink)])), _shrink)


def available(name: str) -> str | None:
    """None if the codec can encode here, else why not."""
    try:
        CODECS[name].encode(np.zeros((16, 16, 3), np.uint8), CODECS[name].highest)
    except KeyError:
        return f"unknown codec {name!r} (known: {', '.join(CODECS)})"
    except Exception as exc:  # a missing plugin surfaces as KeyError/OSError from Pillow
        return f"{name} is not available here ({exc}); pip install pillow-heif pillow-jxl-plugin"
    return None


class MatchedEncoding(NamedTuple):
    setting: int
    data: bytes
    fits: bool  # False: even the lowest setting is above the budget (data is that file)


def largest_under(codec: ClassicalCodec, pixels: np.ndarray, max_bytes: int) -> MatchedEncoding:
    """Bisect the setting to the largest file of at most ``max_bytes``."""
    lo, hi = codec.lowest, codec.highest
    smallest = codec.encode(pixels, lo)
    if len(smallest) > max_bytes:
        return MatchedEncoding(lo, smallest, False)
    best = MatchedEncoding(lo, smallest, True)
    top = codec.encode(pixels, hi)
    if len(top) <= max_bytes:
        return MatchedEncoding(hi, top, True)
    while hi - lo > 1:  # invariant: size(lo) <= budget < size(hi)
        mid = (lo + hi) // 2
        data = codec.encode(pixels, mid)
        if len(data) <= max_bytes:
            lo = mid
            if len(data) >= len(best.data):
                best = MatchedEncoding(mid, data, True)
        else:
            hi = mid
    return best
