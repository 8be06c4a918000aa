"""Distortion metrics: PSNR and MS-SSIM (through pytorch-msssim) of 8-bit RGB images, and the
differentiable MS-SSIM that training and refinement optimise."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


def psnr_of_mse(mse: float, peak: float = 1.0) -> float:
    """PSNR in dB of a mean squared error on a ``peak`` scale (inf for 0)."""
    return float("inf") if mse <= 0 else 10 * math.log10(peak**2 / mse)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 images of the same shape (peak 255)."""
    return psnr_of_mse(float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)), 255.0)


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM (5 scales, data range 255) of two uint8 RGB images; NaN when a side is <= 160 px,
    where five scales of an 11-tap window do not fit."""
    from pytorch_msssim import ms_ssim as _ms_ssim

    if min(a.shape[:2]) <= 160:
        return float("nan")
    ta = torch.from_numpy(a).permute(2, 0, 1)[None].double()
    tb = torch.from_numpy(b).permute(2, 0, 1)[None].double()
    return float(_ms_ssim(ta, tb, data_range=255.0))


def ms_ssim_similarity(x_hat: Tensor, x: Tensor) -> Tensor:
    """Differentiable 5-scale MS-SSIM (1 for identical images) of batches in [0, 1].

    The standard 11-tap window needs sides above 160 px; on smaller training crops the
    window shrinks to the largest odd size that fits (7 taps at 128 px, 3 at 64 px).
    """
    from pytorch_msssim import ms_ssim as _ms_ssim

    side = min(x.shape[-2:])
    win = 11
    while win > 3 and side <= (win - 1) * 16:
        win -= 2
    return _ms_ssim(x_hat.clamp(0, 1), x, data_range=1.0, win_size=win)
