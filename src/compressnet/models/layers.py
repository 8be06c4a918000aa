"""Building blocks: max pooling that keeps its switches, switch unpooling, the quantizer."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from compressnet.models.arithmetic import FLOAT32, Float32


def pool_with_switches(x: Tensor) -> tuple[Tensor, Tensor]:
    """2x2 max pooling that also returns the switch of each window.

    The switch is the argmax position inside its 2x2 window as a class in
    0..3 (``2 * dy + dx``), an int64 tensor shaped like the pooled output.
    Ties go to the first position in raster order, on every machine.
    """
    if torch.is_grad_enabled():  # training: max's gradient goes to its argmax
        b, c, h, w = x.shape
        windows = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 2, 4, 3, 5)
        windows = windows.reshape(b, c, h // 2, w // 2, 4)
        pooled, switches = windows.max(dim=-1)
        return pooled, switches
    # inference: the four positions as strided views, no copy of every window (the same values
    # and switches; the encoder's time is in docs/evaluation.md)
    return first_maximum([x[..., 0::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 0::2], x[..., 1::2, 1::2]])


def first_maximum(candidates: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Elementwise maximum of same-shaped ``candidates`` and the index of the first candidate
    that holds it (ties keep the first), by comparisons in order: no stacked copy, and no
    reduction over a small middle dimension, which is slow in PyTorch's CPU kernels."""
    best = candidates[0].clone()
    index = torch.zeros(best.shape, dtype=torch.int64, device=best.device)
    for k, candidate in enumerate(candidates[1:], 1):
        index.masked_fill_(candidate > best, k)  # strictly greater: ties keep the first
        torch.maximum(best, candidate, out=best)
    return best, index


def unpool_with_switches(x: Tensor, switches: Tensor) -> Tensor:
    """Inverse of :func:`pool_with_switches`: put each value back where its switch says."""
    b, c, h, w = x.shape
    out = x.new_zeros(b, c, h, w, 4).scatter_(-1, switches.unsqueeze(-1), x.unsqueeze(-1))
    return out.view(b, c, h, w, 2, 2).permute(0, 1, 2, 4, 3, 5).reshape(b, c, 2 * h, 2 * w)


def switch_classes(logits: Tensor) -> Tensor:
    """The predicted switch class of SPN ``logits`` (B, C, 4, H, W): ``logits.argmax(2)``, the
    first maximum, by three comparisons, since PyTorch's CPU argmax over a middle dimension took
    0.43 s of a Kodak image's 2.6 s decode (these take 0.06 s and no copy of the logits)."""
    logits = logits.detach()  # a choice has no gradient (training and refinement call this too)
    return first_maximum([logits[:, :, k] for k in range(logits.shape[2])])[1]


class ChannelNorm(nn.Module):
    """Normalises each pixel's feature vector across channels (HiFiC's ChannelNorm2D).

    Independent of batch size and image size, so training and inference agree,
    and it keeps activations bounded, which a conv + max-pool stack without
    normalisation does not (such runs diverged here after ~2400 steps).
    """

    def __init__(self, channels: int, eps: float = 1e-3) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        centred = x - x.mean(1, keepdim=True)
        scale = torch.rsqrt(centred.pow(2).mean(1, keepdim=True) + self.eps)
        if torch.is_grad_enabled():
            return centred * scale * self.weight + self.bias
        return centred.mul_(scale).mul_(self.weight).add_(self.bias)  # the same values, in place


class ResidualBlock(nn.Module):
    """conv-norm-LeakyReLU-conv with an identity skip; each block owns its weights."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.norm = ChannelNorm(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor, ar: Float32 = FLOAT32) -> Tensor:
        return ar.add(x, ar.conv(self.conv2, ar.conv(self.conv1, x, self.norm, act=True)))


class SoftToHardQuantizer(nn.Module):
    """Rounds to ``levels`` centres {-(L-1)/2 .. (L-1)/2} (the paper: L=5, {-2..2}).

    Forward is hard rounding; backward is the gradient of a softmax over the
    distances to the centres (Mentzer et al.), as in the paper.  Returns the
    quantized values and the symbols (0..L-1).
    """

    def __init__(self, levels: int, sigma: float = 1.0) -> None:
        super().__init__()
        half = (levels - 1) // 2
        self.register_buffer("centers", torch.arange(-half, half + 1, dtype=torch.float32))
        self.sigma = sigma
        self.half = half

    def forward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        if self.training:
            return self.straight_through(y)
        symbols = self._symbols(y)
        return symbols - self.half, symbols.long()

    def _symbols(self, y: Tensor) -> Tensor:
        return torch.round(y.detach().clamp(-self.half, self.half)) + self.half

    def straight_through(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Hard values forward, the soft assignment's gradient backward (whatever the mode:
        encoder-side refinement needs it on a model in eval mode)."""
        symbols = self._symbols(y)
        hard = symbols - self.half
        dist = (y.unsqueeze(-1) - self.centers) ** 2
        weights = torch.softmax(-self.sigma * dist, dim=-1)
        soft = (weights * self.centers).sum(-1)
        return soft + (hard - soft).detach(), symbols.long()
