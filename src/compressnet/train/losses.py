"""Training losses: rate, distortion, the paper's stacked (layer-wise) L2, switch
cross-entropy and the adversarial terms."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from compressnet.models.autoencoder import ForwardOutput


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
        acc[level] = (logits.argmax(2) == target).float().mean().item()
    return GeneratorTerms(bpp, mse, stacked, ce, acc)


def psnr(mse: float) -> float:
    return 10 * torch.log10(torch.tensor(1.0 / max(mse, 1e-12))).item()


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Non-saturating GAN loss for the discriminator."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_adversarial_loss(fake_logits: Tensor) -> Tensor:
    return F.softplus(-fake_logits).mean()


def feature_matching_loss(real_feats: list[Tensor], fake_feats: list[Tensor]) -> Tensor:
    return torch.stack([F.l1_loss(f, r.detach()) for r, f in zip(real_feats, fake_feats)]).mean()
