"""Stage 1's VAE stage: an `AutoencoderKL` (x4 downsampling, 4 latent channels) trained from scratch on freshly
rendered shapes-world frames of the training split (L1 + MSE + tiny KL, object pixels weighted, warm-up +
cosine lr), scored by PSNR / colour error / the checker's reading on frames of the held-out split, and exported
to `run_dir/vae` with `scaling_factor` = 1/std of its latents, as SD does.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from harivo.fileio import atomic_dir, write_json
from harivo.pixels import from_pixels, to_pixels
from harivo.train.stage1.config import T2IConfig
from harivo.train.stage1.data import render_batch
from harivo.train.stage1.evaluation import frame_reader, save_grid
from harivo.train.stage1.resume import resume_or_warm_start, state_dir
from harivo.train.utils import (WarmupDecay, module_tensors, save_training_state, stage_step_generator,
                                write_loss_curves)


# --------------------------------------------------------------------------------------------------- loss
def object_weights(specs, x: torch.Tensor, object_weight: float) -> torch.Tensor:
    """(n, 1, h, w) per-pixel loss weights: `object_weight` where a pixel differs from its image's background
    colour (the object and its anti-aliased edge), 1 elsewhere; normalised to mean 1 per image."""
    from harivo.data.shapes import BACKGROUNDS

    bg = torch.tensor([BACKGROUNDS[s.background] for s in specs], dtype=x.dtype, device=x.device) / 127.5 - 1.0
    mask = ((x - bg[:, :, None, None]).abs().sum(1, keepdim=True) > 0.05).to(x.dtype)  # (n, 1, h, w)
    w = 1.0 + (object_weight - 1.0) * mask
    return w / w.mean(dim=(1, 2, 3), keepdim=True)


def vae_loss(vae, x, gen, cfg: T2IConfig, acc, weights: torch.Tensor | None = None):
    """L1 + MSE reconstruction of a posterior sample (+ tiny KL), pixels weighted by `weights` (n, 1, h, w);
    returns (loss, l1, mse, kl) with l1/mse unweighted for logging."""
    with acc.autocast():
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen).to(x.device, post.mean.dtype)
        rec = vae.decode(z).sample.float()
    err = rec - x
    l1, mse = err.abs().mean(), (err ** 2).mean()
    w = torch.ones_like(x[:, :1]) if weights is None else weights
    loss = cfg.vae_l1_weight * (w * err.abs()).mean() + cfg.vae_mse_weight * (w * err ** 2).mean()
    kl = post.kl().float().mean()
    return loss + cfg.vae_kl_weight * kl, l1, mse, kl


def train_step(vae, opt, cfg: T2IConfig, step: int, lr: float, acc):
    """One optimizer step at `lr` on the batch of training step `step`: the batch (rendered fresh) and the
    posterior noise are a pure function of (seed, step), so a resumed run draws what an uninterrupted one drew.
    Returns `vae_loss`'s (loss, l1, mse, kl)."""
    for g in opt.param_groups:
        g["lr"] = lr
    rng = np.random.default_rng([cfg.seed, 1, step])
    specs, imgs = render_batch(rng, cfg.vae_batch_size, "train", cfg.image_size, cfg.world)
    x = to_pixels(imgs).to(acc.device)
    weights = object_weights(specs, x, cfg.vae_object_weight) if cfg.vae_object_weight != 1.0 else None
    loss, l1, mse, kl = vae_loss(vae, x, stage_step_generator(cfg.seed, 1, step), cfg, acc, weights)
    opt.zero_grad(set_to_none=True)
    acc.backward(loss)
    if cfg.grad_clip:
        acc.clip_grad_norm_(vae.parameters(), cfg.grad_clip)
    opt.step()
    return loss, l1, mse, kl


# ------------------------------------------------------------------------------------------------ metrics
def colour_errors(specs, imgs: np.ndarray, rec: np.ndarray) -> tuple[list[float], list[float]]:
    """Per image, the distance of the reconstruction's mean object / background colour (over the pixels fully
    covered in the original) from the true colour; images without such pixels are left out."""
    from harivo.data.shapes import BACKGROUNDS, COLOURS

    obj_err, bg_err = [], []
    for s, o, r in zip(specs, imgs.astype(np.float64), rec.astype(np.float64)):
        bgc = np.array(BACKGROUNDS[s.background], dtype=np.float64)
        objc = np.array(COLOURS[s.colour], dtype=np.float64)
        core = np.abs(o - objc).sum(-1) < 3  # fully covered object pixels
        back = np.abs(o - bgc).sum(-1) < 3
        if core.any():
            obj_err.append(float(np.linalg.norm(r[core].mean(0) - objc)))
        if back.any():
            bg_err.append(float(np.linalg.norm(r[back].mean(0) - bgc)))
    return obj_err, bg_err


