"""The training loop: distortion + rate warm-up, then adversarial fine-tuning.

Resumable (``ckpt.pt`` holds models, discriminator, optimisers, step and RNG
state), logs JSON lines, and exports shippable fp16 weights at every checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from compressnet import bitstream, colour_layer, zoo
from compressnet.entropy import coder
from compressnet.entropy.latent_coder import latent_coder
from compressnet.image import pad_to_multiple
from compressnet.metrics import ms_ssim_similarity, psnr_of_mse
from compressnet.models.autoencoder import DOWNSAMPLING, CompressNetModel, ForwardOutput
from compressnet.models.config import preset_config
from compressnet.models.discriminator import PatchDiscriminator
from compressnet.models.io import export_weights
from compressnet.train import distributed, losses
from compressnet.train.budget import TimeBudget
from compressnet.train.data import CropDataset, find_images
from compressnet.train.export import LatentModels, latent_models_of, run_facts
from compressnet.train.grow import grow_state, grown_config

if TYPE_CHECKING:
    from compressnet.codec import Codec


@dataclass
class TrainConfig:
    data: str
    out: str = "runs/default"
    layout: str = "folder"
    val: str | None = None  # folder of held-out images; default: every 50th training file
    arch: str = "sae-spn"
    preset: str = "lite"
    crop: int = 128
    batch: int = 8
    steps: int = 20_000
    gan_start: int = 15_000  # adversarial fine-tuning from this step on
    lr: float = 5e-4
    lr_min: float = 2e-5
    warmup: int = 300
    lam: float = 300.0  # weight of MSE (images in [0, 1]) against bpp
    msssim_weight: float = 0.0  # weight of (1 - MS-SSIM), in the same units as lam * MSE
    target_bpp: float | None = None  # rate controller: rate weight x10 above it, x0.1 below (HiFiC)
    stacked_weight: float = 0.05
    switch_weight: float = 0.05
    adv_weight: float = 0.01
    fm_weight: float = 0.1
    gan_loss: str = "ns"  # "ns" (non-saturating) or "hinge"
    disc_width: int = 32
    disc_conditional: bool = False  # condition the discriminator on the latent (HiFiC)
    perceptual_backbone: str | None = None  # torchvision AlexNet/VGG16 weights for a feature loss
    perceptual_weight: float = 0.0
    min_keep: int = 2  # fewest latent channels sampled for channel truncation
    seed: int = 0
    device: str = "cpu"
    amp: bool = False  # bfloat16 autocast on GPU
    threads: int = 0
    log_every: int = 25
    ckpt_every: int = 500
    val_every: int = 1000
    preset_overrides: dict | None = None
    time_budget: float | None = None  # minutes: re-plan `steps` (same GAN fraction) to end in time
    ema: float = 0.0  # decay of a moving average of the weights, validated and exported (0: off)
    colour_layer: bool = False  # score the output after the crop's colour layer, as files show it
    init: str | None = dataclasses.field(default=None, metadata={"help": (
        "start from a bundled model (name) or a weights file: its architecture and qualities, "
        "fresh optimisers; --preset-overrides may grow it (up_blocks, res_blocks)")})
    freeze_encoder: bool = dataclasses.field(default=False, metadata={"help": (
        "with --init: train the decoder side only; the init's entropy models and file format "
        "carry over")})


def _lr(cfg: TrainConfig, step: int, start: int = 0) -> float:
    """Linear warm-up from ``start`` (where the optimisers began, or restarted after a slim
    resume: a fresh Adam must warm up again), then cosine decay to ``lr_min`` at ``steps``."""
    if step < start + cfg.warmup:
        return cfg.lr * (step - start + 1) / cfg.warmup
    end = start + cfg.warmup
    t = min(1.0, (step - end) / max(1, cfg.steps - end))
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * t))


def split_files(cfg: TrainConfig) -> tuple[list[Path], list[Path]]:
    """Training and held-out photos: ``--val``, the layout's own split, or every 50th file."""
    files = find_images(cfg.data, cfg.layout, "train")
    if cfg.val:
        return files, find_images(cfg.val, cfg.layout if cfg.val == cfg.data else "folder", "val")
    if cfg.layout != "folder":
        try:
            return files, find_images(cfg.data, cfg.layout, "val")
        except FileNotFoundError:
            pass
    val = files[::50][:8]
    return [f for f in files if f not in set(val)], val


def _truncate_log(path: Path, step: int) -> None:
    """Drop log records written after the checkpoint we resume from."""
    if path.exists():
        keep = [line for line in path.read_text().splitlines(keepends=True)
                if line.strip() and json.loads(line).get("step", 0) <= step]
        path.write_text("".join(keep))


