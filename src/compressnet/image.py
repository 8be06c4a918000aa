"""Any image in, uint8 sRGB out: formats, modes, bit depths, colour profiles, EXIF rotation,
alpha, padding."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif",
                  ".heic", ".heif", ".avif", ".jxl"}
MAX_PIXELS = 64_000_000  # 8000 x 8000 (a 61-megapixel camera); tiles bound the networks' memory

ImageLike = Image.Image | np.ndarray | torch.Tensor | str | Path | bytes


def files_in(folder: str | Path, suffixes: set[str] | frozenset[str] = frozenset(),
             recursive: bool = False, kind: str = "images") -> list[Path]:
    """The files in ``folder`` (and, ``recursive``, its sub-folders) whose suffix is one of
    ``suffixes`` (default: the images Pillow reads here), sorted. The one lister of the package:
    the CLI's folder arguments, evaluation and training use it. A missing folder, or one without
    any such file, is a FileNotFoundError whose message is meant for users."""
    folder, suffixes = Path(folder), suffixes or IMAGE_SUFFIXES
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    found = folder.rglob("*") if recursive else folder.iterdir()
    files = sorted(p for p in found if p.suffix.lower() in suffixes and p.is_file())
    if not files:
        raise FileNotFoundError(f"{folder}: a folder with no {kind} in it")
    return files


class ImageError(ValueError):
    """An input that cannot be read as an image; the message is meant for users."""


class ImageTooLargeError(ImageError):
    """An image above the pixel limit (a server answers 413 to it, not 400)."""


_PLUGINS_REGISTERED = False


def register_plugins() -> None:
    """Teach Pillow HEIC/HEIF (pillow-heif: what phones save) and JPEG XL (pillow-jxl-plugin),
    both dependencies: the classical codecs write them, and users' photos arrive in them."""
    global _PLUGINS_REGISTERED
    if _PLUGINS_REGISTERED:
        return
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
    except ImportError:  # pragma: no cover - both are install requirements
        pass
    try:
        import pillow_jxl  # noqa: F401  (importing it registers JXL with Pillow)
    except ImportError:  # pragma: no cover
        pass
    _PLUGINS_REGISTERED = True


_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def to_srgb(im: Image.Image) -> Image.Image:
    """``im`` as RGB in sRGB, the space the codec and its PNGs work in.

    Why: phones and cameras tag photos with wider profiles (Display P3 in every iPhone HEIC,
    Adobe RGB), and reading their numbers as sRGB washes the colours out. Such pixels go
    through LittleCMS (perceptual intent); an sRGB profile, or none, leaves them as they are.
    A profile that cannot be used is ignored with a warning, never a refused photo.
    """
    icc = im.info.get("icc_profile")
    if icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            if "srgb" not in ImageCms.getProfileDescription(source).lower():
                if im.mode not in ("RGB", "CMYK", "L"):
                    im = im.convert("L" if im.mode == "LA" else "RGB")
                return ImageCms.profileToProfile(im, source, _SRGB, outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError) as exc:
            warnings.warn(f"colour profile ignored, pixels read as sRGB ({exc})", stacklevel=3)
    return im.convert("RGB")


def to_rgb_array(im: Image.Image) -> np.ndarray:
    """A PIL image of any mode as an (H, W, 3) uint8 sRGB array, EXIF orientation applied."""
    im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im).astype(np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        grey = np.clip(np.round(arr / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if im.mode == "F":
        grey = np.clip(np.round(np.asarray(im) * (255.0 if np.asarray(im).max() <= 1 else 1)), 0, 255)
        return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        if np.asarray(im)[..., 3].min() < 255:
            warnings.warn("alpha channel dropped: only RGB is coded", stacklevel=2)
    return np.asarray(to_srgb(im), dtype=np.uint8).copy()


def open_image(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 RGB, with one clear error for anything unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: file is empty")
    with path.open("rb") as f:
        return _read(f, str(path))


def decode_image_bytes(data: bytes, name: str = "upload", max_pixels: int | None = None) -> np.ndarray:
    """Like :func:`open_image`, for bytes in memory (uploads)."""
    if not data:
        raise ImageError(f"{name}: file is empty")
    return _read(io.BytesIO(data), name, max_pixels)


def _read(fp, name: str, max_pixels: int | None = None) -> np.ndarray:
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    register_plugins()
    try:
        with Image.open(fp) as im:
            w, h = im.size
            if w * h > limit:
                raise ImageTooLargeError(f"{name}: {w}x{h} is too large (limit {limit:,} pixels)")
            im.load()
            return to_rgb_array(im)
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image (or a format Pillow cannot read)") from None
    except Image.DecompressionBombError:
        raise ImageTooLargeError(f"{name}: too large (limit {limit:,} pixels)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, ImageError):
            raise
        raise ImageError(f"{name}: unreadable or truncated image ({exc})") from None


def _tensor_as_hwc(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) or (1, C, H, W) -> (H, W, C)."""
    t = image.detach().cpu()
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 3 or t.shape[0] not in (1, 3, 4):
        raise ImageError(f"tensor images must be (C, H, W) with C in 1, 3, 4; got {tuple(t.shape)}")
    return t.permute(1, 2, 0).numpy()


def _as_uint8(arr: np.ndarray) -> np.ndarray:
    """Floats in [0, 1], 16-bit or other integers -> uint8 (rounded, clipped)."""
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        return np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)
    if arr.dtype == np.uint16:
        return np.round(arr / 257.0).astype(np.uint8)
    return np.clip(arr, 0, 255).astype(np.uint8)


def _three_channels(arr: np.ndarray) -> np.ndarray:
    """(H, W, 1/3/4) uint8 -> contiguous (H, W, 3): grey repeated, alpha dropped (a warning
    when it was not opaque)."""
    if arr.shape[2] == 4:
        if arr[..., 3].min() < 255:
            warnings.warn("alpha channel dropped: only RGB is coded", stacklevel=3)
        arr = arr[..., :3]
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr)


def as_rgb_array(image: ImageLike) -> np.ndarray:
    """PIL image, array (HxW, HxWx1/3/4, uint8 or float in [0,1]), tensor (CxHxW), path, or
    the bytes of an image file (an upload, a download: any format :func:`open_image` reads)."""
    if isinstance(image, (str, Path)):
        return open_image(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_image_bytes(bytes(image))
    if isinstance(image, Image.Image):
        return to_rgb_array(image)
    if isinstance(image, torch.Tensor):
        image = _tensor_as_hwc(image)
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ImageError(f"arrays must be HxW or HxWxC with C in 1, 3, 4; got {arr.shape}")
    if arr.shape[0] * arr.shape[1] == 0:
        raise ImageError("image has no pixels")
    return _three_channels(_as_uint8(arr))


def to_tensor(arr: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [0, 1]; a read-only array (``np.asarray`` of
    a PIL image) is copied rather than wrapped, which PyTorch warns about."""
    pixels = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
    return pixels.permute(2, 0, 1).unsqueeze(0).float() / 255.0


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) float -> (H, W, 3) uint8, rounded and clipped."""
    return x[0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad the bottom and right edges up to a multiple (reflection fails on 1x1)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    return torch.nn.functional.pad(x, (0, pw, 0, ph), mode="replicate")
