"""The training loop on tiny data: it runs, resumes, and its weights compress."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import photo
from PIL import Image

from compressnet import bitstream
from compressnet.codec import load
from compressnet.metrics import psnr
from compressnet.train.data import find_images
from compressnet.train.loop import TrainConfig, train


@pytest.fixture()
def photo_folder(tmp_path):
    folder = tmp_path / "photos" / "nested"
    folder.mkdir(parents=True)
    for i in range(5):
        Image.fromarray(photo(40 + 8 * i, 56, seed=i)).save(folder / f"{i}.png")
    (folder / "notes.txt").write_text("not an image")
    return tmp_path / "photos"


def _cfg(data, out, steps, **kw):
    options = dict(preset="tiny", crop=32, batch=2, gan_start=2, warmup=1, log_every=1,
                   ckpt_every=2, val_every=2) | kw
    return TrainConfig(data=str(data), out=str(out), steps=steps, **options)


def test_train_resume_and_compress(photo_folder, tmp_path):
    out = tmp_path / "run"
    weights = train(_cfg(photo_folder, out, 3), progress=False)
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps[-1] == 3
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any("d_loss" in r for r in records)  # the adversarial phase ran
    assert any("val" in r for r in records)
    train(_cfg(photo_folder, out, 5), progress=False)
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()
             if "loss" in line]
    assert steps == [1, 2, 3, 4, 5]  # resumed at step 4, not from scratch
    codec = load(str(weights))
    img = photo(24, 40)
    assert codec.decompress_array(codec.compress(img, quality=1)).shape == img.shape


def test_a_skipped_last_batch_still_validates_and_saves(photo_folder, tmp_path, monkeypatch):
    """A batch skipped on the last step (a non-finite loss) ends the run like any other step:
    the final validation runs and the exported weights are the last step's, not an older save."""
    from safetensors import safe_open

    from compressnet.train import loop

    steps = 3
    real = loop.Trainer.should_skip
    monkeypatch.setattr(loop.Trainer, "should_skip",
                        lambda self, loss: self.step == steps - 1 or real(self, loss))
    out = tmp_path / "skip"
    weights = train(_cfg(photo_folder, out, steps, ckpt_every=2, val_every=100), progress=False)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "skipped" in r] == [steps - 1]  # logged before counting
    assert [r["step"] for r in records if "val" in r] == [steps]
    with safe_open(str(weights), framework="numpy") as f:
        assert f.metadata()["steps"] == str(steps)
    import torch

    assert torch.load(out / "ckpt.pt", weights_only=False)["step"] == steps


def test_layouts(tmp_path):
    for sub in ("leftImg8bit/train/aachen", "leftImg8bit/val/bonn"):
        (tmp_path / "cs" / sub).mkdir(parents=True)
        Image.fromarray(photo(8, 8)).save(tmp_path / "cs" / sub / "a_leftImg8bit.png")
    assert [p.parent.name for p in find_images(tmp_path / "cs", "cityscapes", "train")] == ["aachen"]
    assert [p.parent.name for p in find_images(tmp_path / "cs", "cityscapes", "val")] == ["bonn"]
    (tmp_path / "clic" / "professional_train" / "train").mkdir(parents=True)
    Image.fromarray(photo(8, 8)).save(tmp_path / "clic" / "professional_train" / "train" / "x.png")
    assert len(find_images(tmp_path / "clic", "clic", "train")) == 1
    with pytest.raises(FileNotFoundError):
        find_images(tmp_path / "clic", "clic", "val")


def test_torchrun_two_cpu_ranks_end_with_identical_weights(photo_folder, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "compressnet.train", str(photo_folder), "--out", str(out), "--preset", "tiny",
           "--crop", "32", "--batch", "2", "--steps", "4", "--gan-start", "2", "--warmup", "1",
           "--log-every", "1", "--val-every", "4", "--ckpt-every", "4", "--threads", "1",
           "--no-progress"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    final = [r for r in records if "ranks_identical" in r]
    assert final == [{"step": 4, "ranks": 2, "ranks_identical": True}]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]  # rank 0 alone logs
    assert load(str(out / "model.safetensors")).qualities == range(1, 3)


