"""The codec: image <-> ``.cnet`` bytes, tying model, entropy coder and bitstream together."""

from __future__ import annotations

import contextlib
import hashlib
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from compressnet import bitstream, colour_layer, compatibility, rate_control, zoo
from compressnet.compatibility import CodecError
from compressnet.entropy import coder
from compressnet.entropy.context_net import ExactContextNet
from compressnet.entropy.latent_coder import LatentCoder, latent_coder
from compressnet.image import (
    MAX_PIXELS,
    ImageError,
    ImageLike,
    as_rgb_array,
    pad_to_multiple,
    to_tensor,
    to_uint8,
)
from compressnet.models.arithmetic import Exact
from compressnet.models.autoencoder import DOWNSAMPLING
from compressnet.models.io import LoadedModel, load_weights
from compressnet.models.realism import RealismWeights, blend, check_realism, load_realism_decoder
from compressnet.models.refine import refine_latent
from compressnet.models.tiling import TILE, decode_tiles, encode_tiled, tile_count

_THREADS_LOCK = threading.RLock()


@contextlib.contextmanager
def single_threaded():
    """Run a float32 network on one thread: PyTorch's CPU kernels may sum in another order with
    more threads, and a last-bit difference can flip a rounded latent symbol, pixel or predicted
    switch. The encoder runs so (a file must not depend on the caller's thread count), and so
    does the float32 decoder of format versions 1 and 2; versions 3 to 8 decode exactly on any
    number of threads (:mod:`compressnet.models.arithmetic`)."""
    with _THREADS_LOCK:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)


class EncodeResult(NamedTuple):
    data: bytes
    quality: int
    height: int
    width: int
    estimated_bits: float  # ideal code length of the payload under the integer tables
    fixed_length_bpp: float  # the paper's bound: sent symbols * log2(L) / pixels
    colour_block: int | None = None  # the colour layer's block size in pixels (None: no layer)

    @property
    def bpp(self) -> float:
        return len(self.data) * 8 / (self.height * self.width)


COLOUR_STEP = colour_layer.DEFAULT_STEP  # quantiser step of the layer's block means
# Refinement differentiates the whole decoder at once (no tiles): measured with sae-spn-lite on
# kodim01, 1.15 GB peak for 393,216 pixels. Above 4 MP (about 11 GiB) it is refused.
REFINE_BYTES_PER_PIXEL = 2900
REFINE_MAX_PIXELS = 4_000_000


class Analysis(NamedTuple):
    height: int
    width: int
    pixels: np.ndarray  # (H, W, 3) uint8, for the colour layer
    symbols: np.ndarray  # (C, h, w) of all latent channels
    switches: list[np.ndarray]  # SWWAE's sent switches, else empty
    x: torch.Tensor  # the padded input, for refinement
    y: torch.Tensor  # the encoder's continuous latent, where refinement starts
    given: dict[int, torch.Tensor] | None  # the sent switches as the decoder takes them


