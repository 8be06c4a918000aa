"""What the web app does with an upload, free of HTTP: compress and compare, or decode."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable

import numpy as np
from PIL import Image

from compressnet import bitstream
from compressnet.codec import Codec, CodecError, load_for_header, preview_array
from compressnet.evaluate import classical
from compressnet.image import ImageError, ImageTooLargeError, decode_image_bytes
from compressnet.metrics import ms_ssim, psnr

COMPARED = ("hevc", "avif", "hevc@1/2", "avif@1/2", "jpeg")


class UploadError(ValueError):
    """A bad upload; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def png_data_uri(pixels: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _scores(original: np.ndarray, decoded: np.ndarray, size: int) -> dict:
    h, w = original.shape[:2]
    score = ms_ssim(original, decoded)
    return {"bytes": size, "bpp": size * 8 / (h * w), "psnr": psnr(original, decoded),
            "ms_ssim": None if np.isnan(score) else score}


def compress_upload(codec: Codec, data: bytes, name: str, quality: int | None, target_bpp: float | None,
                    compare: bool, max_pixels: int, progress: Callable[[float, str], None],
                    refine: int = 0, realism: float | None = None) -> dict:
    """Compress an uploaded image (``refine`` steps of encoder-side search, 0 for none, for
    the decoder it is shown with) and decode it at ``realism`` (None: the model's default);
    with ``compare``, HEVC, AVIF and JPEG (and HEVC and AVIF at half size) at the closest size
    not above CompressNet's file."""
    realism = codec.default_realism if realism is None else realism
    try:
        codec.validate_realism(realism)
    except CodecError as exc:
        raise UploadError(str(exc)) from None
    progress(0.05, "reading the image")
    try:
        pixels = decode_image_bytes(data, name, max_pixels)
    except ImageError as exc:
        status = 413 if isinstance(exc, ImageTooLargeError) else 400
        raise UploadError(str(exc), status) from None
    h, w = pixels.shape[:2]
    progress(0.15, f"compressing with {codec.name}")
    done = 0

    def on_step() -> None:  # the search's steps fill the bar up to decoding
        nonlocal done
        done += 1
        progress(0.15 + 0.3 * done / refine, f"refining the latent: step {done} of {refine}")

    def on_encoder_tile(done: int, total: int) -> None:  # also where the time limit is checked
        progress(0.15, f"compressing with {codec.name}: tile {done} of {total}")

    try:
        steer = dict(on_step=on_step, on_tile=on_encoder_tile, refine_realism=realism if refine else 0.0)
        result = codec.encode_to_target(pixels, target_bpp, refine, **steer) if target_bpp \
            else codec.encode(pixels, quality, refine, **steer)
    except CodecError as exc:
        raise UploadError(str(exc)) from None
    progress(0.45, "decoding")
    decoded = codec.decompress_array(
        result.data, realism=realism,
        on_tile=lambda done, total: progress(0.45, f"decoding: tile {done} of {total}"))
    out = {"name": name, "width": w, "height": h, "model": codec.name, "quality": result.quality,
           "refine": refine, "realism": realism,
           **_scores(pixels, decoded, len(result.data)),
           "cnet": base64.b64encode(result.data).decode(), "decoded": png_data_uri(decoded),
           "original": png_data_uri(pixels), "comparisons": []}
    if compare:
        for i, cname in enumerate(COMPARED):
            progress(0.5 + 0.5 * i / len(COMPARED), f"matching {cname} to {len(result.data)} bytes")
            if classical.available(cname):
                continue
            codec_c = classical.CODECS[cname].memoized()
            match = classical.largest_under(codec_c, pixels, len(result.data))
            decoded_c = codec_c.decode(match.data, size=(w, h))
            out["comparisons"].append({"codec": cname, "fits": match.fits, "setting": match.setting,
                                       **_scores(pixels, decoded_c, len(match.data)),
                                       "image": png_data_uri(decoded_c)})
    return out


def _check_pixels(header: bitstream.Header, max_pixels: int | None) -> None:
    """The server's pixel limit applies to what a file declares too: a 4-kilobyte ``.cnet`` of a
    flat 20-megapixel image would otherwise keep a worker decoding for minutes."""
    if max_pixels is not None and header.width * header.height > max_pixels:
        raise UploadError(f"the file's image is {header.width}x{header.height}, above this server's "
                          f"limit of {max_pixels:,} pixels", 413)


def preview_upload(data: bytes, max_pixels: int | None = None) -> dict:
    """The coarse colours an uploaded ``.cnet`` file starts with (no network run)."""
    try:
        header, _ = bitstream.unpack(data)
        _check_pixels(header, max_pixels)
        pixels = preview_array(data)
    except bitstream.BitstreamError as exc:
        raise UploadError(str(exc)) from None
    return {"width": header.width, "height": header.height, "blocks": [pixels.shape[1], pixels.shape[0]],
            "preview": png_data_uri(pixels)}


def decompress_upload(data: bytes, default: Codec, codecs: dict[int, Codec],
                      realism: float | None = None, max_pixels: int | None = None,
                      progress: Callable[[float, str], None] | None = None) -> dict:
    """Decode an uploaded ``.cnet`` file with the bundled model its header names, at
    ``realism`` (None: that model's default); ``progress`` hears of every decoded tile."""
    try:
        header, _ = bitstream.unpack(data)
        _check_pixels(header, max_pixels)
        if header.model_id == default.model_id:  # its fingerprint is checked on decoding
            codec = default
        else:
            if header.model_id not in codecs:
                codecs[header.model_id] = load_for_header(data)
            codec = codecs[header.model_id]
        realism = codec.default_realism if realism is None else realism
        on_tile = None if progress is None else \
            (lambda done, total: progress(done / total, f"decoding: tile {done} of {total}"))
        pixels = codec.decompress_array(data, realism=realism, on_tile=on_tile)
    except (bitstream.BitstreamError, CodecError) as exc:
        raise UploadError(str(exc)) from None
    bpp = len(data) * 8 / (header.width * header.height)
    return {"model": codec.name, "quality": header.quality, "width": header.width,
            "height": header.height, "bytes": len(data), "bpp": bpp, "format_version": header.version,
            "realism": realism, "decoded": png_data_uri(pixels)}
