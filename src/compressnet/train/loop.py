"""The training loop: distortion + rate warm-up, then adversarial fine-tuning.

Resumable (``ckpt.pt`` holds models, discriminator, optimisers, step and RNG
state), logs JSON lines, and exports shippable fp16 weights at every checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
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
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from compressnet import bitstream, colour_layer, zoo
from compressnet.entropy import coder
from compressnet.image import pad_to_multiple
from compressnet.models.autoencoder import DOWNSAMPLING, CompressNetModel
from compressnet.models.config import preset_config
from compressnet.models.discriminator import PatchDiscriminator
from compressnet.models.io import export_weights
from compressnet.train import losses
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


PLAN_SKIP = 20  # first steps of a phase are not timed (cuDNN autotuning, warm caches)
PLAN_EVERY = 100  # steps between re-plans of a time-budgeted run
GAN_STEP_COST = 1.5  # time of a GAN step (discriminator too) against a plain one, until timed


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
    out = {}
    for keep in keeps:
        mse_sum, msssim_sum, bpp_sum, est_sum = 0.0, 0.0, 0.0, 0.0
        block = colour_layer.block_for_share(keep / cfg.latent_channels)
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
            msssim_sum += losses.ms_ssim_loss(x_hat, x).item() if min(h, w) > 32 else math.nan
            est_sum += ((res.latent_bits + res.switch_bits).sum() / (h * w)).item()
            switches = [res.encoded.switches[lv][0].cpu().numpy() for lv in cfg.switch_levels] \
                if cfg.transmits_switches else []
            payload = coder.encode(res.symbols[0, :keep].cpu().numpy(), tables["latent"][:keep],
                                   switches, switch_tables, colour=layer)
            header = bitstream.Header(zoo.CUSTOM_MODEL_ID, b"\0\0", 1, h, w,
                                      bitstream.version_for(1, colour_layer=colour))
            bpp_sum += len(bitstream.pack(header, payload)) * 8 / (h * w)
        out[f"k{keep}"] = {"psnr": losses.psnr(mse_sum / len(images)),
                           "ms_ssim": msssim_sum / len(images),
                           "bpp": bpp_sum / len(images), "bpp_est": est_sum / len(images)}
    model.train(was_training)
    return out


class _Planner:
    """Fits a run into a wall-clock budget (``--time-budget``).

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


class _Dist(NamedTuple):
    rank: int
    world: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_distributed(cfg: TrainConfig) -> tuple[_Dist, torch.device]:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; gloo on CPU, nccl on GPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return _Dist(0, 1), torch.device(cfg.device)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cfg.device.startswith("cuda"):
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return _Dist(dist.get_rank(), dist.get_world_size()), device


def _any_rank(flag: bool, ddp: _Dist, device: torch.device) -> bool:
    if ddp.world == 1:
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _same_on_all_ranks(cfg: TrainConfig, ddp: _Dist, device: torch.device) -> TrainConfig:
    """Rank 0's plan for everyone: ranks time their steps differently."""
    if ddp.world == 1:
        return cfg
    t = torch.tensor([cfg.steps, cfg.gan_start], device=device)
    dist.broadcast(t, 0)
    return dataclasses.replace(cfg, steps=int(t[0]), gan_start=int(t[1]))


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


