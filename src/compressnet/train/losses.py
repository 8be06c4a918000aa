"""Training losses: rate, distortion, the paper's stacked (layer-wise) L2, switch
cross-entropy and the adversarial terms."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from compressnet.metrics import ms_ssim_similarity
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
    """1 - MS-SSIM (:func:`compressnet.metrics.ms_ssim_similarity`): 0 for identical images."""
    return 1 - ms_ssim_similarity(x_hat, x)


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
