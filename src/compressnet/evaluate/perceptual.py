"""Distribution metrics for users who bring an Inception: FID and KID on 256x256 patches.

LPIPS and DISTS, whose weights the registry packages ship, are :mod:`compressnet.perceptual`.
FID / KID (as HiFiC reports them) need a TorchScript (or ``.pt2`` torch.export) module that
maps a float batch (N, 3, 256, 256) in [0, 255] to features (N, D), such as a scripted
Inception-v3 pool3 extractor: no registry package found ships Inception weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def patches(pixels: np.ndarray, size: int = 256) -> np.ndarray:
    """Non-overlapping size x size patches plus the grid shifted by size/2 (HiFiC's protocol)."""
    h, w = pixels.shape[:2]
    out = []
    for offset in (0, size // 2):
        for top in range(offset, h - size + 1, size):
            for left in range(offset, w - size + 1, size):
                out.append(pixels[top:top + size, left:left + size])
    return np.stack(out) if out else np.zeros((0, size, size, 3), np.uint8)


class FeatureExtractor:
    """A user-supplied TorchScript module: (N, 3, 256, 256) floats in [0, 255] -> (N, D)."""

    def __init__(self, path: str | Path) -> None:
        try:
            if str(path).endswith(".pt2"):  # a torch.export archive
                self.module = torch.export.load(str(path)).module()
            else:
                self.module = torch.jit.load(str(path), map_location="cpu").eval()
        except (RuntimeError, ValueError, FileNotFoundError) as exc:
            raise ValueError(f"{path}: not a TorchScript or torch.export feature extractor ({exc})") from None

    @torch.no_grad()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) == 0:
            return np.zeros((0, 0))
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).float()
        return self.module(x).reshape(len(batch), -1).double().numpy()


def fid(real: np.ndarray, fake: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (NaN below 2 samples)."""
    if min(len(real), len(fake)) < 2:
        return float("nan")
    mu1, mu2 = real.mean(0), fake.mean(0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    # Tr(sqrt(S1 S2)) from the eigenvalues of S1 S2 (similar to a PSD matrix)
    eig = np.linalg.eigvals(np.atleast_2d(s1) @ np.atleast_2d(s2))
    tr_sqrt = np.sqrt(np.clip(eig.real, 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(np.atleast_2d(s1)) + np.trace(np.atleast_2d(s2))
                 - 2 * tr_sqrt)


def kid(real: np.ndarray, fake: np.ndarray) -> float:
    """Unbiased squared MMD with the cubic polynomial kernel (Binkowski et al. 2018)."""
    if min(len(real), len(fake)) < 2:
        return float("nan")
    d = real.shape[1]

    def k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a @ b.T / d + 1) ** 3

    m, n = len(real), len(fake)
    kxx, kyy, kxy = k(real, real), k(fake, fake), k(real, fake)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean())


def availability(lpips_backbone: str | None, lpips_lin: str | None, dists_weights: str | None,
                 fid_model: str | None) -> list[str]:
    """One line per perceptual metric that will not be computed, saying why."""
    from compressnet.perceptual import unavailable

    lines = []
    why = unavailable()
    if why and not (lpips_backbone and lpips_lin):
        lines.append(f"LPIPS: unavailable: {why} (or pass --lpips-backbone and --lpips-lin)")
    if why and not (lpips_backbone and dists_weights):
        lines.append(f"DISTS: unavailable: {why} (or pass --lpips-backbone VGG16 and --dists-weights)")
    if not fid_model:
        lines.append("FID/KID: unavailable: needs --fid-model (a TorchScript Inception feature extractor)")
    return lines
