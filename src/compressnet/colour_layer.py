"""The colour layer: a coarse grid of the photo's block colours, sent beside the latent.

Why: the generative decoder gets low frequencies wrong, colour most of all (on kodim23 the
green background decodes grey-brown and the red parrot orange), and such errors are cheap to
send and expensive to learn. Measured on the 24 Kodak images with the bundled sae-spn-lite at
quality 3: block means every 48 pixels cost 0.0035 bpp and raise PSNR by 0.7 dB, where the two
more latent channels of quality 4 cost 0.014 bpp for 0.13 dB.

What is sent (format versions 5, 6, 7 and 9, first in the range coder's stream):

- the block size ``b`` and quantiser step ``s``;
- per ``b x b`` block, the mean of each RGB channel divided by ``s`` and rounded (``q``);
- coded as the reversible colour transform of JPEG 2000 (``(R + 2G + B) >> 2``, ``B - G``,
  ``R - G``), each component predicted by the median edge detector of JPEG-LS and the residuals
  coded with a two-sided geometric table whose ratio the encoder picks per component.

The decoder measures the same block means on its own output, upsamples the difference
``q * s - mean`` bilinearly (grid nodes at block centres) and adds it. Every step after the
network is integer arithmetic, so the pixels are the same on every machine.

Format version 9 upsamples the difference along the decoded image's edges instead
(:func:`apply` with ``guided``): each of the four block nodes around a pixel weighs in by its
bilinear weight times how alike the pixel's decoded colour is to that block's decoded mean
(``K / (K + d^2)``, ``d^2`` the squared RGB distance in levels), so a block's shift stays on
its own side of an edge instead of spilling across it (the green of kodim03's cap onto the
orange one). The same files decode 0.03-0.04 dB and 0.0003-0.0007 MS-SSIM better at every
quality on the 24 Kodak images with sae-spn-lite (its card against 0.7.3's), 0.25 dB on kodim03
at quality 1 (``python benchmarks/colour_layer_guided.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import constriction
import numpy as np

from compressnet.models.context_model import TABLE_PRECISION

if TYPE_CHECKING:
    import torch

BLOCK_UNIT = 8  # block sizes are multiples of 8 pixels: 8 .. 256
MAX_BLOCK_CODE = 32
MAX_STEP = 16
DEFAULT_STEP = 8  # quantiser step of the block means that files carry (8-bit levels)
# (largest share of latent channels sent, block size): see block_for_channels
_BLOCKS_BY_SHARE = ((0.2, 64), (0.4, 48), (0.55, 32), (0.75, 24), (1.0, 16))
# Ratios num / 256 of the two-sided geometric residual tables, one picked per component.
RATIOS = (16, 48, 80, 112, 144, 168, 192, 208, 220, 230, 238, 244, 248, 251, 253, 255)
_FRACTION_BITS = 8  # fixed-point fraction of the per-block correction
_BAND_ROWS = 256  # rows corrected at a time (bounded scratch memory on huge images)
GUIDE_K = 400  # format 9's colour similarity K / (K + d^2): half weight at 20 levels apart
_FAMILY = constriction.stream.model.Categorical(perfect=False)
_SCALE = float(1 << TABLE_PRECISION)


class ColourLayer(NamedTuple):
    block: int  # block side in pixels
    step: int  # quantiser step of the block means, in 8-bit levels
    means: np.ndarray  # (gh, gw, 3) int64: round(block mean / step)


def grid_shape(height: int, width: int, block: int) -> tuple[int, int]:
    return -(-height // block), -(-width // block)


def _block_counts(height: int, width: int, block: int) -> np.ndarray:
    """Pixels per block (gh, gw, 1): edge blocks of a side that is no multiple have fewer."""
    gh, gw = grid_shape(height, width, block)
    rows = np.minimum(block, height - block * np.arange(gh))
    cols = np.minimum(block, width - block * np.arange(gw))
    return (rows[:, None] * cols[None, :])[..., None].astype(np.int64)


def _block_sums(arr: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-block sums (gh, gw, 3) and pixel counts (gh, gw, 1) of an (H, W, 3) image."""
    h, w, _ = arr.shape
    gh, gw = grid_shape(h, w, block)
    padded = np.zeros((gh * block, gw * block, 3), dtype=np.int64)
    padded[:h, :w] = arr
    return padded.reshape(gh, block, gw, block, 3).sum((1, 3)), _block_counts(h, w, block)