def checker_agreement(imgs: np.ndarray, rec: np.ndarray, read) -> dict:
    """How often the checker reads the same colour, shape and background off a reconstruction as off its
    original, and how often the reconstruction still shows the original's band (or none)."""
    same = band = 0
    for o, r in zip(imgs, rec):
        fo, fr = read(o), read(r)
        same += int((fo.colour, fo.shape, fo.background) == (fr.colour, fr.shape, fr.background))
        band += int(fo.band == fr.band)
    return {"checker_same_reading": same / len(imgs), "checker_band_kept": band / len(imgs)}


def vae_metrics(vae, cfg: T2IConfig, device, checker: bool = True) -> tuple[dict, np.ndarray, np.ndarray]:
    """PSNR (uint8 round trip, [0,1] scale) and colour errors on frames of the held-out split; returns (metrics,
    originals, reconstructions)."""
    rng = np.random.default_rng([cfg.seed, 99])
    specs, imgs = render_batch(rng, cfg.vae_eval_images, "held_out", cfg.image_size, cfg.world)
    recs = []
    vae.eval()
    with torch.no_grad():
        for i in range(0, len(imgs), 64):
            x = to_pixels(imgs[i:i + 64]).to(device)
            recs.append(from_pixels(vae.decode(vae.encode(x).latent_dist.mode()).sample))
    vae.train()
    rec = np.concatenate(recs)
    a, b = imgs.astype(np.float64) / 255, rec.astype(np.float64) / 255
    mse = ((a - b) ** 2).mean(axis=(1, 2, 3))
    psnr = 10 * np.log10(1.0 / np.maximum(mse, 1e-10))
    obj_err, bg_err = colour_errors(specs, imgs, rec)
    out = {
        "psnr_db": float(psnr.mean()),
        "psnr_db_min": float(psnr.min()),
        "object_colour_error_median": float(np.median(obj_err)),
        "object_colour_error_max": float(np.max(obj_err)),
        "background_colour_error_median": float(np.median(bg_err)),
        "eval_images": int(len(imgs)),
        "eval_split": "held_out",
    }
    read = frame_reader(cfg.world) if checker else None
    if read is not None:
        out.update(checker_agreement(imgs, rec, read))
    return out, imgs, rec


def save_reconstructions(path: Path, originals: np.ndarray, recs: np.ndarray) -> None:
    """A grid of the first 16 originals, each beside its reconstruction."""
    save_grid(path, [im for pair in zip(originals[:16], recs[:16]) for im in pair], ["orig", "recon"] * 16)


def held_out_check(vae, cfg: T2IConfig, device, step: int, log=print) -> dict:
    """`vae_metrics` at `step`, logged and drawn (run_dir/samples/vae_<step>.png)."""
    m, o, r = vae_metrics(vae, cfg, device, checker=True)
    log(f"[vae] step {step}: held-out PSNR {m['psnr_db']:.2f} dB, object colour err "
        f"{m['object_colour_error_median']:.1f}, bg err {m['background_colour_error_median']:.1f}, "
        f"same reading {m.get('checker_same_reading', float('nan')):.3f}, "
        f"band kept {m.get('checker_band_kept', float('nan')):.3f}")
    save_reconstructions(Path(cfg.run_dir) / "samples" / f"vae_{step:06d}.png", o, r)
    return m


# --------------------------------------------------------------------------------------------- the stage
def build_vae(cfg: T2IConfig):
    """A fresh VAE of `cfg`'s shape (weights a function of cfg.seed), posterior log-variance at vae_logvar_init."""
    from harivo.train.t2i_models import make_vae

    torch.manual_seed(cfg.seed)
    vae = make_vae(cfg.vae_channels, cfg.vae_layers_per_block, cfg.latent_channels, cfg.vae_norm_groups, cfg.image_size)
    with torch.no_grad():  # start with a near-deterministic posterior: std exp(-3) instead of ~1 (see vae_logvar_init)
        vae.quant_conv.bias[cfg.latent_channels:] = cfg.vae_logvar_init
    if cfg.gradient_checkpointing:
        vae.enable_gradient_checkpointing()
    return vae


