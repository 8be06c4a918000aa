"""Encoder-side latent refinement: search, per image, for the latent its decoder renders best.

The encoder is amortised: one forward pass guesses a latent for any image, and the guess of a
briefly trained encoder is well short of the best latent for this decoder (the amortisation
gap; Campos et al., "Content adaptive optimization for neural image compression", 2019).
Starting from that guess, a few Adam steps on the continuous latent, through the training's
straight-through quantiser, lower the training objective for this one image::

    lam * MSE + w * (1 - MS-SSIM) + bits per pixel (under the frozen coder tables, or the
                                     frozen context network where it codes the file)

or, for a file meant for the realism decoder (``perceptual`` and ``decoder`` given), that
decoder's training loss without its adversary: LPIPS-Alex + 20 * MSE + bits per pixel, scored
through the realism decoder.

Only the encoder side changes: the file format and decoder are the same, so refined files
decode bit-exactly with any release that reads the model.

Given a size test (``fits``), the search never sends a latent whose file is larger: steps whose
latent does not fit double the rate term's weight for the next step (steps that fit relax it
again, down to its training weight), and only latents that fit are candidates. The codec's test
is the real file length against the encoder's own file, so a refined file buys its quality with
no bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from compressnet.metrics import ms_ssim_similarity
from compressnet.models.autoencoder import CompressNetModel
from compressnet.models.context_net import ContextNet

LAMBDA = 200.0  # the objective the bundled models were trained with (for sae-spn-lite, its first
MSSSIM_WEIGHT = 10.0  # steps; its later steps weighed MS-SSIM 20: see docs/cards/sae-spn-lite.md)
RATE_WEIGHT = 1.0
STEP_SIZE = 0.1  # Adam's learning rate, in quantisation steps
REALISM_STEP_SIZE = 0.05  # the realism search's (benchmarks/refine_realism_tuning.py measured
# 0.0125-0.2 and the options below on held-out photos: the defaults are the best it found)
RATE_BACKOFF = 2.0  # the rate weight's factor after a step whose file is too large
RATE_RELAX = 1.25  # and its divisor after one that fits
MIN_MSSSIM_SIDE = 33  # five MS-SSIM scales need a 3-tap window to fit: sides above 32 px
REALISM_MSE_WEIGHT = 20.0  # the realism decoder's training weight (compressnet.train.realism)
REALISM_MSSSIM_WEIGHT = 0.0  # a (1 - MS-SSIM) term in the realism search, as the faithful one has
REALISM_LPIPS_SCALES = 1  # 2 or more: LPIPS-Alex at 1/2, 1/4, ... size too
STEP_DECAY = False  # cosine decay of the step size over the search


def realism_search_tag() -> str:
    """The realism search's settings as a string: an evaluation's cache keys its refined rows on
    it, so rows searched with other settings are not reused."""
    return (f"step{REALISM_STEP_SIZE:g}-mse{REALISM_MSE_WEIGHT:g}-msssim{REALISM_MSSSIM_WEIGHT:g}"
            f"-scales{REALISM_LPIPS_SCALES}-rate{RATE_WEIGHT:g}" + ("-cosine" if STEP_DECAY else ""))


def objective(model: CompressNetModel, x_hat: Tensor, target: Tensor, y: Tensor, symbols: Tensor,
              keep: int, rate_weight: float = RATE_WEIGHT, net: ContextNet | None = None,
              perceptual: nn.Module | None = None) -> Tensor:
    """What refinement lowers: the training objective of one image, rate in bits per pixel
    (under the context network ``net`` where the file is coded with one); with ``perceptual``
    (LPIPS-Alex), the realism decoder's instead."""
    h, w = target.shape[-2:]
    mse = torch.mean((x_hat - target) ** 2)
    if perceptual is not None:
        loss = perceptual(x_hat, target).mean() + REALISM_MSE_WEIGHT * mse
        for scale in range(1, REALISM_LPIPS_SCALES):
            factor = 2 ** scale
            loss = loss + perceptual(F.avg_pool2d(x_hat, factor), F.avg_pool2d(target, factor)).mean()
        if REALISM_MSSSIM_WEIGHT and min(h, w) >= MIN_MSSSIM_SIDE:
            loss = loss + REALISM_MSSSIM_WEIGHT * (1 - ms_ssim_similarity(x_hat, target))
    else:
        loss = LAMBDA * mse
        if min(h, w) >= MIN_MSSSIM_SIDE:
            loss = loss + MSSSIM_WEIGHT * (1 - ms_ssim_similarity(x_hat, target))
    return loss + rate_weight * model.entropy.latent_bits(y, symbols, keep, net).sum() / (h * w)


