"""The paper's PatchGAN discriminator (optionally conditioned on the latent, as HiFiC)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PatchDiscriminator(nn.Module):
    """Strided 4x4 convs to a map of real/fake logits, one per ~70x70 patch.

    ``forward`` returns the logits and the intermediate features (for the
    feature-matching loss).  With ``latent_channels`` > 0 the upsampled
    latent is concatenated to the input image.
    """

    def __init__(self, width: int = 64, latent_channels: int = 0) -> None:
        super().__init__()
        widths = [3 + latent_channels, width, width * 2, width * 4, width * 8]
        self.blocks = nn.ModuleList()
        for i in range(4):
            stride = 2 if i < 3 else 1
            self.blocks.append(nn.utils.spectral_norm(
                nn.Conv2d(widths[i], widths[i + 1], 4, stride=stride, padding=1)))
        self.head = nn.Conv2d(widths[-1], 1, 4, padding=1)
        self.latent_channels = latent_channels

    def forward(self, x: Tensor, latent: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        h = x - 0.5
        if self.latent_channels:
            h = torch.cat([h, F.interpolate(latent, size=x.shape[-2:], mode="nearest")], 1)
        features = []
        for block in self.blocks:
            h = F.leaky_relu(block(h), 0.2)
            features.append(h)
        return self.head(h), features