def _parameter_digest(module: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def train(cfg: TrainConfig, resume: bool = True, progress: bool = True) -> Path:
    """Train and return the path of the exported weights (``OUT/model.safetensors``).

    Under ``torchrun --nproc_per_node N`` it runs data-parallel (DDP): every rank
    draws its own crops, gradients are averaged, rank 0 logs and saves.
    """
    ddp, device = _setup_distributed(cfg)
    deadline = time.time() + 60 * cfg.time_budget if cfg.time_budget else None
    if device.type == "cuda":  # fixed crop size: let cuDNN pick the fastest kernels
        torch.backends.cudnn.benchmark = True
    out_dir = Path(cfg.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed = cfg.seed + 1000 * ddp.rank  # same initial weights (broadcast by DDP), different crops
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(cfg.seed)

    start = _initial_weights(cfg)
    if start is None:
        model_cfg = preset_config(cfg.arch, cfg.preset, **(cfg.preset_overrides or {}))
    else:  # the file's model, grown by the overrides if any (new blocks start as the identity)
        model_cfg = grown_config(start.cfg, cfg.preset_overrides) if cfg.preset_overrides else start.cfg
    model = CompressNetModel(model_cfg).to(device)
    if start is not None:
        model.load_state_dict(grow_state(start.model.state_dict(), model))
    latent_models = _frozen_latent_models(cfg, model, start)
    disc = PatchDiscriminator(cfg.disc_width,
                              model_cfg.latent_channels if cfg.disc_conditional else 0).to(device)
    perceptual = losses.FeatureLoss(cfg.perceptual_backbone).to(device) \
        if cfg.perceptual_backbone and cfg.perceptual_weight else None
    torch.manual_seed(seed)
    entropy_params = [p for p in model.entropy.parameters() if p.requires_grad]
    other = [p for n, p in model.named_parameters() if not n.startswith("entropy.") and p.requires_grad]
    opt_g = torch.optim.Adam([{"params": other}] + (
        [{"params": entropy_params, "lr_scale": 10.0}] if entropy_params else []))
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    ema = torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema), use_buffers=True
    ) if cfg.ema else None
    step, elapsed, opt_start = 0, 0.0, 0
    ckpt_path = out_dir / "ckpt.pt"
    if resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        disc.load_state_dict(ckpt["disc"])
        step = ckpt["step"]
        opt_start = step
        if "opt_g" in ckpt:  # a slim checkpoint (export --slim) restarts the optimisers
            opt_g.load_state_dict(ckpt["opt_g"])
            opt_d.load_state_dict(ckpt["opt_d"])
            opt_start = ckpt.get("opt_start", 0)
        if ema is not None and "ema" in ckpt:
            ema.module.load_state_dict(ckpt["ema"])
            ema.n_averaged.fill_(ckpt["ema_count"])
        elapsed = ckpt.get("elapsed", 0.0)
        if ddp.main:
            _truncate_log(out_dir / "log.jsonl", step)
        if ddp.main and "rng_torch" in ckpt:  # a slim checkpoint carries no RNG state
            torch.set_rng_state(ckpt["rng_torch"].cpu())
            np.random.set_state(ckpt["rng_numpy"])
            random.setstate(ckpt["rng_python"])
    if ddp.main:
        (out_dir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
    g_model: nn.Module = model
    d_model: nn.Module = disc
    if ddp.world > 1:
        ids = [device.index] if device.type == "cuda" else None
        g_model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        d_model = nn.parallel.DistributedDataParallel(disc, device_ids=ids)
    amp = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if cfg.amp and device.type == "cuda" \
        else contextlib.nullcontext()

    train_files, val_files = split_files(cfg)
    data = CropDataset(train_files, cfg.crop, samples_per_epoch=cfg.batch * 1000,
                       progress=progress and ddp.main)
    val_images = [torch.from_numpy(a).permute(2, 0, 1)[None].float().div(255).to(device)
                  for a in CropDataset(val_files, DOWNSAMPLING, progress=False).images]
    loader = torch.utils.data.DataLoader(data, batch_size=cfg.batch, num_workers=0)
    keeps = list(range(cfg.min_keep, model_cfg.latent_channels + 1))

    shipped = model if ema is None else ema.module  # the weights validated and exported
    corrections: dict[int, colour_layer.SoftCorrection] = {}  # per block size (crops are fixed)

    def through_colour_layer(x: torch.Tensor, x_hat: torch.Tensor, keep: int) -> torch.Tensor:
        """The output as a file would show it: block means moved to the crop's sent ones."""
        block = colour_layer.block_for_share(keep / model_cfg.latent_channels)
        if block not in corrections:
            corrections[block] = colour_layer.SoftCorrection(*x.shape[-2:], block, device)
        soft = corrections[block]
        with torch.autocast(device.type, enabled=False):
            return soft(x_hat.float(), soft.sent_means(x))

    def save() -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        state = {"model": model.state_dict(), "disc": disc.state_dict(),
                 "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "step": step,
                 "opt_start": opt_start, "rng_torch": torch.get_rng_state(),
                 "rng_numpy": np.random.get_state(), "rng_python": random.getstate(),
                 "train_config": dataclasses.asdict(cfg), "model_config": model_cfg.to_json(),
                 "elapsed": time.time() - t0}
        if ema is not None:
            state.update(ema=ema.module.state_dict(), ema_count=int(ema.n_averaged))
        torch.save(state, tmp)
        if ckpt_path.exists():  # keep the previous checkpoint: a late divergence can be undone
            ckpt_path.replace(ckpt_path.with_name("ckpt.prev.pt"))
        tmp.replace(ckpt_path)
        init = start.weights_path if start is not None else None
        export_weights(shipped, out_dir / "model.safetensors",
                       latent_models=latent_models.arrays if latent_models else None,
                       extra=(latent_models.meta if latent_models else {})
                       | run_facts(step, time.time() - t0, init)
                       | ({"init": cfg.init} if cfg.init else {}))

    log = (out_dir / "log.jsonl").open("a") if ddp.main else open(os.devnull, "w")  # noqa: SIM115
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress or not ddp.main, desc="train",
               unit="step")
    model.train()
    t0 = time.time() - elapsed  # wall-clock counts across resumes
    loss_ema: float | None = None
    plan = _Planner(cfg, step, deadline) if deadline else None

    def validate_and_log() -> None:
        val = validate(shipped, val_images, sorted(
            k for k in {cfg.min_keep, 4, 8, model_cfg.latent_channels}
            if k <= model_cfg.latent_channels), colour=cfg.colour_layer)
        log.write(json.dumps({"step": step, "val": val}) + "\n")
        log.flush()
        if progress:
            bar.write(f"step {step} held-out: " + ", ".join(
                f"{k[1:]} ch {v['psnr']:.2f} dB {v['ms_ssim']:.4f} {v['bpp']:.4f} bpp"
                for k, v in val.items()))

    if ddp.main and start is not None and step == 0:
        validate_and_log()  # where a run from --init starts: its gains are measured from here
    while step < cfg.steps:
        for x in loader:
            if step >= cfg.steps:
                break
            x = x.to(device)
            lr = _lr(cfg, step, opt_start)
            for group in opt_g.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            keep = random.choice(keeps)
            gan = step >= cfg.gan_start
            with amp:
                out = g_model(x, keep=keep)
                if cfg.colour_layer:
                    out = out._replace(x_hat=through_colour_layer(x, out.x_hat, keep))
                terms = losses.generator_terms(x, out)
                rate_weight = 1.0 if cfg.target_bpp is None else \
                    (10.0 if terms.bpp.item() > cfg.target_bpp else 0.1)
                loss = (cfg.lam * terms.mse + rate_weight * terms.bpp + cfg.stacked_weight * terms.stacked
                        + cfg.switch_weight * terms.switch_ce)
                if cfg.msssim_weight:
                    loss = loss + cfg.msssim_weight * (1 - losses.ms_ssim_loss(out.x_hat, x))
                if perceptual is not None:
                    loss = loss + cfg.perceptual_weight * perceptual(out.x_hat, x)
                cond = out.decoded_latent if cfg.disc_conditional else None
                if gan:  # the plain module: the discriminator's own gradients are not wanted here
                    fake_logits, fake_feats = disc(out.x_hat, cond)
                    with torch.no_grad():
                        _, real_feats = disc(x, cond)
                    loss = (loss + cfg.adv_weight * losses.generator_adversarial_loss(fake_logits)
                            + cfg.fm_weight * losses.feature_matching_loss(real_feats, fake_feats))
            blown_up = loss_ema is not None and step > 200 and loss.item() > 20 * loss_ema
            if _any_rank(not torch.isfinite(loss).item() or blown_up, ddp, device):
                log.write(json.dumps({"step": step, "skipped": loss.item()}) + "\n")
                step += 1  # an outlier batch or the start of a blow-up: do not learn from it
                bar.update(1)
                continue
            loss_ema = loss.item() if loss_ema is None else 0.98 * loss_ema + 0.02 * loss.item()
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(other, 1.0)
            opt_g.step()
            if ema is not None:
                ema.update_parameters(model)
            d_loss = None
            if gan:
                with amp:  # one forward of real and fake together, as DDP wants
                    cond2 = None if cond is None else torch.cat([cond, cond]).detach()
                    logits, _ = d_model(torch.cat([x, out.x_hat.detach()]), cond2)
                    real_logits, fake_logits = logits.chunk(2)
                    d_loss = losses.discriminator_loss(real_logits, fake_logits, cfg.gan_loss)
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
            step += 1
            bar.update(1)
            if plan is not None:
                new = _same_on_all_ranks(plan.after_step(step, cfg), ddp, device)
                if new != cfg:
                    cfg = new
                    bar.total = cfg.steps
                    log.write(json.dumps({"step": step, "planned_steps": cfg.steps,
                                          "gan_start": cfg.gan_start}) + "\n")
            if step % cfg.log_every == 0:
                rec = {"step": step, "time": round(time.time() - t0, 1), "lr": lr, "keep": keep,
                       "loss": loss.item(), "mse": terms.mse.item(),
                       "psnr": losses.psnr(terms.mse.item()), "bpp": terms.bpp.item(),
                       "stacked": terms.stacked.item(), "switch_ce": terms.switch_ce.item(),
                       "switch_acc": terms.switch_acc}
                if d_loss is not None:
                    rec["d_loss"] = d_loss.item()
                log.write(json.dumps(rec) + "\n")
                log.flush()
                bar.set_postfix(loss=f"{rec['loss']:.3f}", psnr=f"{rec['psnr']:.2f}",
                                bpp=f"{rec['bpp']:.3f}")
            if ddp.main and (step % cfg.val_every == 0 or step == cfg.steps):
                validate_and_log()
            if ddp.main and (step % cfg.ckpt_every == 0 or step == cfg.steps):
                save()
    bar.close()
    if ddp.world > 1:  # the point of DDP: every rank must end with the same weights
        digests = [None] * ddp.world
        dist.all_gather_object(digests, _parameter_digest(model))
        log.write(json.dumps({"step": step, "ranks": ddp.world,
                              "ranks_identical": len(set(digests)) == 1}) + "\n")
        dist.barrier()
        dist.destroy_process_group()
    log.close()
    return out_dir / "model.safetensors"