def refine_latent(model: CompressNetModel, x: Tensor, y: Tensor, keep: int, steps: int,
                  switches: dict[int, Tensor] | None = None,
                  size: tuple[int, int] | None = None,
                  correct: Callable[[Tensor], Tensor] | None = None,
                  fits: Callable[[Tensor], bool] | None = None,
                  on_step: Callable[[], object] | None = None,
                  net: ContextNet | None = None, decoder: nn.Module | None = None,
                  perceptual: nn.Module | None = None) -> Tensor:
    """Symbols (B, C, h, w) of the best latent found in ``steps`` steps from ``y``.

    ``x`` is the padded image in [0, 1] and ``size`` its true (height, width): padding is
    not scored. Only the first ``keep`` channels are searched (the others are not sent);
    ``switches`` are the sent ones (SWWAE); ``correct`` is what the decoder does after the
    network (the colour layer), so the search scores the image the reader will see. ``fits``
    says whether a latent's symbols make a small enough file: only those are candidates, and
    the rate term weighs more after a step that does not fit. The encoder's own latent is a
    candidate too (it must fit), so the result never scores worse than it on the objective.
    ``on_step`` is called after each step (a progress bar's ``update``). ``net`` is the
    context network that codes the file (scheme 3), so the rate term counts its bits.
    ``decoder`` and ``perceptual``: search for the realism decoder (``decoder``, float32) under
    its loss (see the module docstring) instead of the model's own decoder and objective.
    """
    h, w = size or x.shape[-2:]
    target = x[..., :h, :w]
    mask = torch.zeros_like(y)
    mask[:, :keep] = 1
    y = y.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([y], lr=STEP_SIZE if perceptual is None else REALISM_STEP_SIZE)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1)) if STEP_DECAY else None
    best, best_symbols, rate_weight = math.inf, None, RATE_WEIGHT
    with torch.enable_grad():
        for step in range(steps + 1):
            y_hat, symbols = model.quantizer.straight_through(y)
            x_hat = (decoder or model.decoder)(y_hat * mask, switches).x_hat[..., :h, :w]
            if correct is not None:
                x_hat = correct(x_hat)
            loss = objective(model, x_hat, target, y, symbols, keep, rate_weight=rate_weight, net=net,
                             perceptual=perceptual)
            score = loss.item() if rate_weight == RATE_WEIGHT else objective(
                model, x_hat.detach(), target, y.detach(), symbols, keep, RATE_WEIGHT, net=net,
                perceptual=perceptual).item()
            small_enough = fits is None or fits(symbols)
            if step == 0 and not small_enough:
                raise ValueError("the encoder's own latent must fit")
            if small_enough and score < best:
                best, best_symbols = score, symbols
            if step == steps:
                break
            rate_weight = (max(RATE_WEIGHT, rate_weight / RATE_RELAX) if small_enough
                           else rate_weight * RATE_BACKOFF)
            opt.zero_grad(set_to_none=True)
            loss.backward(inputs=[y])
            opt.step()
            if schedule is not None:
                schedule.step()
            if on_step is not None:
                on_step()
    return best_symbols