def test_every_loss_option_trains(photo_folder, tmp_path):
    import torch

    from compressnet.perceptual import alexnet_features

    torch.manual_seed(0)
    backbone = tmp_path / "alexnet.pth"
    torch.save({f"features.{k}": v for k, v in alexnet_features().state_dict().items()}, backbone)
    cfg = _cfg(photo_folder, tmp_path / "all", 3, msssim_weight=1.0, gan_loss="hinge",
               disc_conditional=True, perceptual_backbone=str(backbone), perceptual_weight=0.5,
               target_bpp=0.01)
    cfg.gan_start = 1
    cfg.crop = 64  # AlexNet and 4-scale MS-SSIM want a little room
    train(cfg, progress=False)
    records = [json.loads(line) for line in (tmp_path / "all" / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert all("d_loss" in r for r in records if "loss" in r and r["step"] > 1)


def test_ms_ssim_loss_and_hinge():
    import torch

    from compressnet.train import losses

    x = torch.rand(2, 3, 128, 128)
    assert losses.ms_ssim_loss(x, x).item() == pytest.approx(0.0, abs=1e-5)
    assert losses.ms_ssim_loss(x.flip(-1), x).item() > 0.5
    real, fake = torch.full((4,), 2.0), torch.full((4,), -2.0)
    assert losses.discriminator_loss(real, fake, "hinge").item() == 0.0
    with pytest.raises(ValueError):
        losses.discriminator_loss(real, fake, "wgan")


def test_config_file_with_command_line_override(tmp_path):
    import argparse

    from compressnet.train.cli import add_arguments, config_from_args

    conf = tmp_path / "c.json"
    conf.write_text(json.dumps({"data": "elsewhere", "steps": 77, "lr": 0.123, "arch": "swwae"}))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    argv = ["photos", "--config", str(conf), "--lr", "0.5"]
    cfg = config_from_args(parser.parse_args(argv), argv)
    assert (cfg.data, cfg.steps, cfg.lr, cfg.arch) == ("photos", 77, 0.5, "swwae")
    conf.write_text(json.dumps({"stepz": 1}))
    with pytest.raises(ValueError, match="unknown options"):
        config_from_args(parser.parse_args(argv), argv)


def test_time_budget_plans_steps_and_keeps_gan_share(monkeypatch):
    """With 0.1 s plain steps and 0.15 s GAN steps, a 100 s budget fits about 870 steps."""
    from compressnet.train import budget

    clock = [0.0]
    monkeypatch.setattr(budget.time, "time", lambda: clock[0])
    cfg = TrainConfig(data="-", steps=10_000, gan_start=7_000)  # the GAN phase: 30%
    plan = budget.TimeBudget(cfg, 0, deadline=100.0)
    step = 0
    while step < cfg.steps:
        clock[0] += 0.15 if step >= cfg.gan_start else 0.1
        step += 1
        cfg = plan.after_step(step, cfg)
    assert clock[0] <= 100.0 + 0.15
    assert 800 <= step <= 900  # (step + left) / (1 + 0.5 * 0.3): about 870
    assert abs(cfg.gan_start / step - 0.7) < 0.05

    clock[0] = 0.0  # a run with no GAN phase (gan_start beyond steps) fills the budget too
    cfg = TrainConfig(data="-", steps=10_000, gan_start=100_000)
    plan = budget.TimeBudget(cfg, 0, deadline=100.0)
    step = 0
    while step < cfg.steps:
        clock[0] += 0.1
        step += 1
        cfg = plan.after_step(step, cfg)
    assert 950 <= step <= 1000 and cfg.gan_start >= step


def test_slim_checkpoint_resumes_and_exports(photo_folder, tmp_path):
    from compressnet.train.export import main as export_main

    out = tmp_path / "run"
    train(_cfg(photo_folder, out, 2), progress=False)
    slim = tmp_path / "slim.pt"
    assert export_main([str(out / "ckpt.pt"), "--slim", str(slim)]) == 0
    assert slim.stat().st_size < (out / "ckpt.pt").stat().st_size / 2
    moved = tmp_path / "moved"
    moved.mkdir()
    slim.rename(moved / "ckpt.pt")
    train(_cfg(photo_folder, moved, 3), progress=False)  # restarts the optimisers, keeps the step
    steps = [json.loads(line)["step"] for line in (moved / "log.jsonl").read_text().splitlines()]
    assert steps and min(steps) == 3


def test_grown_model_decodes_as_before_and_trains_on(photo_folder, tmp_path):
    import torch

    from compressnet.train.export import model_from_checkpoint
    from compressnet.train.grow import grow_checkpoint

    out = tmp_path / "run"
    train(_cfg(photo_folder, out, 2), progress=False)
    moved = tmp_path / "grown"
    moved.mkdir()
    added = grow_checkpoint(out / "ckpt.pt", moved / "ckpt.pt", {"up_blocks": [1, 0, 2, 0]})
    assert len(added) == 3 * 6 and all(".blocks." in name for name in added)
    old, new = model_from_checkpoint(out / "ckpt.pt"), model_from_checkpoint(moved / "ckpt.pt")
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():  # new blocks start as the identity (to fp16 rounding of the copy)
        torch.testing.assert_close(new(x).x_hat, old(x).x_hat, atol=2e-3, rtol=0)
    train(_cfg(photo_folder, moved, 3, preset_overrides={"up_blocks": [1, 0, 2, 0]}), progress=False)
    steps = [json.loads(line)["step"] for line in (moved / "log.jsonl").read_text().splitlines()]
    assert steps and min(steps) == 3
    with pytest.raises(ValueError, match="only"):
        grow_checkpoint(out / "ckpt.pt", tmp_path / "x.pt", {"latent_channels": 8})
    with pytest.raises(ValueError, match="lacks"):  # shrinking would drop trained blocks
        grow_checkpoint(moved / "ckpt.pt", tmp_path / "x.pt", {"up_blocks": [0, 0, 0, 0]})


def test_learning_rate_warms_up_again_after_the_optimisers_restart():
    from compressnet.train.loop import _lr

    cfg = TrainConfig(data="-", steps=1000, warmup=100, lr=1e-3, lr_min=1e-5)
    assert _lr(cfg, 0) == pytest.approx(1e-5)
    assert _lr(cfg, 99) == pytest.approx(1e-3)
    assert _lr(cfg, 600, start=600) == pytest.approx(1e-5)  # a slim resume at step 600
    assert _lr(cfg, 699, start=600) == pytest.approx(1e-3)
    assert _lr(cfg, 1000, start=600) == pytest.approx(1e-5)


def test_moving_average_is_exported_and_survives_resume(photo_folder, tmp_path):
    import torch
    from safetensors.torch import load_file

    from compressnet.train.export import model_from_checkpoint

    out = tmp_path / "run"
    train(_cfg(photo_folder, out, 4, ema=0.5, gan_start=100), progress=False)
    ckpt = torch.load(out / "ckpt.pt", weights_only=False)
    assert ckpt["ema_count"] == 4
    name = "decoder.to_rgb.weight"
    assert not torch.equal(ckpt["ema"][name], ckpt["model"][name])
    shipped = load_file(out / "model.safetensors")
    assert torch.allclose(shipped[name].float(), ckpt["ema"][name], atol=1e-3)
    exported = model_from_checkpoint(out / "ckpt.pt").state_dict()
    assert torch.equal(exported[name], ckpt["ema"][name])
    train(_cfg(photo_folder, out, 6, ema=0.5, gan_start=100), progress=False)
    assert torch.load(out / "ckpt.pt", weights_only=False)["ema_count"] == 6  # not restarted


@pytest.mark.parametrize(("arch", "colour"), [("sae-spn", False), ("swwae", False), ("sae-spn", True)])
def test_validation_counts_the_bytes_the_codec_writes(weights_dir, arch, colour):
    """Held-out validation reports real file sizes: those of the codec's own files, with the
    colour layer when training scores through it."""
    import torch
    from conftest import make_weights

    from compressnet.models.io import load_weights
    from compressnet.train.loop import validate

    loaded = load_weights(make_weights(weights_dir, arch, seed=11))
    codec = load(str(make_weights(weights_dir, arch, seed=11)))
    image = photo(48, 80, seed=12)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    keeps = list(loaded.model.cfg.qualities)
    val = validate(loaded.model, [x], keeps, colour=colour)
    for quality, keep in enumerate(keeps, start=1):
        encoded = codec.encode(image, quality, colour=colour)
        assert val[f"k{keep}"]["bpp"] == encoded.bpp
        # the float network against the codec's exact decoder: the same picture to a rounding
        decoded = codec.decompress_array(encoded.data)
        assert val[f"k{keep}"]["psnr"] == pytest.approx(psnr(image, decoded), abs=0.05)
        assert 0 < val[f"k{keep}"]["ms_ssim"] <= 1


def test_colour_layer_in_the_loop_scores_the_corrected_output(photo_folder, tmp_path):
    """With ``colour_layer`` the loss sees the output after the crop's block means are put
    back: an untrained network's colours are off, so its first error is smaller."""
    first = {}
    for colour in (False, True):
        out = tmp_path / f"colour-{colour}"
        train(_cfg(photo_folder, out, 2, colour_layer=colour, gan_start=100, val_every=2), progress=False)
        records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        first[colour] = next(r for r in records if "mse" in r)
        val = next(r["val"] for r in records if "val" in r)
        first[colour]["val_bpp"] = min(v["bpp"] for v in val.values())
    assert first[True]["mse"] < 0.9 * first[False]["mse"]
    assert first[True]["val_bpp"] > first[False]["val_bpp"]  # the layer's bytes are counted


def test_decoder_fine_tunes_behind_a_frozen_encoder(photo_folder, tmp_path, spn_weights):
    """``--init W --freeze-encoder``: the encoder and latent models are W's, byte for byte (so
    W's counted tables and context network still fit the symbols and the file format is W's),
    while the decoder learns."""
    from safetensors.numpy import load_file

    out = tmp_path / "fine"
    weights = train(_cfg(photo_folder, out, 2, init=str(spn_weights), freeze_encoder=True,
                         lr=1e-3), progress=False)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val" in r] == [0, 2]  # the start is measured too
    before, after = load_file(str(spn_weights)), load_file(str(weights))
    assert set(before) == set(after)
    kept = [k for k in before if k.startswith(("encoder.", "tables.", "context_net."))]
    assert any(k.startswith("context_net.") for k in kept)
    for name in kept:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    decoder = [k for k in before if k.startswith("decoder.")]
    assert any(not np.array_equal(after[k], before[k]) for k in decoder)
    original, tuned = load(str(spn_weights)), load(str(weights))
    assert tuned.version_written() == original.version_written()
    img = photo(32, 48, seed=4)
    data = tuned.compress(img, quality=1)
    header, payload = bitstream.unpack(data)
    original_header, original_payload = bitstream.unpack(original.compress(img, quality=1))
    assert payload == original_payload  # the same symbols, coded under the same models
    assert header.fingerprint != original_header.fingerprint  # but only the new decoder reads it
    assert tuned.decompress_array(data).shape == img.shape


def test_export_carries_the_latent_models_of_the_same_encoder(photo_folder, tmp_path, spn_weights,
                                                            capsys):
    """A frozen-encoder run's checkpoint exports with its init's latent models and their fit's
    description, and its steps add to the init's; ``--latent-models`` takes those of a refit of
    the same encoder's symbols (how 0.7.0 shipped a GPU-fitted context network), and refuses
    those fitted on another encoder."""
    from conftest import make_weights
    from safetensors.numpy import load_file

    from compressnet.train.export import main as export_main
    from compressnet.train.export import weights_file_meta
    from compressnet.train.fit_entropy import add_latent_models

    out = tmp_path / "fine"
    train(_cfg(photo_folder, out, 2, init=str(spn_weights), freeze_encoder=True), progress=False)
    slim = tmp_path / "slim.pt"
    assert export_main([str(out / "ckpt.pt"), "--slim", str(slim)]) == 0
    exported = tmp_path / "exported.safetensors"
    assert export_main([str(slim), "-o", str(exported)]) == 0
    init_meta, meta = weights_file_meta(spn_weights), weights_file_meta(exported)
    assert meta["context_net"] == init_meta["context_net"]
    assert int(meta["steps"]) == int(init_meta.get("steps", 0)) + 2
    before, after = load_file(str(spn_weights)), load_file(str(exported))
    for name in (k for k in before if k.startswith(("tables.", "context_net."))):
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)

    refit = tmp_path / "refit.safetensors"
    add_latent_models(spn_weights, find_images(photo_folder)[:2], refit, net_steps=5, progress=False)
    with_refit = tmp_path / "with-refit.safetensors"
    assert export_main([str(slim), "--latent-models", str(refit), "-o", str(with_refit)]) == 0
    fitted, shipped = load_file(str(refit)), load_file(str(with_refit))
    assert weights_file_meta(with_refit)["context_net"] == weights_file_meta(refit)["context_net"]
    for name in (k for k in fitted if k.startswith("context_net.")):
        np.testing.assert_array_equal(shipped[name], fitted[name], err_msg=name)
    assert load(str(with_refit)).decompress_array(load(str(with_refit)).compress(
        photo(32, 48, seed=4), quality=1)).shape == (32, 48, 3)

    capsys.readouterr()
    other = make_weights(tmp_path, "sae-spn", seed=31)
    refused = tmp_path / "refused.safetensors"
    assert export_main([str(slim), "--latent-models", str(other), "-o", str(refused)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another encoder" in err[0]
    assert not refused.exists()


def test_init_takes_the_files_architecture(photo_folder, tmp_path, weights_dir):
    """A run from ``--init`` trains the file's model whatever ``--arch`` says, and its
    checkpoint exports as that model."""
    from conftest import make_weights

    from compressnet.train.export import model_from_checkpoint

    start = make_weights(weights_dir, "swwae", seed=8)
    out = tmp_path / "from-swwae"
    weights = train(_cfg(photo_folder, out, 2, init=str(start)), progress=False)
    assert load(str(weights)).cfg.arch == "swwae"
    assert model_from_checkpoint(out / "ckpt.pt").cfg == load(str(start)).cfg


def test_freezing_needs_a_trained_encoder(photo_folder, tmp_path):
    with pytest.raises(ValueError, match="--init"):
        train(_cfg(photo_folder, tmp_path / "x", 1, freeze_encoder=True), progress=False)


def test_init_grows_the_files_decoder_behind_its_frozen_encoder(photo_folder, tmp_path, spn_weights):
    """``--init W --preset-overrides '{"up_blocks": ...}'``: W's model with new decoder blocks
    (the identity at first, so step 0 validates as W does), W's encoder and latent models kept
    byte for byte; any other override is refused, since it could not start from W."""
    from safetensors.numpy import load_file

    out = tmp_path / "grown"
    weights = train(_cfg(photo_folder, out, 2, init=str(spn_weights), freeze_encoder=True,
                         preset_overrides={"up_blocks": [0, 1, 0, 0]}), progress=False)
    grown = load(str(weights))
    assert grown.cfg.up_blocks == (0, 1, 0, 0)
    assert grown.cfg.res_blocks == load(str(spn_weights)).cfg.res_blocks
    before, after = load_file(str(spn_weights)), load_file(str(weights))
    assert any(k.startswith("decoder.ups.1.blocks.0.") for k in after)
    for name in (k for k in before if k.startswith(("encoder.", "tables.", "context_net."))):
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    plain = tmp_path / "plain"
    train(_cfg(photo_folder, plain, 2, init=str(spn_weights), freeze_encoder=True), progress=False)
    first = [next(r for r in map(json.loads, (d / "log.jsonl").read_text().splitlines()) if "val" in r)
             for d in (out, plain)]
    assert first[0]["val"] == first[1]["val"]  # identity blocks: the grown model starts as W
    with pytest.raises(ValueError, match="only up_blocks, res_blocks can grow"):
        train(_cfg(photo_folder, tmp_path / "wider", 1, init=str(spn_weights),
                   preset_overrides={"res_width": 64}), progress=False)
