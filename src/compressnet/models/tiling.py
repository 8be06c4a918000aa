"""Large images in tiles: bounded memory, the same pixels.

Every layer of these networks is local (3x3 and 7x7 convolutions, a per-pixel channel norm,
2x2 max pooling, pixel shuffle, switch unpooling), so a tile of the output depends only on a
window of the input around it, the tile grown by a *halo*. Whole, a 12-megapixel photo took
9 GB to decode and 4 GB to encode (the full-resolution activations, about 0.7 and 0.35 kB a
pixel); in tiles, about what one Kodak image takes.

- Decoding: the trunk (at the latent's resolution, 1/256 of the pixels) runs once on the whole
  latent; the four upsampling levels and the conv to RGB run per tile, on the trunk's output
  grown by :func:`decoder_halo`. In the exact arithmetic (format 3 and later) every value is
  the same integer number of grid steps however it is computed, so the tiles' pixels are
  bit-identical to the whole image's: a file decodes to the same image tiled or not, with any
  tile size. Float32 decoding (versions 1 and 2) stays whole, as it always ran.
- Encoding (float32): the encoder runs per tile on the image grown by :func:`encoder_halo`.
  The same arithmetic in other shapes may round a last bit differently, so a tiled latent may
  differ from the whole image's in a rare symbol; images that fit one tile (Kodak's) are
  encoded whole, as before. The tiling is fixed by the image size, never the machine.

Tiles are square, :data:`TILE` latent pixels (768 pixels) a side; the last row and column of
tiles take what is left.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import torch
from torch import Tensor, nn

from compressnet.models.arithmetic import Float32
from compressnet.models.autoencoder import DOWNSAMPLING, CompressNetModel, EncoderOutput
from compressnet.models.config import ModelConfig

TILE = 48  # latent pixels a side: 768 image pixels, about 0.75 GB for the lite decoder's tile
LEVEL_SCALE = {level: 1 << (3 - level) for level in range(4)}  # level's input res / latent res


class Tile(NamedTuple):
    """One tile, in latent pixels: ``core`` is what it produces, ``window`` what it reads (the
    core grown by the halo, clipped to the latent)."""

    core: tuple[slice, slice]
    window: tuple[slice, slice]

    def inner(self, scale: int = 1) -> tuple[slice, slice]:
        """The core's place in the window's output at ``scale`` output pixels a latent pixel."""
        return tuple(slice((c.start - w.start) * scale, (c.stop - w.start) * scale)
                     for c, w in zip(self.core, self.window))  # type: ignore[return-value]


def tiles(height: int, width: int, halo: int, tile: int = TILE) -> list[Tile]:
    """The tiles covering a ``height`` x ``width`` latent, row by row."""
    if tile < 1 or halo < 0:
        raise ValueError(f"tiles need a side of at least 1 and a halo of at least 0, not {tile}, {halo}")

    def spans(n: int) -> list[tuple[slice, slice]]:
        return [(slice(a, min(n, a + tile)), slice(max(0, a - halo), min(n, a + tile + halo)))
                for a in range(0, n, tile)]

    return [Tile((rc, cc), (rw, cw)) for rc, rw in spans(height) for cc, cw in spans(width)]


def tile_count(height: int, width: int, tile: int = TILE) -> int:
    """How many tiles the networks of a ``height`` x ``width``-pixel image run in."""
    return len(tiles(math.ceil(height / DOWNSAMPLING), math.ceil(width / DOWNSAMPLING), 0, tile))


def decoder_halo(cfg: ModelConfig) -> int:
    """Latent pixels on each side of a tile that its pixels depend on, through the upsampling
    levels and the conv to RGB (a 7x7: 3 pixels), from the finest level back to the trunk: at
    each level's output its 3x3 ``out`` conv and ``up_blocks`` (two 3x3 each), then half as
    many pixels at its input, where the 3x3 shuffle conv and switch predictor read."""
    radius = 3
    for level in range(4):
        radius += 1 + 2 * cfg.up_blocks[level]
        radius = math.ceil(radius / 2) + 1
    return radius


def encoder_halo() -> int:
    """Latent pixels on each side of a tile that its latent depends on: the two 3x3 convs at the
    latent's resolution, then per level back to the image its 2x2 pool (twice the pixels, plus
    one for the window) and its conv (3x3; the first is a 7x7). Every architecture and preset
    shares these kernels (widths differ, reach does not), so no config is needed."""
    radius = 2
    for level in (3, 2, 1, 0):
        radius = 2 * radius + 1 + (3 if level == 0 else 1)
    return math.ceil(radius / DOWNSAMPLING)


def decode_tiles(model: CompressNetModel, y_hat: Tensor, switches: dict[int, Tensor] | None,
                 ar: Float32, tile: int = TILE, decoder: nn.Module | None = None
                 ) -> Iterator[tuple[tuple[slice, slice], Tensor]]:
    """The decoded image of latent ``y_hat`` (1, C, h, w), tile by tile: pairs of the tile's
    place in the (padded) image and its pixels (1, 3, rows, cols), as the whole decoder would
    compute them (bit-identical in the exact arithmetic). ``switches``: the sent ones (SWWAE).
    ``decoder``: another decoder of the model's shape (a realism decoder) instead of its own."""
    decoder = decoder or model.decoder
    trunk = decoder.trunk(y_hat, ar)
    halo = decoder_halo(model.cfg)
    for t in tiles(*trunk.shape[-2:], halo, tile):
        given = {lv: s[..., _at(t.window[0], LEVEL_SCALE[lv]), _at(t.window[1], LEVEL_SCALE[lv])]
                 for lv, s in (switches or {}).items()}
        x_hat = decoder.upsample(trunk[..., t.window[0], t.window[1]], given or None, ar).x_hat
        rows, cols = t.inner(DOWNSAMPLING)
        yield (_at(t.core[0], DOWNSAMPLING), _at(t.core[1], DOWNSAMPLING)), x_hat[..., rows, cols]