def train_vae(cfg: T2IConfig, acc, t_start: float) -> dict:
    """Train the VAE to `vae_steps` (or `vae_stop_psnr`, or until `max_minutes` after `t_start`), resuming or
    warm-starting as the config says; saves the state every `checkpoint_every` steps and at the end, and exports
    run_dir/vae once finished. Returns the stage's record (steps, minutes, finished, why it stopped, ...)."""
    from tqdm.auto import tqdm

    from harivo.train.t2i_models import n_params

    run = Path(cfg.run_dir)
    vae = build_vae(cfg)
    opt = torch.optim.Adam(vae.parameters(), lr=cfg.vae_lr)
    meta = resume_or_warm_start(cfg, "vae", {"vae": vae}, opt, {"vae": (vae,)}, log=acc.print)
    step, history, minutes_before = meta.get("step", 0), meta.get("history", []), meta.get("minutes", 0.0)
    evals = meta.get("evals", [])
    vae, opt = acc.prepare(vae, opt)
    raw = acc.unwrap_model(vae)
    seg_start = time.time()
    done_psnr = bool(evals) and cfg.vae_stop_psnr > 0 and evals[-1]["psnr_db"] >= cfg.vae_stop_psnr
    schedule = WarmupDecay(cfg.vae_warmup_steps, cfg.vae_steps, cfg.vae_min_lr_ratio)

    def minutes():
        return minutes_before + (time.time() - seg_start) / 60

    def checkpoint():
        save_training_state(state_dir(cfg, "vae"), module_tensors({"vae": raw}), opt, None, {
            "history": history, "evals": evals, "minutes": minutes(), "config": dataclasses.asdict(cfg), "step": step})
        write_loss_curves(run, history, "VAE loss", stem="loss_vae")

    bar = tqdm(total=cfg.vae_steps, initial=step, desc="vae", disable=not acc.is_local_main_process, mininterval=5)
    stopped = "steps"
    while step < cfg.vae_steps and not done_psnr:
        if cfg.max_minutes and (time.time() - t_start) / 60 >= cfg.max_minutes:
            stopped = "max_minutes"
            break
        lr = cfg.vae_lr * schedule(step)
        loss, l1, mse, kl = train_step(vae, opt, cfg, step, lr, acc)
        step += 1
        bar.update(1)
        if step % cfg.log_every == 0 or step == 1:
            history.append({"step": step, "loss": loss.item(), "loss_l1": l1.item(), "loss_mse": mse.item(),
                            "kl": kl.item(), "lr": lr, "minutes": round(minutes(), 3)})
            bar.set_postfix(loss=f"{loss.item():.4f}", mse=f"{mse.item():.4f}")
        if step % cfg.vae_eval_every == 0 or step == cfg.vae_steps:
            m = held_out_check(raw, cfg, acc.device, step, log=acc.print)
            evals.append({"step": step, **m})
            done_psnr = cfg.vae_stop_psnr > 0 and m["psnr_db"] >= cfg.vae_stop_psnr
            if done_psnr:
                stopped = "psnr_target"
        if step % cfg.checkpoint_every == 0:
            checkpoint()
    bar.close()
    checkpoint()
    finished = step >= cfg.vae_steps or done_psnr
    info = {"steps": step, "minutes": minutes(), "finished": finished, "stopped_by": stopped, "params": n_params(raw)}
    if finished:
        info.update(export_vae(raw, cfg, acc.device, history, evals, info))
    return info


def export_vae(vae, cfg: T2IConfig, device, history, evals, info) -> dict:
    """Set scaling_factor = 1/std of the training latents and save run_dir/vae (diffusers folder + metrics)."""
    rng = np.random.default_rng([cfg.seed, 7])
    _, imgs = render_batch(rng, cfg.vae_scale_images, "train", cfg.image_size, cfg.world)
    vae.eval()
    with torch.no_grad():
        lat = torch.cat([vae.encode(to_pixels(imgs[i:i + 128]).to(device)).latent_dist.mode().float().cpu()
                         for i in range(0, len(imgs), 128)])
    std, mean = float(lat.std()), float(lat.mean())
    vae.register_to_config(scaling_factor=1.0 / std)
    m, o, r = vae_metrics(vae, cfg, device, checker=True)
    metrics = {**m, "latent_std": std, "latent_mean": mean, "latent_channel_mean": lat.mean((0, 2, 3)).tolist(),
               "latent_channel_std": lat.std((0, 2, 3)).tolist(), "scaling_factor": 1.0 / std, **info}
    save_reconstructions(Path(cfg.run_dir) / "samples" / "vae_final.png", o, r)
    with atomic_dir(Path(cfg.run_dir) / "vae") as tmp:
        vae.save_pretrained(tmp, safe_serialization=True)
        write_json(tmp / "vae_metrics.json", {**metrics, "evals": evals})
        write_loss_curves(tmp, history, "VAE loss", stem="loss_vae")
    vae.train()
    print(f"[vae] exported {cfg.run_dir}/vae: PSNR {m['psnr_db']:.2f} dB, scaling_factor {1/std:.4f} "
          f"(latent mean {mean:.3f})", flush=True)
    return {"metrics": metrics}
