"""Training losses: rate, distortion, the paper's stacked (layer-wise) L2, switch
cross-entropy and the adversarial terms."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from compressnet.models.autoencoder import ForwardOutput
from compressnet.models.layers import switch_classes


class GeneratorTerms(NamedTuple):
    bpp: Tensor
    mse: Tensor
    stacked: Tensor
    switch_ce: Tensor
    switch_acc: dict[int, float]


def generator_terms(x: Tensor, out: ForwardOutput) -> GeneratorTerms:
    pixels = x.shape[-2] * x.shape[-1]
    bpp = ((out.latent_bits + out.switch_bits) / pixels).mean()
    mse = F.mse_loss(out.x_hat, x)
    stacked = torch.stack([F.mse_loss(d, e.detach()) for d, e in
                           zip(out.decoded.features, out.encoded.pooled)]).mean()
    ce = x.new_zeros(())
    acc = {}
    for level, logits in out.decoded.switch_logits.items():
        target = out.encoded.switches[level]
        ce = ce + F.cross_entropy(logits.transpose(1, 2), target)
        acc[level] = (switch_classes(logits) == target).float().mean().item()
    return GeneratorTerms(bpp, mse, stacked, ce, acc)


def psnr(mse: float) -> float:
    return 10 * torch.log10(torch.tensor(1.0 / max(mse, 1e-12))).item()


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor, kind: str = "ns") -> Tensor:
    """Discriminator loss: non-saturating (``ns``) or ``hinge``."""
    if kind == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    if kind != "ns":
        raise ValueError(f"unknown GAN loss {kind!r}; choose ns or hinge")
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_adversarial_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating generator loss (also the usual partner of the hinge discriminator)."""
    return F.softplus(-fake_logits).mean()


def ms_ssim_loss(x_hat: Tensor, x: Tensor) -> Tensor:
    """Differentiable 5-scale MS-SSIM of images in [0, 1].

    The standard 11-tap window needs sides above 160 px; on smaller training crops the
    window shrinks to the largest odd size that fits (7 taps at 128 px, 3 at 64 px).
    """
    from pytorch_msssim import ms_ssim

    side = min(x.shape[-2:])
    win = 11
    while win > 3 and side <= (win - 1) * 16:
        win -= 2
    return ms_ssim(x_hat.clamp(0, 1), x, data_range=1.0, win_size=win)


class FeatureLoss(torch.nn.Module):
    """Perceptual loss: L2 between unit-normalised backbone features (AlexNet conv3 as in the
    paper, or VGG16 relu3_3), from a torchvision-format weights file the user gives."""

    MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def __init__(self, backbone_path: str) -> None:
        super().__init__()
        from compressnet.perceptual import backbone, backbone_kind

        kind = backbone_kind(backbone_path)
        features = backbone(kind, backbone_path)
        cut = 8 if kind == "alex" else 16  # through AlexNet's conv3 + ReLU, VGG16's relu3_3
        self.features = features[:cut]
        self.register_buffer("mean", self.MEAN)
        self.register_buffer("std", self.STD)

    def forward(self, x_hat: Tensor, x: Tensor) -> Tensor:
        fa = self.features((x_hat - self.mean) / self.std)
        with torch.no_grad():
            fb = self.features((x - self.mean) / self.std)
        fa = fa / (fa.norm(dim=1, keepdim=True) + 1e-10)
        fb = fb / (fb.norm(dim=1, keepdim=True) + 1e-10)
        return (fa - fb).pow(2).sum(1).mean()


def feature_matching_loss(real_feats: list[Tensor], fake_feats: list[Tensor]) -> Tensor:
    return torch.stack([F.l1_loss(f, r.detach()) for r, f in zip(real_feats, fake_feats)]).mean()