class Codec:
    """A loaded model ready to compress and decompress. Build one with :func:`load`."""

    def __init__(self, loaded: LoadedModel, model_id: int, name: str) -> None:
        self.model = loaded.model
        self.cfg = loaded.model.cfg
        self.tables = loaded.tables
        # The richest latent model the weights carry sets the format of new files: 9 with a
        # context network, 6 with counted tables, else 5 (8, 4 and 3 without the colour layer);
        # docs/format.md and compressnet.compatibility say which files they read.
        self.context_net = ExactContextNet(loaded.context_net) if loaded.context_net else None
        scheme = compatibility.richest_scheme("latent2" in loaded.tables, self.context_net is not None)
        self.format_version = bitstream.version_for(scheme)
        self.fingerprint = loaded.fingerprint[:2]  # the one written into new files
        self.weights_fingerprint = loaded.fingerprint  # what a realism decoder is tied to
        self._fingerprints = compatibility.fingerprints_by_version(loaded.scheme_fingerprints, scheme)
        # each context scheme the weights can code (and so decode) with, built once
        self._latent_coders = {s: latent_coder(s, self.tables.get("latent2" if s >= 2 else "latent"),
                                               self.context_net) for s in range(1, scheme + 1)}
        self._exact: Exact | None = None
        self.writes_colour_layer = True  # encode(colour=None) follows it: formats 5/6, else 3/4
        self.tile = TILE  # latent pixels a side of the tiles large images are coded in
        self.model_id = model_id
        self.name = name
        self.metadata = loaded.metadata
        self.weights_path = loaded.path  # the file it was loaded from (bundled or --model PATH)
        self.realism: RealismWeights | None = None  # a realism decoder for these weights' files
        self._blended: tuple[float, torch.nn.Module, Exact] | None = None  # the last realism built
        self._lpips_alex: torch.nn.Module | None = None  # refinement for the realism decoder

    def attach_realism(self, path: str | Path) -> None:
        """Decode with the realism decoder in ``path`` when asked (``realism`` > 0); refused if
        it was trained behind other weights than these."""
        try:
            weights = load_realism_decoder(path)
        except FileNotFoundError as exc:
            raise CodecError(str(exc)) from None
        if weights.base_fingerprint != self.weights_fingerprint:
            raise CodecError(f"{path}: realism decoder of other weights (fingerprint "
                             f"{weights.base_fingerprint.hex()}) than {self.name} "
                             f"({self.weights_fingerprint.hex()})")
        self.realism = weights
        self.realism_digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
        self._blended = None

    @property
    def default_realism(self) -> float:
        """What ``decompress`` uses unless told: the realism decoder's file names it (0 without
        one)."""
        return float(self.realism.metadata.get("default_realism", 0)) if self.realism else 0.0

    def _realism_decoder(self, realism: float) -> tuple[torch.nn.Module, Exact]:
        """The decoder blended at ``realism`` and its exact arithmetic (the last one is kept:
        building the exact weights takes a moment)."""
        if self._blended is None or self._blended[0] != realism:
            # normal tensors even when a decode (inference mode) builds it: refinement's search
            # runs autograd through the same cached decoder
            with torch.inference_mode(False), torch.no_grad():
                decoder = blend(self.model.decoder, self.realism, realism)
                self._blended = (realism, decoder, Exact(decoder))
        return self._blended[1], self._blended[2]

    @property
    def qualities(self) -> range:
        return range(1, len(self.cfg.qualities) + 1)

    def channels_sent(self, quality: int) -> int:
        if quality not in self.qualities:
            raise CodecError(f"quality {quality} is out of range for {self.name} "
                             f"(1 to {len(self.cfg.qualities)})")
        return self.cfg.qualities[quality - 1]

    def _switch_shapes(self, hp: int, wp: int) -> list[tuple[int, int, int]]:
        if not self.cfg.transmits_switches:
            return []
        return [(self.cfg.enc_widths[lv], hp * DOWNSAMPLING >> (lv + 1), wp * DOWNSAMPLING >> (lv + 1))
                for lv in self.cfg.switch_levels]

    def _switch_tables(self) -> list[np.ndarray]:
        return [self.tables[f"switch{i}"] for i, _ in enumerate(self._switch_shapes(1, 1))]

    def colour_block(self, quality: int) -> int:
        """The colour layer's block size at ``quality``: finer as more latent channels are
        sent (:func:`compressnet.colour_layer.block_for_channels`: 64, 48, 48, 32, 24 and 16 px
        at sae-spn-lite's qualities 1 to 6)."""
        return colour_layer.block_for_channels(self.channels_sent(quality), self.cfg.latent_channels)

    def fixed_length_bpp(self, quality: int, height: int, width: int) -> float:
        hp, wp = math.ceil(height / DOWNSAMPLING), math.ceil(width / DOWNSAMPLING)
        bits = self.channels_sent(quality) * hp * wp * math.log2(self.cfg.levels)
        bits += sum(2 * c * h * w for c, h, w in self._switch_shapes(hp, wp))
        return bits / (height * width)

    def analyse(self, image: ImageLike, refine: int = 0,
                on_tile: Callable[[int, int], object] | None = None) -> Analysis:
        """Run the encoder once: symbols of all latent channels (a quality sends a prefix).
        Refuses, before the encoder runs, an image too large for ``refine`` steps."""
        arr = as_rgb_array(image)
        h, w = arr.shape[:2]
        if h * w > MAX_PIXELS:
            raise ImageError(f"{w}x{h} is too large (limit {MAX_PIXELS:,} pixels)")
        if refine and h * w > REFINE_MAX_PIXELS:
            raise CodecError(f"--refine searches the whole {w}x{h} image at once (about "
                             f"{h * w * REFINE_BYTES_PER_PIXEL / 2**30:.0f} GiB of memory); it takes "
                             f"images of up to {REFINE_MAX_PIXELS:,} pixels: compress this one without it")
        x = pad_to_multiple(to_tensor(arr), DOWNSAMPLING)
        y, given = self._encode(x, on_tile)
        with torch.no_grad():
            _, symbols = self.model.quantizer(y)
        switches = [s[0].numpy() for s in given.values()] if given else []
        return Analysis(h, w, arr, symbols[0].numpy(), switches, x, y, given)

    def _encode(self, x: torch.Tensor, on_tile: Callable[[int, int], object] | None = None
                ) -> tuple[torch.Tensor, dict[int, torch.Tensor] | None]:
        """The encoder's continuous latent of the padded image ``x`` and the switches it sends
        (SWWAE; else None), in tiles when the image is larger than one
        (:mod:`compressnet.models.tiling`)."""
        sent = self.cfg.switch_levels if self.cfg.transmits_switches else ()
        workers = torch.get_num_threads()  # a tile per thread, each tile on one (the same latent)
        with single_threaded(), torch.no_grad():
            y, given = encode_tiled(self.model, x, sent, self.tile, on_tile, workers)
        return y, given or None

    def _colour_layer(self, pixels: np.ndarray, quality: int, colour: bool | None,
                      block: int | None = None) -> colour_layer.ColourLayer | None:
        """The layer a new file at ``quality`` carries (in blocks of ``block`` pixels, by
        default :meth:`colour_block`), or None for formats without one."""
        if not bitstream.VERSIONS[self.version_written(colour)].colour_layer:
            return None
        return colour_layer.analyse(pixels, block or self.colour_block(quality), COLOUR_STEP)

    def refine(self, analysis: Analysis, quality: int, steps: int, colour: bool | None = None,
               on_step: Callable[[], object] | None = None, block: int | None = None,
               realism: float = 0.0) -> Analysis:
        """The latent sent at ``quality``, searched for per image for ``steps`` steps
        (:mod:`compressnet.models.refine`) and scored after the colour layer's correction:
        slower, a better image in a file no larger than the encoder's own. ``realism`` > 0:
        searched for the decoder blended at ``realism``, under the realism decoder's loss (the
        file still decodes either way)."""
        a = analysis
        realism = self.validate_realism(realism)
        decoder, perceptual = None, None
        if realism:
            decoder = self._realism_decoder(realism)[0]
            perceptual = self._refine_perceptual()
        layer = self._colour_layer(a.pixels, quality, colour, block)
        correct = colour_layer.differentiable_correction(layer, a.height, a.width) if layer else None
        budget = len(self.pack(a, quality, colour, block).data)
        net = self._latent_coder(self.version_written(colour)).network
        keep = self.channels_sent(quality)

        def fits(symbols: torch.Tensor) -> bool:
            return len(self.pack(a._replace(symbols=symbols[0].numpy()), quality, colour, block).data) \
                <= budget

        # On every thread the caller allows (1.7x faster on 2 cores than on one): unlike the
        # encoder's one pass, a search of many steps is worth the threads. Its file may then
        # differ with the thread count (none did on this project's machine); it decodes
        # bit-exactly whatever the threads, like every file.
        symbols = refine_latent(self.model, a.x, a.y, keep, steps, a.given, (a.height, a.width),
                                correct, fits, on_step, net, decoder=decoder, perceptual=perceptual)
        return a._replace(symbols=symbols[0].numpy())

    def _refine_perceptual(self) -> torch.nn.Module:
        """LPIPS-Alex, the realism decoder's perceptual loss, built once per codec."""
        if self._lpips_alex is None:
            from compressnet.perceptual import LPIPS  # its weights load only when asked for

            self._lpips_alex = LPIPS("alex")
        return self._lpips_alex

    def _check_refine(self, refine: int, refine_realism: float = 0.0) -> None:
        if refine < 0:
            raise CodecError(f"refine takes a number of steps (0 or more), not {refine}")
        if refine_realism and not refine:
            raise CodecError("refine_realism steers refinement's search: give refine steps too")
        self.validate_realism(refine_realism)

    def _latent_coder(self, version: int) -> LatentCoder:
        """How format ``version`` codes the latent."""
        return self._latent_coders[bitstream.VERSIONS[version].context_scheme]

    def version_written(self, colour: bool | None = None) -> int:
        """The format version of new files: :attr:`format_version`, or its version without
        the colour layer when ``colour`` (default :attr:`writes_colour_layer`) is off."""
        colour = self.writes_colour_layer if colour is None else colour
        return bitstream.version_for(bitstream.VERSIONS[self.format_version].context_scheme, colour)

    def pack(self, analysis: Analysis, quality: int, colour: bool | None = None,
             block: int | None = None) -> EncodeResult:
        keep, version = self.channels_sent(quality), self.version_written(colour)
        latent = self._latent_coder(version)
        sym, switches, switch_tables = analysis.symbols[:keep], analysis.switches, self._switch_tables()
        layer = self._colour_layer(analysis.pixels, quality, colour, block)
        freqs = latent.prefix_frequencies(analysis.symbols, keep)
        payload = coder.encode(sym, latent, switches, switch_tables, colour=layer, freqs=freqs)
        est = latent.bits(sym, freqs) + coder.switch_bits(switches, switch_tables)
        if layer is not None:
            est += colour_layer.code_length(layer)
        h, w = analysis.height, analysis.width
        header = bitstream.Header(self.model_id, self.fingerprint, quality, h, w, version)
        return EncodeResult(bitstream.pack(header, payload), quality, h, w, est,
                            self.fixed_length_bpp(quality, h, w), layer.block if layer else None)

    @property
    def default_quality(self) -> int:
        """The middle of the model's ladder (about 0.05 bpp for the bundled lite models)."""
        return (len(self.cfg.qualities) + 1) // 2

    def encode(self, image: ImageLike, quality: int | None = None, refine: int = 0,
               colour: bool | None = None, on_step: Callable[[], object] | None = None,
               on_tile: Callable[[int, int], object] | None = None,
               refine_realism: float = 0.0) -> EncodeResult:
        """Compress one image at ``quality`` (default: :attr:`default_quality`), searching
        ``refine`` steps for a better latent (``on_step`` is called after each; for the decoder
        at ``refine_realism`` when above 0); also reports the estimated and fixed-length rates;
        ``on_tile(done, total)`` after each tile of the encoder network. ``colour=False``
        leaves out the colour layer (format 3 or 4; default: :attr:`writes_colour_layer`)."""
        quality = quality or self.default_quality
        self.channels_sent(quality)  # a bad quality or step count fails before the network runs
        self._check_refine(refine, refine_realism)
        analysis = self.analyse(image, refine, on_tile)
        return self.pack(self.refine(analysis, quality, refine, colour, on_step,
                                     realism=refine_realism) if refine else analysis,
                         quality, colour)

    def compress(self, image: ImageLike, quality: int | None = None,
                 target_bpp: float | None = None, refine: int = 0, colour: bool | None = None,
                 refine_realism: float = 0.0) -> bytes:
        """``.cnet`` bytes of ``image``; with ``target_bpp``, the highest quality that fits."""
        if target_bpp is not None:
            return self.encode_to_target(image, target_bpp, refine, colour,
                                         refine_realism=refine_realism).data
        return self.encode(image, quality, refine, colour, refine_realism=refine_realism).data

    def encode_to_target(self, image: ImageLike, target_bpp: float, refine: int = 0,
                         colour: bool | None = None, on_step: Callable[[], object] | None = None,
                         on_tile: Callable[[int, int], object] | None = None,
                         refine_realism: float = 0.0) -> EncodeResult:
        """The highest quality whose file fits ``target_bpp``, the rest of the budget spent on a
        finer colour layer (:func:`compressnet.rate_control.encode_to_target`); ``refine`` and
        ``refine_realism`` as in :meth:`encode`."""
        self._check_refine(refine, refine_realism)
        return rate_control.encode_to_target(self, self.analyse(image, refine, on_tile), target_bpp,
                                             refine, colour, on_step, refine_realism)

    def check_header(self, header: bitstream.Header) -> None:
        """Refuse a file that these weights did not write, saying which weights did
        (:func:`compressnet.compatibility.check_header`)."""
        compatibility.check_header(header, self.model_id, self.name, self._fingerprints, self.qualities)

    @torch.inference_mode()
    def decompress_array(self, data: bytes, on_tile: Callable[[int, int], object] | None = None,
                         realism: float = 0.0) -> np.ndarray:
        """Decoded (H, W, 3) uint8 pixels of a ``.cnet`` bitstream. ``on_tile(done, total)``
        is called after each tile of the decoder network (a progress bar's hook). ``realism``
        from 0 (the faithful decoder) to 1 (the realism decoder, sharper and less faithful;
        :mod:`compressnet.models.realism`)."""
        realism = self.validate_realism(realism)
        header, payload = bitstream.unpack(data)
        self.check_header(header)
        compatibility.check_declared_size(header)
        keep = self.cfg.qualities[header.quality - 1]
        hp, wp = math.ceil(header.height / DOWNSAMPLING), math.ceil(header.width / DOWNSAMPLING)
        shapes = self._switch_shapes(hp, wp)
        form = bitstream.VERSIONS[header.version]
        try:
            decoded = coder.decode(payload, self._latent_coder(header.version), (keep, hp, wp),
                                   shapes, self._switch_tables(),
                                   colour_size=(header.height, header.width) if form.colour_layer else None)
        except coder.CodingError as exc:
            raise bitstream.BitstreamError(f"corrupted payload: {exc}") from None
        y_hat = torch.zeros(1, self.cfg.latent_channels, hp, wp)
        y_hat[0, :keep] = torch.from_numpy(decoded.latent).float() - (self.cfg.levels - 1) // 2
        given = {lv: torch.from_numpy(s)[None] for lv, s in zip(self.cfg.switch_levels, decoded.switches)}
        pixels = self._decode(y_hat, given or None, form.exact_decoder, header.height, header.width,
                              on_tile, realism)
        return colour_layer.apply(pixels, decoded.colour, form.guided_colour) if decoded.colour else pixels

    def tile_count(self, height: int, width: int) -> int:
        """How many tiles the encoder and decoder networks of a ``height`` x ``width`` image run
        in."""
        return tile_count(height, width, self.tile)

    def _decode(self, y_hat: torch.Tensor, given: dict[int, torch.Tensor] | None, exact: bool,
                height: int, width: int, on_tile: Callable[[int, int], object] | None = None,
                realism: float = 0.0) -> np.ndarray:
        """(height, width, 3) uint8 pixels of the decoder network in the arithmetic a file's
        version names: exact fixed point (any thread count), tile by tile with the same
        result (:mod:`compressnet.models.tiling`), or, for versions 1 and 2, float32 on one
        thread, whole. ``realism`` > 0 runs the blended decoder in the same arithmetic."""
        decoder = self.model.decoder
        if realism:
            decoder, arithmetic = self._realism_decoder(realism)
        if not exact:
            with single_threaded():
                pixels = to_uint8(decoder(y_hat, given).x_hat[..., :height, :width])
            if on_tile is not None:
                on_tile(1, 1)
            return pixels
        if not realism:
            if self._exact is None:
                self._exact = Exact(self.model.decoder)
            arithmetic = self._exact
        pixels = np.empty((height, width, 3), dtype=np.uint8)
        total = self.tile_count(height, width)
        for done, ((rows, cols), x_hat) in enumerate(
                decode_tiles(self.model, y_hat, given, arithmetic, self.tile, decoder), 1):
            rows, cols = slice(rows.start, min(rows.stop, height)), slice(cols.start, min(cols.stop, width))
            pixels[rows, cols] = to_uint8(x_hat[..., : rows.stop - rows.start, : cols.stop - cols.start])
            if on_tile is not None:
                on_tile(done, total)
        return pixels

    def decompress(self, data: bytes, realism: float = 0.0) -> Image.Image:
        return Image.fromarray(self.decompress_array(data, realism=realism))

    def validate_realism(self, realism: float) -> float:
        try:
            realism = check_realism(realism)
        except (TypeError, ValueError) as exc:
            raise CodecError(str(exc)) from None
        if realism and self.realism is None:
            raise CodecError(f"{self.name} has no realism decoder: decode with realism 0"
                             + (" or pass one with --realism-decoder PATH"
                                if self.model_id == zoo.CUSTOM_MODEL_ID else ""))
        return realism

    @torch.inference_mode()
    def reconstruct(self, image: ImageLike, quality: int | None = None, colour: bool | None = None
                    ) -> np.ndarray:
        """The model's own forward pass and colour layer (no entropy coding): what decoding
        must reproduce."""
        quality = quality or self.default_quality
        arr = as_rgb_array(image)
        h, w = arr.shape[:2]
        keep = self.channels_sent(quality)
        y, given = self._encode(pad_to_multiple(to_tensor(arr), DOWNSAMPLING))
        y_hat, _ = self.model.quantizer(y)
        y_hat[:, keep:] = 0
        form = bitstream.VERSIONS[self.version_written(colour)]
        pixels = self._decode(y_hat, given, form.exact_decoder, h, w)
        layer = self._colour_layer(arr, quality, colour)
        return colour_layer.apply(pixels, layer, form.guided_colour) if layer else pixels


