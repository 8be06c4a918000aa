"""Perceptual metrics for users who have the backbone weights: LPIPS, DISTS, FID and KID.

Nothing can be downloaded at run time, so every metric loads its weights from a
path the user gives:

- LPIPS (Zhang et al. 2018): a torchvision-format AlexNet or VGG16 state dict
  (``features.N.weight`` keys, e.g. ``alexnet-owt-7be5be79.pth``) plus the lpips
  package's linear-layer file (``lin0.model.1.weight`` ... from ``alex.pth``/``vgg.pth``).
- DISTS (Ding et al. 2020): the VGG16 state dict plus DISTS's ``alpha``/``beta`` file.
- FID / KID on 256x256 patches (as HiFiC reports them): a TorchScript (or ``.pt2``
  torch.export) module that maps
  a float batch (N, 3, 256, 256) in [0, 255] to features (N, D), such as a scripted
  Inception-v3 pool3 extractor.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

ALEXNET_TAPS = {1: 64, 4: 192, 7: 384, 9: 256, 11: 256}  # ReLU indices in features -> channels
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
VGG16_TAPS = {3: 64, 8: 128, 15: 256, 22: 512, 29: 512}


def _alexnet_features() -> nn.Sequential:
    """torchvision's ``alexnet().features``, layer for layer, so its state dict loads."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2))


def _vgg16_features() -> nn.Sequential:
    """torchvision's ``vgg16().features``."""
    layers: list[nn.Module] = []
    channels = 3
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, v, 3, padding=1), nn.ReLU()]
            channels = v
    return nn.Sequential(*layers)


def load_backbone(path: str | Path) -> tuple[str, nn.Sequential]:
    """Load a torchvision-format AlexNet or VGG16 state dict; returns (kind, features)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a state dict")
    state = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    if not state:
        raise ValueError(f"{path}: no 'features.*' weights (expected torchvision AlexNet or VGG16)")
    kind = "alex" if state["0.weight"].shape[-1] == 11 else "vgg"
    features = _alexnet_features() if kind == "alex" else _vgg16_features()
    features.load_state_dict(state)
    return kind, features.eval().requires_grad_(False)


def _taps(features: nn.Sequential, x: Tensor, taps: dict[int, int]) -> list[Tensor]:
    out = []
    for i, layer in enumerate(features):
        x = layer(x)
        if i in taps:
            out.append(x)
        if i >= max(taps):
            break
    return out


def _to_tensor(pixels: np.ndarray) -> Tensor:
    return torch.from_numpy(np.array(pixels)).permute(2, 0, 1)[None].float() / 255.0


class LPIPS(nn.Module):
    """LPIPS distance (lower is better) between uint8 RGB images."""

    SHIFT = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    SCALE = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def __init__(self, backbone_path: str | Path, lin_path: str | Path) -> None:
        super().__init__()
        self.kind, self.features = load_backbone(backbone_path)
        self.taps = ALEXNET_TAPS if self.kind == "alex" else VGG16_TAPS
        lin = torch.load(lin_path, map_location="cpu", weights_only=True)
        self.lins = nn.ModuleList()
        for i, channels in enumerate(self.taps.values()):
            weight = lin.get(f"lin{i}.model.1.weight")
            if weight is None or weight.shape != (1, channels, 1, 1):
                raise ValueError(f"{lin_path}: lin{i} weights missing or not (1, {channels}, 1, 1) "
                                 f"for the {self.kind} backbone")
            conv = nn.Conv2d(channels, 1, 1, bias=False)
            conv.weight.data.copy_(weight)
            self.lins.append(conv)
        self.requires_grad_(False).eval()

    @torch.no_grad()
    def forward(self, a: np.ndarray, b: np.ndarray) -> float:
        fa, fb = (_taps(self.features, (_to_tensor(x) * 2 - 1 - self.SHIFT) / self.SCALE, self.taps)
                  for x in (a, b))
        total = 0.0
        for lin, xa, xb in zip(self.lins, fa, fb):
            na = xa / (xa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            nb = xb / (xb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total += lin((na - nb) ** 2).mean().item()
        return total


class DISTS(nn.Module):
    """DISTS distance (lower is better): VGG16 with L2 pooling, learned alpha/beta weights."""

    MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    CHANNELS = (3, 64, 128, 256, 512, 512)

    def __init__(self, vgg_path: str | Path, weights_path: str | Path) -> None:
        super().__init__()
        kind, features = load_backbone(vgg_path)
        if kind != "vgg":
            raise ValueError(f"{vgg_path}: DISTS needs a VGG16 backbone, not AlexNet")
        self.features = features
        params = torch.load(weights_path, map_location="cpu", weights_only=True)
        total = sum(self.CHANNELS)
        if not {"alpha", "beta"} <= set(params) or params["alpha"].numel() != total:
            raise ValueError(f"{weights_path}: needs 'alpha' and 'beta' with {total} entries each")
        self.alpha, self.beta = params["alpha"].view(1, total, 1, 1), params["beta"].view(1, total, 1, 1)
        window = torch.hann_window(5, periodic=False)[1:-1]
        g = window[:, None] * window[None, :]
        self.register_buffer("l2_filter", (g / g.sum())[None, None])

    def _l2pool(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        out = F.conv2d(x**2, self.l2_filter.expand(c, 1, 3, 3), stride=2, padding=1, groups=c)
        return (out + 1e-12).sqrt()

    def _stages(self, x: Tensor) -> list[Tensor]:
        x = (x - self.MEAN) / self.STD
        stages = [x]
        for i, layer in enumerate(self.features):
            x = self._l2pool(x) if isinstance(layer, nn.MaxPool2d) else layer(x)
            if i in VGG16_TAPS:
                stages.append(x)
            if i >= max(VGG16_TAPS):
                break
        return stages

    @torch.no_grad()
    def forward(self, a: np.ndarray, b: np.ndarray) -> float:
        fa, fb = self._stages(_to_tensor(a)), self._stages(_to_tensor(b))
        w_sum = self.alpha.sum() + self.beta.sum()
        alphas = torch.split(self.alpha / w_sum, self.CHANNELS, dim=1)
        betas = torch.split(self.beta / w_sum, self.CHANNELS, dim=1)
        d1 = d2 = 0.0
        for xa, xb, al, be in zip(fa, fb, alphas, betas):
            ma, mb = xa.mean([2, 3], keepdim=True), xb.mean([2, 3], keepdim=True)
            s1 = (2 * ma * mb + 1e-6) / (ma**2 + mb**2 + 1e-6)
            va, vb = ((xa - ma) ** 2).mean([2, 3], keepdim=True), ((xb - mb) ** 2).mean([2, 3], keepdim=True)
            cov = (xa * xb).mean([2, 3], keepdim=True) - ma * mb
            s2 = (2 * cov + 1e-6) / (va + vb + 1e-6)
            d1 = d1 + (al * s1).sum()
            d2 = d2 + (be * s2).sum()
        return float(1 - (d1 + d2))


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
    lines = []
    if not (lpips_backbone and lpips_lin):
        lines.append("LPIPS: unavailable: needs --lpips-backbone (torchvision AlexNet/VGG16 weights) and "
                     "--lpips-lin; nothing can be downloaded here")
    if not (lpips_backbone and dists_weights):
        lines.append("DISTS: unavailable: needs --lpips-backbone (VGG16) and --dists-weights")
    if not fid_model:
        lines.append("FID/KID: unavailable: needs --fid-model (a TorchScript Inception feature extractor)")
    return lines