def _pixels(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) in [0, 1] -> (H, W, 3) uint8."""
    return x[0].permute(1, 2, 0).mul(255).round().byte().cpu().numpy()


@torch.no_grad()
def validate(model: CompressNetModel, images: list[torch.Tensor], keeps: list[int],
             colour: bool = False) -> dict:
    """PSNR, MS-SSIM and rate on whole held-out images, per number of channels kept. ``bpp``
    is real file bytes: header plus the payload that the range coder writes with the model's
    tables frozen as they would be exported (format 3, or 5 with ``colour``: the colour layer
    corrects the output and its bytes count; counted tables later save about 10% more);
    ``bpp_est`` is the training's differentiable estimate of the network's own bits."""
    was_training = model.training
    model.eval()
    cfg = model.cfg
    tables = model.entropy.integer_tables()
    switch_tables = [tables[f"switch{i}"] for i in range(len(model.entropy.switch_logits))]
    latent = latent_coder(1, tables["latent"])  # the learned tables: what training optimises
    out = {}
    for keep in keeps:
        mse_sum, msssim_sum, bpp_sum, est_sum = 0.0, 0.0, 0.0, 0.0
        block = colour_layer.block_for_channels(keep, cfg.latent_channels)
        for x in images:
            h, w = x.shape[-2:]
            res = model(pad_to_multiple(x, DOWNSAMPLING), keep=keep)
            x_hat = res.x_hat[..., :h, :w].clamp(0, 1).mul(255).round() / 255
            layer = None
            if colour:
                layer = colour_layer.analyse(_pixels(x), block, colour_layer.DEFAULT_STEP)
                fixed = colour_layer.apply(_pixels(x_hat), layer)
                x_hat = torch.from_numpy(fixed).permute(2, 0, 1)[None].to(x) / 255
            mse_sum += torch.mean((x_hat - x) ** 2).item()
            msssim_sum += ms_ssim_similarity(x_hat, x).item() if min(h, w) > 32 else math.nan
            est_sum += ((res.latent_bits + res.switch_bits).sum() / (h * w)).item()
            switches = [res.encoded.switches[lv][0].cpu().numpy() for lv in cfg.switch_levels] \
                if cfg.transmits_switches else []
            payload = coder.encode(res.symbols[0, :keep].cpu().numpy(), latent, switches,
                                   switch_tables, colour=layer)
            header = bitstream.Header(zoo.CUSTOM_MODEL_ID, b"\0\0", 1, h, w,
                                      bitstream.version_for(1, colour_layer=colour))
            bpp_sum += len(bitstream.pack(header, payload)) * 8 / (h * w)
        out[f"k{keep}"] = {"psnr": psnr_of_mse(mse_sum / len(images)),
                           "ms_ssim": msssim_sum / len(images),
                           "bpp": bpp_sum / len(images), "bpp_est": est_sum / len(images)}
    model.train(was_training)
    return out


def _initial_weights(cfg: TrainConfig) -> Codec | None:
    """The codec of the model ``--init`` names (a bundled model or a weights file), or None."""
    if cfg.freeze_encoder and not cfg.init:
        raise ValueError("--freeze-encoder needs --init: a trained encoder to keep")
    if not cfg.init:
        return None
    from compressnet.codec import load  # the CLI's own name-or-path resolution

    return load(cfg.init)


def _frozen_latent_models(cfg: TrainConfig, model: CompressNetModel, start: Codec | None
                          ) -> LatentModels | None:
    """With ``--freeze-encoder``: stop the encoder, quantiser and entropy model learning and
    return the init file's latent models, which the export carries over."""
    if not cfg.freeze_encoder or start is None:
        return None
    for part in (model.encoder, model.quantizer, model.entropy):
        part.requires_grad_(False)
    return latent_models_of(start.weights_path)



class GeneratorStep(NamedTuple):
    loss: torch.Tensor
    terms: losses.GeneratorTerms
    out: ForwardOutput  # x_hat as a file would show it (after the colour layer when scored so)
    cond: torch.Tensor | None  # what the discriminator is conditioned on (None: unconditioned)


