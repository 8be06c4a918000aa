"""Distortion metrics on 8-bit RGB images (PSNR; MS-SSIM through pytorch-msssim)."""

from __future__ import annotations

import math

import numpy as np
import torch


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 images of the same shape (peak 255)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM (5 scales, data range 255) of two uint8 RGB images; NaN when a side is <= 160 px,
    where five scales of an 11-tap window do not fit."""
    from pytorch_msssim import ms_ssim as _ms_ssim

    if min(a.shape[:2]) <= 160:
        return float("nan")
    ta = torch.from_numpy(a).permute(2, 0, 1)[None].double()
    tb = torch.from_numpy(b).permute(2, 0, 1)[None].double()
    return float(_ms_ssim(ta, tb, data_range=255.0))