def max_mean(step: int) -> int:
    """The largest quantised mean: round(255 / step)."""
    return (2 * 255 + step) // (2 * step)


def analyse(arr: np.ndarray, block: int, step: int) -> ColourLayer:
    """The layer of an (H, W, 3) uint8 photo: rounded block means over ``step``."""
    if not (1 <= block // BLOCK_UNIT <= MAX_BLOCK_CODE and block % BLOCK_UNIT == 0):
        raise ValueError(f"block size must be a multiple of {BLOCK_UNIT} up to "
                         f"{BLOCK_UNIT * MAX_BLOCK_CODE}, not {block}")
    if not 1 <= step <= MAX_STEP:
        raise ValueError(f"step must be 1 to {MAX_STEP}, not {step}")
    sums, n = _block_sums(arr, block)
    return ColourLayer(block, step, (2 * sums + n * step) // (2 * n * step))


def apply(decoded: np.ndarray, layer: ColourLayer, guided: bool = False) -> np.ndarray:
    """``decoded`` (H, W, 3) uint8 with its block means moved to the layer's, the difference
    upsampled bilinearly, or with ``guided`` (format 9) along the decoded image's edges;
    integer arithmetic throughout."""
    h, w, _ = decoded.shape
    b = layer.block
    sums, n = _block_sums(decoded, b)
    target = layer.means * layer.step * n - sums  # the correction times n, exact
    grid = (2 * (target << _FRACTION_BITS) + n) // (2 * n)  # correction in 1/256 levels
    row_idx, row_w = _interpolation(h, b, grid.shape[0])
    col_idx, col_w = _interpolation(w, b, grid.shape[1])
    if guided:
        return _apply_guided(decoded, grid, (2 * sums + n) // (2 * n), row_idx, row_w, col_idx, col_w, b)
    denominator = (2 * b) ** 2 << _FRACTION_BITS
    out = np.empty_like(decoded)
    for r0 in range(0, h, _BAND_ROWS):
        r1 = min(h, r0 + _BAND_ROWS)
        i, f = row_idx[r0:r1], row_w[r0:r1, None, None]
        rows = (2 * b - f) * grid[i[:, 0]] + f * grid[i[:, 1]]  # (rows, gw, 3)
        g = col_w[None, :, None]
        corr = (2 * b - g) * rows[:, col_idx[:, 0]] + g * rows[:, col_idx[:, 1]]  # (rows, W, 3)
        corr = (2 * corr + denominator) // (2 * denominator)  # rounded to whole levels
        out[r0:r1] = np.clip(decoded[r0:r1].astype(np.int64) + corr, 0, 255)
    return out


def _apply_guided(decoded: np.ndarray, grid: np.ndarray, means: np.ndarray, row_idx: np.ndarray,
                  row_w: np.ndarray, col_idx: np.ndarray, col_w: np.ndarray, b: int) -> np.ndarray:
    """Joint bilateral upsampling of the correction ``grid`` (1/256 levels) guided by the
    decoded image and its block ``means``; every weight and sum an exact int64 (below 2^53:
    bilinear weights 2^18, similarity 2^16, corrections 2^16, four terms)."""
    h, w, _ = decoded.shape
    out = np.empty_like(decoded)
    for r0 in range(0, h, _BAND_ROWS):
        r1 = min(h, r0 + _BAND_ROWS)
        img = decoded[r0:r1].astype(np.int64)
        num = np.zeros(img.shape, np.int64)
        den = np.zeros((*img.shape[:2], 1), np.int64)
        for a, wr in ((0, 2 * b - row_w[r0:r1]), (1, row_w[r0:r1])):
            rows = row_idx[r0:r1, a]
            for c, wc in ((0, 2 * b - col_w), (1, col_w)):
                cols = col_idx[:, c]
                d2 = ((img - means[rows][:, cols]) ** 2).sum(-1, keepdims=True)
                weight = wr[:, None, None] * wc[None, :, None] * ((GUIDE_K << 16) // (GUIDE_K + d2))
                num += weight * grid[rows][:, cols]
                den += weight
        denominator = den << _FRACTION_BITS  # never 0: a node of positive weight each way
        corr = (2 * num + denominator) // (2 * denominator)
        out[r0:r1] = np.clip(img + corr, 0, 255)
    return out


def block_colours(layer: ColourLayer) -> np.ndarray:
    """The layer as a small image, one pixel per block ((gh, gw, 3) uint8): the photo's coarse
    colours, a placeholder to show while the networks decode."""
    return np.clip(layer.means * layer.step, 0, 255).astype(np.uint8)


def block_for_channels(sent: int, latent_channels: int) -> int:
    """The colour layer's block size (the one policy: files, training and refinement use it)
    when ``sent`` of ``latent_channels`` latent channels are sent: finer as more are sent.
    Chosen on Kodak with sae-spn-lite (every pairing of its 6 channel counts with blocks of 64,
    48, 32, 24 and 16 pixels): each quality then beats the one below
    on both PSNR and MS-SSIM, and the rates stay evenly spread (0.023 to 0.12 bpp). Training
    with the layer in the loop pairs channels and blocks the same way."""
    share = sent / latent_channels
    for limit, block in _BLOCKS_BY_SHARE:
        if share <= limit:
            return block
    return _BLOCKS_BY_SHARE[-1][1]


class SoftCorrection:
    """A float, differentiable twin of :func:`apply` for (B, 3, H, W) tensors in [0, 1], at
    one image size and block size: what training and encoder-side refinement optimise
    through (the decoder uses the integer one)."""

    def __init__(self, height: int, width: int, block: int, device: torch.device | None = None
                 ) -> None:
        import torch

        self.height, self.width, self.block = height, width, block
        gh, gw = grid_shape(height, width, block)
        self.counts = torch.from_numpy(_block_counts(height, width, block)[..., 0]).float().to(device)
        self.rows = self._upsampling(height, gh).to(device)
        self.cols = self._upsampling(width, gw).to(device)

    def _upsampling(self, size: int, nodes: int) -> torch.Tensor:
        import torch

        b = self.block
        idx, wt = _interpolation(size, b, nodes)
        m = np.zeros((size, nodes))
        np.add.at(m, (np.arange(size), idx[:, 0]), (2 * b - wt) / (2 * b))
        np.add.at(m, (np.arange(size), idx[:, 1]), wt / (2 * b))
        return torch.from_numpy(m).float()

    def block_means(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, gh, gw) means over the blocks, edge blocks over their own pixels only."""
        import torch.nn.functional as F

        gh, gw = self.counts.shape
        b = self.block
        padded = F.pad(x, (0, gw * b - self.width, 0, gh * b - self.height))
        return F.avg_pool2d(padded, b, divisor_override=1) / self.counts

    def sent_means(self, x: torch.Tensor, step: int = DEFAULT_STEP) -> torch.Tensor:
        """The means a file would carry for the photo ``x``, in [0, 1] units (as :func:`analyse`
        rounds them; ties may round the other way)."""
        return (self.block_means(x) * (255 / step)).round() * (step / 255)

    def __call__(self, x_hat: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``x_hat`` with its block means moved to ``target`` (B or 1, 3, gh, gw)."""
        return x_hat + self.rows @ (target - self.block_means(x_hat)) @ self.cols.T


class Corrections:
    """Training's view of the layer: :class:`SoftCorrection` per (image size, block size), the
    block size the one a file sending ``sent`` of ``latent_channels`` channels carries. Called
    on a decoded batch and its photos, it returns the decoded batch as such a file would show it
    (the blocks' means moved to the photos' sent ones)."""

    def __init__(self, latent_channels: int, device: torch.device | None = None) -> None:
        self.latent_channels, self.device = latent_channels, device
        self.cache: dict[tuple[int, int, int], SoftCorrection] = {}

    def __call__(self, x_hat: torch.Tensor, x: torch.Tensor, sent: int) -> torch.Tensor:
        block = block_for_channels(sent, self.latent_channels)
        key = (*x.shape[-2:], block)
        if key not in self.cache:
            self.cache[key] = SoftCorrection(*x.shape[-2:], block, self.device)
        soft = self.cache[key]
        return soft(x_hat, soft.sent_means(x))


def differentiable_correction(layer: ColourLayer, height: int, width: int
                              ) -> Callable[[torch.Tensor], torch.Tensor]:
    """:class:`SoftCorrection` towards ``layer``'s means, as one function of the output."""
    import torch

    soft = SoftCorrection(height, width, layer.block)
    target = torch.from_numpy(layer.means * layer.step).float().permute(2, 0, 1) / 255
    return lambda x_hat: soft(x_hat, target)


def _interpolation(size: int, block: int, nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the two grid nodes around it (size, 2) and the second's weight out of
    ``2 * block``; nodes sit at block centres, and pixels beyond the outer ones take them."""
    num = 2 * np.arange(size, dtype=np.int64) + 1 - block  # position * 2 * block
    first = np.clip(num // (2 * block), 0, nodes - 1)
    weight = np.where((num < 0) | (first >= nodes - 1), 0, num - first * 2 * block)
    return np.stack([first, np.minimum(first + 1, nodes - 1)], 1), weight


# --- coding -------------------------------------------------------------------------------

def _components(means: np.ndarray) -> list[np.ndarray]:
    """The reversible colour transform of JPEG 2000: luma-like, B - G, R - G."""
    r, g, b = (means[..., c] for c in range(3))
    return [(r + 2 * g + b) >> 2, b - g, r - g]


def _from_components(comps: list[np.ndarray]) -> np.ndarray:
    y, u, v = comps
    g = y - ((u + v) >> 2)
    return np.stack([v + g, g, u + g], -1)


def _residuals(comp: np.ndarray, start: int) -> np.ndarray:
    """Prediction residuals of a whole component (the encoder knows every value): the median
    edge detector of JPEG-LS from the left, upper and upper-left values; the first row from the
    left, the first column from above, the first value from ``start``."""
    left, above, corner = comp[1:, :-1], comp[:-1, 1:], comp[:-1, :-1]
    hi, lo = np.maximum(left, above), np.minimum(left, above)
    pred = np.empty_like(comp)
    pred[1:, 1:] = np.where(corner >= hi, lo, np.where(corner <= lo, hi, left + above - corner))
    pred[0, 1:] = comp[0, :-1]
    pred[1:, 0] = comp[:-1, 0]
    pred[0, 0] = start
    return comp - pred


def _reconstruct(residuals: np.ndarray, start: int) -> np.ndarray:
    """Inverse of :func:`_residuals`. Each value's prediction needs its left, upper and
    upper-left neighbours, all on earlier anti-diagonals, so the values of one anti-diagonal are
    reconstructed together (a 1000x1000 grid in about 2,000 array steps, not a million)."""
    gh, gw = residuals.shape
    comp = np.zeros((gh, gw), dtype=np.int64)
    for d in range(gh + gw - 1):
        i = np.arange(max(0, d - gw + 1), min(gh, d + 1))
        j = d - i
        left = comp[i, np.maximum(j - 1, 0)]
        above = comp[np.maximum(i - 1, 0), j]
        corner = comp[np.maximum(i - 1, 0), np.maximum(j - 1, 0)]
        hi, lo = np.maximum(left, above), np.minimum(left, above)
        pred = np.where(corner >= hi, lo, np.where(corner <= lo, hi, left + above - corner))
        pred = np.where(i == 0, np.where(j == 0, start, left), np.where(j == 0, above, pred))
        comp[i, j] = residuals[i, j] + pred
    return comp


@functools.cache
def geometric_table(ratio_index: int, radius: int) -> np.ndarray:
    """Integer frequencies (summing to 2**16, each >= 1) of residuals -radius..radius with
    P(r) proportional to (RATIOS[i] / 256)^|r|, from exact integer arithmetic."""
    num, alphabet = RATIOS[ratio_index], 2 * radius + 1
    weights = [num ** abs(r) * 256 ** (radius - abs(r)) for r in range(-radius, radius + 1)]
    total, spare = sum(weights), (1 << TABLE_PRECISION) - alphabet
    freqs = [1 + wt * spare // total for wt in weights]
    freqs[radius] += (1 << TABLE_PRECISION) - sum(freqs)
    table = np.array(freqs, dtype=np.int64)
    table.setflags(write=False)  # shared by every caller through the cache
    return table


def _residual_model(ratio_index: int, radius: int) -> constriction.stream.model.Categorical:
    """One model for every residual of a component: the same code as the per-symbol
    ``_FAMILY`` given this table for each (checked bit for bit), without a (blocks x table)
    array of probabilities, which was 1 GB for a 64-megapixel photo's 8-pixel blocks."""
    return constriction.stream.model.Categorical(geometric_table(ratio_index, radius) / _SCALE,
                                                 perfect=False)


def _radius(step: int) -> int:
    return 2 * max_mean(step)  # chroma residuals span twice the means' range


def _starts(step: int) -> tuple[int, int, int]:
    return (max_mean(step) // 2, 0, 0)


def _bits(residuals: np.ndarray, table: np.ndarray, radius: int) -> float:
    return float(-np.log2(table[residuals.ravel() + radius] / _SCALE).sum())


class _Plan(NamedTuple):
    head: list[int]  # block code, step code, ratio index per component
    residuals: list[np.ndarray]
    bits: float  # ideal code length


_HEAD_SIZES = (MAX_BLOCK_CODE, MAX_STEP) + (len(RATIOS),) * 3


def _plan(layer: ColourLayer) -> _Plan:
    radius = _radius(layer.step)
    residuals = [_residuals(c, s) for c, s in zip(_components(layer.means), _starts(layer.step))]
    picks = [min(range(len(RATIOS)), key=lambda k: _bits(r, geometric_table(k, radius), radius))
             for r in residuals]
    bits = float(np.log2(_HEAD_SIZES).sum())
    bits += sum(_bits(r, geometric_table(k, radius), radius) for r, k in zip(residuals, picks))
    return _Plan([layer.block // BLOCK_UNIT - 1, layer.step - 1, *picks], residuals, bits)


def code_length(layer: ColourLayer) -> float:
    """Ideal code length in bits of ``layer`` as :func:`encode_into` codes it."""
    return _plan(layer).bits


def encode_into(encoder, layer: ColourLayer) -> None:
    """Append ``layer`` to a constriction range encoder."""
    plan = _plan(layer)
    for value, size in zip(plan.head, _HEAD_SIZES):
        encoder.encode(np.array([value], dtype=np.int32), _FAMILY, np.full((1, size), 1 / size))
    radius = _radius(layer.step)
    for r, k in zip(plan.residuals, plan.head[2:]):
        encoder.encode((r.ravel() + radius).astype(np.int32), _residual_model(k, radius))


def decode_from(decoder, height: int, width: int) -> ColourLayer:
    """Inverse of :func:`encode_into` for an image of ``height`` x ``width``; raises
    ``ValueError`` when the values cannot be a layer (a corrupted stream)."""
    head = [int(decoder.decode(_FAMILY, np.full((1, size), 1 / size))[0]) for size in _HEAD_SIZES]
    block, step, picks = (head[0] + 1) * BLOCK_UNIT, head[1] + 1, head[2:]
    gh, gw = grid_shape(height, width, block)
    radius = _radius(step)
    comps = []
    for k, start in zip(picks, _starts(step)):
        residuals = decoder.decode(_residual_model(k, radius), gh * gw).astype(np.int64)
        residuals = residuals.reshape(gh, gw) - radius
        comps.append(_reconstruct(residuals, start))
    means = _from_components(comps)
    if means.min() < 0 or means.max() > max_mean(step):
        raise ValueError("colour layer out of range")
    return ColourLayer(block, step, means)