class Trainer:
    """One training run (see :func:`train`): set up or resume, then steps until ``cfg.steps``.

    Every step, learned from or skipped, ends in :meth:`end_step`: the time budget re-plans,
    and validation and checkpoints fall on their steps, the last one included.
    """

    def __init__(self, cfg: TrainConfig, resume: bool = True, progress: bool = True) -> None:
        self.ranks, self.device = distributed.setup(cfg.device)
        deadline = time.time() + 60 * cfg.time_budget if cfg.time_budget else None
        if self.device.type == "cuda":  # fixed crop size: let cuDNN pick the fastest kernels
            torch.backends.cudnn.benchmark = True
        self.cfg, self.progress = cfg, progress
        self.out_dir = Path(cfg.out)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        seed = cfg.seed + 1000 * self.ranks.rank  # same initial weights (DDP broadcasts), own crops
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(cfg.seed)
        self._build_models()
        torch.manual_seed(seed)
        self._build_optimisers()
        self.step, elapsed, self.opt_start = 0, 0.0, 0
        self.ckpt_path = self.out_dir / "ckpt.pt"
        if resume and self.ckpt_path.exists():
            elapsed = self._resume()
        if self.ranks.main:
            (self.out_dir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
        self.g_model: nn.Module = self.model
        self.d_model: nn.Module = self.disc
        if self.ranks.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.g_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
            self.d_model = nn.parallel.DistributedDataParallel(self.disc, device_ids=ids)
        self.amp = torch.autocast(device_type="cuda", dtype=torch.bfloat16) \
            if cfg.amp and self.device.type == "cuda" else contextlib.nullcontext()
        self._load_data()
        # the weights validated and exported
        self.shipped = self.model if self.ema is None else self.ema.module
        self.corrections = colour_layer.Corrections(self.model_cfg.latent_channels, self.device)
        self.log_file = (self.out_dir / "log.jsonl").open("a") if self.ranks.main \
            else open(os.devnull, "w")  # noqa: SIM115
        self.bar = tqdm(total=cfg.steps, initial=self.step, disable=not progress or not self.ranks.main,
                        desc="train", unit="step")
        self.t0 = time.time() - elapsed  # wall-clock counts across resumes
        self.loss_ema: float | None = None
        self.budget = TimeBudget(cfg, self.step, deadline) if deadline else None

    # -- set-up ----------------------------------------------------------------------------
    def _build_models(self) -> None:
        cfg = self.cfg
        self.start = _initial_weights(cfg)
        if self.start is None:
            self.model_cfg = preset_config(cfg.arch, cfg.preset, **(cfg.preset_overrides or {}))
        else:  # the file's model, grown by the overrides if any (new blocks start as the identity)
            self.model_cfg = grown_config(self.start.cfg, cfg.preset_overrides) \
                if cfg.preset_overrides else self.start.cfg
        self.model = CompressNetModel(self.model_cfg).to(self.device)
        if self.start is not None:
            self.model.load_state_dict(grow_state(self.start.model.state_dict(), self.model))
        self.latent_models = _frozen_latent_models(cfg, self.model, self.start)
        self.disc = PatchDiscriminator(
            cfg.disc_width, self.model_cfg.latent_channels if cfg.disc_conditional else 0).to(self.device)
        self.perceptual = losses.FeatureLoss(cfg.perceptual_backbone).to(self.device) \
            if cfg.perceptual_backbone and cfg.perceptual_weight else None

    def _build_optimisers(self) -> None:
        cfg, model = self.cfg, self.model
        entropy_params = [p for p in model.entropy.parameters() if p.requires_grad]
        self.other = [p for n, p in model.named_parameters()
                      if not n.startswith("entropy.") and p.requires_grad]
        self.opt_g = torch.optim.Adam([{"params": self.other}] + (
            [{"params": entropy_params, "lr_scale": 10.0}] if entropy_params else []))
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
        self.ema = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema), use_buffers=True
        ) if cfg.ema else None

    def _resume(self) -> float:
        """Load ``ckpt.pt``; returns the training seconds it had seen."""
        ckpt = torch.load(self.ckpt_path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(ckpt["model"])
        self.disc.load_state_dict(ckpt["disc"])
        self.step = self.opt_start = ckpt["step"]
        if "opt_g" in ckpt:  # a slim checkpoint (export --slim) restarts the optimisers
            self.opt_g.load_state_dict(ckpt["opt_g"])
            self.opt_d.load_state_dict(ckpt["opt_d"])
            self.opt_start = ckpt.get("opt_start", 0)
        if self.ema is not None and "ema" in ckpt:
            self.ema.module.load_state_dict(ckpt["ema"])
            self.ema.n_averaged.fill_(ckpt["ema_count"])
        if self.ranks.main:
            _truncate_log(self.out_dir / "log.jsonl", self.step)
        if self.ranks.main and "rng_torch" in ckpt:  # a slim checkpoint carries no RNG state
            torch.set_rng_state(ckpt["rng_torch"].cpu())
            np.random.set_state(ckpt["rng_numpy"])
            random.setstate(ckpt["rng_python"])
        return ckpt.get("elapsed", 0.0)

    def _load_data(self) -> None:
        cfg = self.cfg
        train_files, val_files = split_files(cfg)
        data = CropDataset(train_files, cfg.crop, samples_per_epoch=cfg.batch * 1000,
                           progress=self.progress and self.ranks.main)
        self.val_images = [torch.from_numpy(a).permute(2, 0, 1)[None].float().div(255).to(self.device)
                           for a in CropDataset(val_files, DOWNSAMPLING, progress=False).images]
        self.loader = torch.utils.data.DataLoader(data, batch_size=cfg.batch, num_workers=0)
        self.keeps = list(range(cfg.min_keep, self.model_cfg.latent_channels + 1))

    # -- one step --------------------------------------------------------------------------
    def through_colour_layer(self, x: torch.Tensor, x_hat: torch.Tensor, keep: int) -> torch.Tensor:
        """The output as a file would show it: block means moved to the crop's sent ones."""
        with torch.autocast(self.device.type, enabled=False):
            return self.corrections(x_hat.float(), x, keep)

    def generator_loss(self, x: torch.Tensor, keep: int, gan: bool) -> GeneratorStep:
        cfg = self.cfg
        with self.amp:
            out = self.g_model(x, keep=keep)
            if cfg.colour_layer:
                out = out._replace(x_hat=self.through_colour_layer(x, out.x_hat, keep))
            terms = losses.generator_terms(x, out)
            rate_weight = 1.0 if cfg.target_bpp is None else \
                (10.0 if terms.bpp.item() > cfg.target_bpp else 0.1)
            loss = (cfg.lam * terms.mse + rate_weight * terms.bpp + cfg.stacked_weight * terms.stacked
                    + cfg.switch_weight * terms.switch_ce)
            if cfg.msssim_weight:
                loss = loss + cfg.msssim_weight * losses.ms_ssim_loss(out.x_hat, x)
            if self.perceptual is not None:
                loss = loss + cfg.perceptual_weight * self.perceptual(out.x_hat, x)
            cond = out.decoded_latent if cfg.disc_conditional else None
            if gan:  # the plain module: the discriminator's own gradients are not wanted here
                fake_logits, fake_feats = self.disc(out.x_hat, cond)
                with torch.no_grad():
                    _, real_feats = self.disc(x, cond)
                loss = (loss + cfg.adv_weight * losses.generator_adversarial_loss(fake_logits)
                        + cfg.fm_weight * losses.feature_matching_loss(real_feats, fake_feats))
        return GeneratorStep(loss, terms, out, cond)

    def should_skip(self, loss: torch.Tensor) -> bool:
        """A non-finite loss, or 20 times the running mean (an outlier batch or the start of a
        blow-up): skipped on every rank."""
        blown_up = self.loss_ema is not None and self.step > 200 and loss.item() > 20 * self.loss_ema
        return distributed.any_rank(not torch.isfinite(loss).item() or blown_up, self.ranks, self.device)

    def generator_update(self, loss: torch.Tensor) -> None:
        self.loss_ema = loss.item() if self.loss_ema is None else 0.98 * self.loss_ema + 0.02 * loss.item()
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.other, 1.0)
        self.opt_g.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    def discriminator_step(self, x: torch.Tensor, g: GeneratorStep) -> torch.Tensor:
        with self.amp:  # one forward of real and fake together, as DDP wants
            cond2 = None if g.cond is None else torch.cat([g.cond, g.cond]).detach()
            logits, _ = self.d_model(torch.cat([x, g.out.x_hat.detach()]), cond2)
            real_logits, fake_logits = logits.chunk(2)
            d_loss = losses.discriminator_loss(real_logits, fake_logits, self.cfg.gan_loss)
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        return d_loss

    def train_step(self, x: torch.Tensor) -> None:
        cfg = self.cfg
        x = x.to(self.device)
        lr = _lr(cfg, self.step, self.opt_start)
        for group in self.opt_g.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        keep = random.choice(self.keeps)
        gan = self.step >= cfg.gan_start
        g = self.generator_loss(x, keep, gan)
        if self.should_skip(g.loss):
            self.write({"step": self.step, "skipped": g.loss.item()})
            self.end_step(None)  # do not learn from it, but the step counts
            return
        self.generator_update(g.loss)
        d_loss = self.discriminator_step(x, g) if gan else None
        record = {"lr": lr, "keep": keep, "loss": g.loss.item(), "mse": g.terms.mse.item(),
                  "psnr": psnr_of_mse(g.terms.mse.item()), "bpp": g.terms.bpp.item(),
                  "stacked": g.terms.stacked.item(), "switch_ce": g.terms.switch_ce.item(),
                  "switch_acc": g.terms.switch_acc}
        if d_loss is not None:
            record["d_loss"] = d_loss.item()
        self.end_step(record)

    def end_step(self, record: dict | None) -> None:
        """Count the step; re-plan, log, validate and save where due."""
        cfg = self.cfg
        self.step += 1
        self.bar.update(1)
        if self.budget is not None:
            new = distributed.same_on_all_ranks(self.budget.after_step(self.step, cfg),
                                                self.ranks, self.device)
            if new != cfg:
                self.cfg = cfg = new
                self.bar.total = cfg.steps
                self.write({"step": self.step, "planned_steps": cfg.steps, "gan_start": cfg.gan_start})
        if record is not None and self.step % cfg.log_every == 0:
            self.write({"step": self.step, "time": round(time.time() - self.t0, 1), **record})
            self.bar.set_postfix(loss=f"{record['loss']:.3f}", psnr=f"{record['psnr']:.2f}",
                                 bpp=f"{record['bpp']:.3f}")
        last = self.step == cfg.steps
        if self.ranks.main and (self.step % cfg.val_every == 0 or last):
            self.validate()
        if self.ranks.main and (self.step % cfg.ckpt_every == 0 or last):
            self.checkpoint()

    # -- validation and checkpoints ----------------------------------------------------------
    def write(self, record: dict) -> None:
        self.log_file.write(json.dumps(record) + "\n")
        self.log_file.flush()

    def validate(self) -> None:
        channels = self.model_cfg.latent_channels
        keeps = sorted(k for k in {self.cfg.min_keep, 4, 8, channels} if k <= channels)
        val = validate(self.shipped, self.val_images, keeps, colour=self.cfg.colour_layer)
        self.write({"step": self.step, "val": val})
        if self.progress:
            self.bar.write(f"step {self.step} held-out: " + ", ".join(
                f"{k[1:]} ch {v['psnr']:.2f} dB {v['ms_ssim']:.4f} {v['bpp']:.4f} bpp"
                for k, v in val.items()))

    def checkpoint(self) -> None:
        """``ckpt.pt`` (the previous one kept as ``ckpt.prev.pt``) and ``model.safetensors``."""
        tmp = self.ckpt_path.with_suffix(".tmp")
        state = {"model": self.model.state_dict(), "disc": self.disc.state_dict(),
                 "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "step": self.step,
                 "opt_start": self.opt_start, "rng_torch": torch.get_rng_state(),
                 "rng_numpy": np.random.get_state(), "rng_python": random.getstate(),
                 "train_config": dataclasses.asdict(self.cfg), "model_config": self.model_cfg.to_json(),
                 "elapsed": time.time() - self.t0}
        if self.ema is not None:
            state.update(ema=self.ema.module.state_dict(), ema_count=int(self.ema.n_averaged))
        torch.save(state, tmp)
        if self.ckpt_path.exists():  # keep the previous checkpoint: a late divergence can be undone
            self.ckpt_path.replace(self.ckpt_path.with_name("ckpt.prev.pt"))
        tmp.replace(self.ckpt_path)
        init = self.start.weights_path if self.start is not None else None
        models = self.latent_models
        export_weights(self.shipped, self.out_dir / "model.safetensors",
                       latent_models=models.arrays if models else None,
                       extra=(models.meta if models else {})
                       | run_facts(self.step, time.time() - self.t0, init)
                       | ({"init": self.cfg.init} if self.cfg.init else {}))

    # -- the run ---------------------------------------------------------------------------
    def run(self) -> Path:
        """Train to ``cfg.steps`` (re-planned under a time budget); the exported weights."""
        self.model.train()
        if self.ranks.main and self.start is not None and self.step == 0:
            self.validate()  # where a run from --init starts: its gains are measured from here
        while self.step < self.cfg.steps:
            for x in self.loader:
                if self.step >= self.cfg.steps:
                    break
                self.train_step(x)
        self.bar.close()
        final = distributed.finish(self.model, self.ranks)  # every rank must end the same
        if final is not None:
            self.write({"step": self.step, **final})
        self.log_file.close()
        return self.out_dir / "model.safetensors"


def train(cfg: TrainConfig, resume: bool = True, progress: bool = True) -> Path:
    """Train and return the path of the exported weights (``OUT/model.safetensors``).

    Under ``torchrun --nproc_per_node N`` it runs data-parallel (DDP): every rank
    draws its own crops, gradients are averaged, rank 0 logs and saves.
    """
    return Trainer(cfg, resume, progress).run()