def load(name: str = zoo.DEFAULT_MODEL, preset: str | None = None) -> Codec:
    """A codec for a bundled model (``sae-spn``, ``sae-spn-lite``, ...) or a weights file path."""
    if name.endswith(".safetensors") or Path(name).is_file():
        try:
            loaded = load_weights(name)
        except FileNotFoundError as exc:
            raise CodecError(str(exc)) from None
        return Codec(loaded, zoo.CUSTOM_MODEL_ID, Path(name).stem)
    try:
        entry = zoo.lookup(name, preset)
    except KeyError as exc:
        raise CodecError(exc.args[0]) from None
    if not zoo.is_bundled(entry):
        raise CodecError(f"model {entry.name} has no bundled weights in this release "
                         f"(bundled: {', '.join(e.name for e in zoo.REGISTRY if zoo.is_bundled(e))})")
    codec = Codec(load_weights(zoo.bundled_path(entry)), entry.model_id, entry.name)
    if zoo.realism_path(entry).is_file():
        codec.attach_realism(zoo.realism_path(entry))
    return codec


def load_for_header(data: bytes, model_path: str | None = None) -> Codec:
    """The codec that wrote ``data``: the bundled model its header names, or ``model_path``."""
    header, _ = bitstream.unpack(data)
    if model_path:
        return load(model_path)
    if header.model_id == zoo.CUSTOM_MODEL_ID:
        raise CodecError("file was written with a user's weights file: pass it with --model PATH")
    try:
        entry = zoo.by_id(header.model_id)
    except KeyError:
        raise CodecError(f"unknown model id {header.model_id} (written by a newer compressnet?)") from None
    return load(entry.name)


def preview_array(data: bytes) -> np.ndarray:
    """The coarse colours a ``.cnet`` file starts with, one pixel per colour block ((gh, gw, 3)
    uint8; 16 to 64 pixels a block by quality), read without running a network or loading
    weights: a placeholder a viewer can show at once, where decoding a 12-megapixel photo takes
    about a minute on 2 cores. Files without a colour layer (format versions 1 to 4 and 8) and
    corrupted ones raise :class:`~compressnet.bitstream.BitstreamError`."""
    header, payload = bitstream.unpack(data)
    if not bitstream.VERSIONS[header.version].colour_layer:
        raise bitstream.BitstreamError(
            f"format version {header.version} ({bitstream.describe(header.version)}) has no "
            "colour layer to preview")
    compatibility.check_declared_size(header)
    try:
        layer = coder.decode_colour_layer(payload, (header.height, header.width))
    except coder.CodingError as exc:
        raise bitstream.BitstreamError(f"corrupted payload: {exc}") from None
    return colour_layer.block_colours(layer)