def encode_tiled(model: CompressNetModel, x: Tensor, switch_levels: tuple[int, ...] = (),
                 tile: int = TILE, on_tile: Callable[[int, int], object] | None = None,
                 workers: int = 1) -> tuple[Tensor, dict[int, Tensor]]:
    """The encoder's latent ``y`` (1, C, h, w) of a padded image ``x`` (1, 3, 16h, 16w), tile
    by tile (one tile when the image fits in one), and its switches at ``switch_levels``.
    ``on_tile(done, total)`` is called after each tile, in the calling thread.

    ``workers`` tiles are encoded at once, each in its own thread: run inside
    :func:`compressnet.codec.single_threaded`, every tile's float32 sums still happen on one
    thread, in one order, so the latent is the same for any number of workers.
    """
    h, w = x.shape[-2] // DOWNSAMPLING, x.shape[-1] // DOWNSAMPLING
    y = x.new_empty(1, model.cfg.latent_channels, h, w)
    switches = {lv: torch.empty(1, model.cfg.enc_widths[lv], h * LEVEL_SCALE[lv], w * LEVEL_SCALE[lv],
                                dtype=torch.int64) for lv in switch_levels}
    parts = tiles(h, w, encoder_halo(), tile)

    def encode(t: Tile) -> EncoderOutput:
        with torch.no_grad():  # grad mode is per thread
            return model.encoder(x[..., _at(t.window[0], DOWNSAMPLING), _at(t.window[1], DOWNSAMPLING)] - 0.5)

    workers = max(1, min(workers, len(parts)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(parts), workers):  # at most ``workers`` outputs in memory
            batch = parts[start:start + workers]
            for done, (t, enc) in enumerate(zip(batch, pool.map(encode, batch)), start + 1):
                rows, cols = t.inner()
                y[..., t.core[0], t.core[1]] = enc.y[..., rows, cols]
                for lv, s in switches.items():
                    rows, cols = t.inner(LEVEL_SCALE[lv])
                    s[..., _at(t.core[0], LEVEL_SCALE[lv]), _at(t.core[1], LEVEL_SCALE[lv])] = \
                        enc.switches[lv][..., rows, cols]
                if on_tile is not None:
                    on_tile(done, len(parts))
    return y, switches


def _at(part: slice, scale: int) -> slice:
    return slice(part.start * scale, part.stop * scale)
