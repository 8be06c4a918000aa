"""The learned context network's module (context scheme 3, format versions 7 to 9).

What it sees and why is in :mod:`compressnet.entropy.context_net`, which also turns its logits
into the integer frequencies the coder uses, in exact arithmetic. Here: the float network that
training and the offline fit optimise, and its fp16 storage in a weights file.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

PREFIX = "context_net."  # array names in a weights file


def one_hot(symbols: Tensor, levels: int) -> Tensor:
    """(..., H, W) symbols (``levels`` = not yet decoded) to (..., levels + 1, H, W) planes."""
    planes = F.one_hot(symbols.long(), levels + 1).movedim(-1, -3)
    return planes.to(torch.get_default_dtype())


class ContextNet(nn.Module):
    """Logits of every latent symbol from decoded ones; see the module docstring."""

    def __init__(self, channels: int, levels: int, width: int = 64, kernel: int = 5) -> None:
        super().__init__()
        self.channels, self.levels = channels, levels
        self.earlier = nn.Conv2d(channels * (levels + 1), width, 3, padding=1)
        self.above = nn.Conv2d(levels + 1, width, kernel, padding=kernel // 2)
        self.channel_bias = nn.Parameter(torch.zeros(channels, width))
        self.hidden1 = nn.Conv2d(width, width, 1)
        self.hidden2 = nn.Conv2d(width, width, 1)
        self.logits = nn.Conv2d(width, levels, 1)
        mask = torch.zeros_like(self.above.weight)
        mask[:, :, : kernel // 2] = 1  # rows above the symbol only
        self.register_buffer("mask", mask, persistent=False)
        # 1 where the network codes a channel, 0 where the counted scheme-2 tables do
        self.register_buffer("coded", torch.ones(channels))

    def earlier_input(self, planes: Tensor, channel: Tensor) -> Tensor:
        """The earlier layer's input (N, C * (L + 1), H, W) from one-hot ``planes``
        (N, c, L + 1, H, W) of c <= C channels: item n's channels from ``channel[n]`` on, and
        those past c, marked as not yet decoded."""
        n, c, states, h, w = planes.shape
        later = torch.arange(c, device=planes.device).view(1, c, 1, 1, 1) >= channel.view(n, 1, 1, 1, 1)
        missing = torch.zeros(states, device=planes.device, dtype=planes.dtype)
        missing[self.levels] = 1
        missing = missing.view(1, 1, states, 1, 1)
        known = torch.where(later, missing, planes)
        if c < self.channels:  # a prefix of channels: the rest are "not yet" too
            known = torch.cat([known, missing.expand(n, self.channels - c, states, h, w)], 1)
        return known.reshape(n, -1, h, w)

    def forward(self, symbols: Tensor) -> Tensor:
        """Float logits (B, C, L, H, W) of every channel of ``symbols`` (B, C, H, W): training."""
        return self.from_planes(one_hot(symbols, self.levels))

    def from_planes(self, planes: Tensor) -> Tensor:
        """:meth:`forward` of one-hot planes (B, C, L + 1, H, W); they may carry a gradient
        (encoder-side refinement passes soft assignments through, straight-through), so a
        symbol's cost reaches the symbols whose contexts it is part of."""
        b, c, states, h, w = planes.shape
        channel = torch.arange(c, device=planes.device).repeat(b)
        # (B * C) items, item k predicts channel k % C
        x = self.earlier(self.earlier_input(planes.repeat_interleave(c, 0), channel))
        x = x + F.conv2d(planes.reshape(b * c, states, h, w), self.above.weight * self.mask,
                         self.above.bias, padding=self.above.padding)
        x = x + self.channel_bias[channel][:, :, None, None]
        for layer in (self.hidden1, self.hidden2):
            x = layer(F.leaky_relu(x, 0.2))
        return self.logits(F.leaky_relu(x, 0.2)).view(b, c, self.levels, h, w)

    def bits(self, symbols: Tensor) -> Tensor:
        """Ideal bits per channel (C,) of ``symbols`` under the float logits."""
        logp = F.log_softmax(self(symbols), 2)
        picked = logp.gather(2, symbols.long().unsqueeze(2)).squeeze(2)
        return -picked.sum((0, 2, 3)) / math.log(2.0)

    def state_arrays(self) -> dict[str, np.ndarray]:
        """fp16 arrays for a weights file (the mask applied)."""
        state = {k: v.detach().clone() for k, v in self.state_dict().items()}
        state["above.weight"] *= self.mask
        return {PREFIX + k: v.cpu().numpy().astype(np.float16) for k, v in state.items()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ContextNet:
        """The network stored by :meth:`state_arrays` (names with :data:`PREFIX`)."""
        state = {k[len(PREFIX):]: torch.from_numpy(v.astype(np.float32))
                 for k, v in arrays.items() if k.startswith(PREFIX)}
        width, inputs = state["earlier.weight"].shape[:2]
        levels = state["logits.weight"].shape[0]
        net = cls(inputs // (levels + 1), levels, width, state["above.weight"].shape[-1])
        net.load_state_dict(state)
        with torch.no_grad():
            net.above.weight.mul_(net.mask)
        return net.eval()
