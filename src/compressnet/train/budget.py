"""Fitting a training run into a wall-clock budget (``compressnet train --time-budget``)."""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compressnet.train.loop import TrainConfig

PLAN_SKIP = 20  # first steps of a phase are not timed (cuDNN autotuning, warm caches)
PLAN_EVERY = 100  # steps between re-plans of a time-budgeted run
GAN_STEP_COST = 1.5  # time of a GAN step (discriminator too) against a plain one, until timed


class TimeBudget:
    """Re-plans a run's ``steps`` so that it ends at ``deadline``.

    It times the steps of the current phase (after ``PLAN_SKIP`` untimed ones) and every
    ``PLAN_EVERY`` steps sets ``steps`` so that the run ends at the deadline, keeping the
    GAN phase's share of the run; at the deadline the run ends where it is.
    """

    def __init__(self, cfg: TrainConfig, step: int, deadline: float) -> None:
        self.deadline = deadline
        self.gan_share = min(1.0, max(0.0, 1 - cfg.gan_start / cfg.steps))  # 0: no GAN phase
        self.mark: tuple[int, float] | None = None
        self.start = step

    def after_step(self, step: int, cfg: TrainConfig) -> TrainConfig:
        """The config to go on with after ``step`` steps (``cfg`` itself when unchanged)."""
        now = time.time()
        if now >= self.deadline:
            return dataclasses.replace(cfg, steps=step, gan_start=min(cfg.gan_start, step))
        if step in (self.start + PLAN_SKIP, cfg.gan_start + PLAN_SKIP):  # a phase settles
            self.mark = (step, now)
            return cfg
        if self.mark is None or (step - self.mark[0]) % PLAN_EVERY:
            return cfg
        per_step = (now - self.mark[1]) / (step - self.mark[0])
        left = int(0.98 * (self.deadline - now) / per_step)  # plain steps that still fit
        if step >= cfg.gan_start:
            return dataclasses.replace(cfg, steps=step + left)
        # (steps - step) plain steps before the GAN phase, share * steps GAN steps after it
        total = int((step + left) / (1 + (GAN_STEP_COST - 1) * self.gan_share))
        gan_start = max(step + 1, round(total * (1 - self.gan_share)))
        return dataclasses.replace(cfg, steps=max(total, gan_start), gan_start=gan_start)
