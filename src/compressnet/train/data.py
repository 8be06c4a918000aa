"""Training data: photos from a folder tree (or the CLIC / Cityscapes layouts), decoded
once into memory, served as random crops with flips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from compressnet.image import files_in, register_plugins, to_rgb_array

# Sub-folders that the paper's data sets use for training / validation.
LAYOUTS = {
    "clic": {"train": ["professional_train/train", "professional_train", "train"],
             "val": ["professional_valid/valid", "professional_valid", "valid"]},
    "cityscapes": {"train": ["leftImg8bit/train"], "val": ["leftImg8bit/val"]},
}


def find_images(root: str | Path, layout: str = "folder", split: str = "train") -> list[Path]:
    """Image files under ``root``; for ``clic``/``cityscapes`` the split's folders only."""
    root = Path(root)
    if layout == "folder":
        return files_in(root, recursive=True)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose folder, clic or cityscapes")
    dirs = dict.fromkeys(root / d for d in LAYOUTS[layout][split] if (root / d).is_dir())
    files = sorted({p for d in dirs for p in _images_or_none(d)})
    if not files:
        raise FileNotFoundError(f"no images found under {root} (layout {layout}, split {split})")
    return files


def _images_or_none(folder: Path) -> list[Path]:
    try:
        return files_in(folder, recursive=True)
    except FileNotFoundError:
        return []


def read_photo(path: Path, max_side: int = 1024) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a training photo; huge JPEGs are decoded at a reduced size."""
    register_plugins()
    with Image.open(path) as im:
        im.draft("RGB", (max_side, max_side))  # fast JPEG downscale for huge files
        return to_rgb_array(im)


def read_photo_scaled(path: Path, max_side: int) -> np.ndarray:
    """A training photo scaled (Lanczos) to at most ``max_side`` pixels a side."""
    arr = read_photo(path, max_side)
    h, w = arr.shape[:2]
    scale = max_side / max(h, w)
    if scale < 1:
        arr = np.asarray(Image.fromarray(arr).resize((round(w * scale), round(h * scale)), Image.LANCZOS))
    return arr


class CropDataset(torch.utils.data.Dataset):
    """Random ``crop`` x ``crop`` patches of images held in memory as uint8.

    Small images are upscaled just enough to fit a crop; nothing is squashed to a
    fixed frame size, and no histogram equalisation is ever applied.
    """

    def __init__(self, files: list[Path], crop: int, samples_per_epoch: int = 10_000,
                 max_side: int = 1024, progress: bool = True) -> None:
        self.crop = crop
        self.samples_per_epoch = samples_per_epoch
        self.images: list[np.ndarray] = []
        for path in tqdm(files, desc="loading images", disable=not progress, unit="img"):
            arr = read_photo(path, max_side)
            h, w = arr.shape[:2]
            if min(h, w) < crop:
                scale = crop / min(h, w)
                size = (max(crop, round(w * scale)), max(crop, round(h * scale)))
                arr = np.asarray(Image.fromarray(arr).resize(size, Image.BICUBIC))
            self.images.append(arr)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng(torch.randint(0, 2**31, ()).item())
        arr = self.images[rng.integers(len(self.images))]
        h, w = arr.shape[:2]
        top, left = rng.integers(h - self.crop + 1), rng.integers(w - self.crop + 1)
        patch = arr[top:top + self.crop, left:left + self.crop]
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        return torch.from_numpy(np.array(patch)).permute(2, 0, 1).float() / 255.0
