"""Safe file output: never overwrite without ``force``, never leave a half-written file."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


class OutputExistsError(FileExistsError):
    def __str__(self) -> str:
        return f"{self.filename}: already exists (use --force to overwrite)"


def write_atomic(path: str | Path, data: bytes, force: bool = False) -> Path:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(17, "exists", str(path))
    if path.is_dir():
        raise IsADirectoryError(21, "is a directory", str(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # name the output, not the hidden temporary file beside it
        raise OSError(f"{path}: cannot write there ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# Decoded images by the output's suffix: lossless unless the user asks for JPEG.
OUTPUT_FORMATS: dict[str, tuple[str, dict]] = {
    ".png": ("PNG", {}),
    ".webp": ("WEBP", {"lossless": True}),
    ".jpg": ("JPEG", {"quality": 95, "subsampling": 0}),
    ".jpeg": ("JPEG", {"quality": 95, "subsampling": 0}),
    ".tif": ("TIFF", {"compression": "tiff_deflate"}),
    ".tiff": ("TIFF", {"compression": "tiff_deflate"}),
    ".bmp": ("BMP", {}),
    ".ppm": ("PPM", {}),
}


class OutputFormatError(ValueError):
    """An output name whose suffix names no format that decoded images are written in."""


def output_format(path: str | Path) -> tuple[str, dict]:
    """Pillow's format name and options for a decoded image written to ``path`` (PNG when the
    name has no suffix); checked before decoding, which can take minutes."""
    suffix = Path(path).suffix.lower()
    if not suffix:
        return OUTPUT_FORMATS[".png"]
    if suffix not in OUTPUT_FORMATS:
        raise OutputFormatError(f"{path}: cannot write {suffix} images; name the output "
                                f"{', '.join(OUTPUT_FORMATS)}")
    return OUTPUT_FORMATS[suffix]


def image_bytes(pixels: np.ndarray, path: str | Path = "image.png") -> bytes:
    """``pixels`` encoded in the format that ``path``'s suffix names (:func:`output_format`)."""
    fmt, options = output_format(path)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, **options)
    return buf.getvalue()
