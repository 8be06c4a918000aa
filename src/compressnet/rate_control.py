"""Rate control (``--target-bpp``): the best file of a photo that fits a number of bits per pixel.

The encoder runs once; the qualities are tried from the highest down on its latent (a quality
sends a prefix of channels, whose tables do not depend on what follows). What the quality that
fits leaves under the target goes to a finer colour layer while one fits: the ladder's steps
are coarse (0.017 to 0.027 bpp apart near 0.1 bpp for sae-spn-lite), so the highest quality that
fits left 13-14% of a Kodak target unspent; spent so, the 0.1 bpp target's mean went from
0.0866 bpp, 24.36 dB, MS-SSIM 0.8704 to 0.0928, 24.45, 0.8727
(``python benchmarks/target_rate_kodak.py``). The block size travels in the file, so every
reader of the format decodes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from compressnet import bitstream, colour_layer
from compressnet.compatibility import CodecError

if TYPE_CHECKING:
    from compressnet.codec import Analysis, Codec, EncodeResult


def encode_to_target(codec: Codec, analysis: Analysis, target_bpp: float, refine: int = 0,
                     colour: bool | None = None, on_step: Callable[[], object] | None = None,
                     refine_realism: float = 0.0) -> EncodeResult:
    """The highest quality whose file of ``analysis`` fits ``target_bpp``, with the finest
    colour layer that still fits. With ``refine``, the latent search then runs at that quality
    and block size (its file is never larger), for the decoder at ``refine_realism``."""
    result = None
    for quality in reversed(codec.qualities):
        result = codec.pack(analysis, quality, colour)
        if result.bpp > target_bpp:
            continue
        result, block = finer_colour(codec, analysis, result, target_bpp, colour)
        if refine:
            return codec.pack(codec.refine(analysis, quality, refine, colour, on_step, block,
                                           refine_realism),
                              quality, colour, block)
        return result
    raise CodecError(f"even the lowest quality needs {result.bpp:.4f} bpp, above the target "
                     f"{target_bpp:g} bpp")


def finer_colour(codec: Codec, analysis: Analysis, result: EncodeResult, target_bpp: float,
                 colour: bool | None = None) -> tuple[EncodeResult, int | None]:
    """``result``'s quality with the finest colour layer whose file still fits ``target_bpp``,
    and that layer's block size (None: the quality's own). Blocks shrink by 8 pixels a try."""
    block = None
    if not bitstream.VERSIONS[codec.version_written(colour)].colour_layer:
        return result, block
    for finer in range(codec.colour_block(result.quality) - colour_layer.BLOCK_UNIT,
                       colour_layer.BLOCK_UNIT - 1, -colour_layer.BLOCK_UNIT):
        trial = codec.pack(analysis, result.quality, colour, finer)
        if trial.bpp > target_bpp:
            break
        result, block = trial, finer
    return result, block
