"""Stage 1: train the tiny Stable-Diffusion-shaped text-to-image model of the shapes world from scratch.

    python -m harivo.train_t2i --config configs/shapes-t2i.yaml --stage all --resume
    accelerate launch -m harivo.train_t2i --config configs/shapes-t2i.yaml --stage unet --resume --max-minutes 45
    python -m harivo.train_t2i --stage none --eval            # evaluate checkpoints/shapes-sd

Two stages, each resumable from its own training state in `run_dir`:
- `vae`: `AutoencoderKL` (x4 downsampling, 4 latent channels) on freshly rendered shapes-world frames of the
  training split, L1 + MSE + tiny KL, warm-up + cosine lr. Evaluated by PSNR / colour error on frames of the
  held-out split. Exported to `run_dir/vae` with `scaling_factor` = 1/std of its latents, as SD does.
- `unet`: `CLIPTextModel` (from scratch, trained jointly) + `UNet2DConditionModel` on pre-encoded (cached)
  VAE latents of single video frames with their full captions (10 % empty for classifier-free guidance);
  epsilon prediction, SD's scaled-linear betas, min-SNR-gamma weighting, AdamW + warm-up + cosine, EMA
  weights (the EMA is what is exported). Exports `output_dir`: a complete diffusers `StableDiffusionPipeline`
  folder (DDIM scheduler, no safety checker, safetensors only) + training.json + loss curves + config.

Training state (weights, EMA, optimizer, step, RNG, loss history) is written atomically every
`checkpoint_every` steps and when `--max-minutes` runs out; `--resume` continues from exactly that step: the
batch, noise and timesteps of step n are a pure function of (seed, n), so a resumed run reproduces an
uninterrupted one. No pickle is ever written or loaded (safetensors + JSON).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harivo.fileio import atomic_dir, atomic_path, load_tensors, read_json, save_tensors, write_json, write_text
from harivo.tokenizer import token_ids
from harivo.train_utils import (WarmupDecay, add_config_flags, config_from_args, config_to_yaml,
                                optimizer_state_from_flat, optimizer_state_to_flat, run_cli, where_trained,
                                write_loss_curves)

STAGES = ("vae", "unet", "all", "none")


# ----------------------------------------------------------------------------------------------- config
@dataclass
class T2IConfig:
    # --- run -------------------------------------------------------------------------------------------
    stage: str = "all"  # vae | unet | all (vae then unet) | none (only --eval)
    output_dir: str = "checkpoints/shapes-sd"  # exported StableDiffusionPipeline folder
    run_dir: str = "runs/t2i"  # training states, caches, sample grids, logs
    seed: int = 0  # everything (data, init, noise) derives from it
    resume: bool = False  # continue from run_dir/state_<stage> if it exists
    max_minutes: float = 0.0  # stop gracefully (save + export) after this many minutes; 0 = no limit
    mixed_precision: str = "no"  # no | bf16 | fp16 (accelerate); fp32 is fastest on CPU
    gradient_checkpointing: bool = False  # trade compute for memory (only useful for big models / GPUs)
    num_threads: int = 0  # torch CPU threads; 0 = torch default
    init_from: str = ""  # StableDiffusionPipeline folder to warm-start from when run_dir holds no state (e.g.
    #   checkpoints/shapes-sd on a fresh machine): the vae stage starts from its VAE weights; the unet stage takes its
    #   VAE if run_dir/vae is missing, its UNet and text encoder weights (raw and EMA); fresh optimizer and lr
    #   schedule. Ignored when --resume finds a state
    eval: bool = False  # after training, sample eval prompts from output_dir and score them with the checker
    image_size: int = 64  # shapes-world frame size (64 -> 16x16 latents)
    # --- VAE ---------------------------------------------------------------------------------------------
    vae_channels: tuple[int, ...] = (32, 64, 64)  # 3 blocks = x4 downsampling; measured 1.2 s/step at b16
    vae_layers_per_block: int = 1  # resnets per encoder block (decoder gets one more, as in diffusers)
    latent_channels: int = 4  # like SD
    vae_norm_groups: int = 32  # must divide every VAE channel count
    vae_steps: int = 2000  # total VAE steps (length of the cosine schedule)
    vae_batch_size: int = 16  # images per step, rendered fresh every step (infinite data)
    vae_lr: float = 1e-3  # peak Adam lr
    vae_warmup_steps: int = 100  # linear warm-up
    vae_min_lr_ratio: float = 0.05  # cosine floor as a fraction of the peak lr
    vae_l1_weight: float = 1.0  # L1 keeps flat colours exact
    vae_mse_weight: float = 1.0  # MSE = what PSNR measures
    vae_kl_weight: float = 1e-6  # tiny KL, just to keep the posterior tame (as SD's 1e-6)
    vae_object_weight: float = 1.0  # loss weight of object pixels (≠ background colour). The object covers ~5 % of
    #   a frame, so with 1.0 the VAE learned the backgrounds in 200 steps but after 700 steps still drew the object
    #   as a blurred blob of the wrong colour (held-out PSNR 24 dB, object colour error 117)
    vae_logvar_init: float = -6.0  # initial posterior log-variance (bias of quant_conv). At diffusers' ~0 the
    #   sampled latent noise (std ~1) drowned the object: 21.5 dB and no object colour after 200 steps
    vae_eval_every: int = 200  # PSNR on held-out frames every N steps
    vae_eval_images: int = 256  # frames of the held-out split used for PSNR / colour error
    vae_scale_images: int = 1024  # training frames whose latents give scaling_factor = 1/std
    vae_stop_psnr: float = 0.0  # stop the VAE early once the held-out PSNR reaches this (0 = never)
    # --- text encoder ----------------------------------------------------------------------------------
    text_hidden: int = 64  # CLIPTextModel hidden size = UNet cross_attention_dim
    text_layers: int = 4
    text_heads: int = 4
    text_intermediate: int = 256
    # --- UNet ----------------------------------------------------------------------------------------------
    unet_channels: tuple[int, ...] = (32, 64, 64)  # 16x16, 8x8, 4x4 latent levels
    unet_layers_per_block: int = 1  # = MotionAdapter motion_layers_per_block in stage 2
    unet_attention_head_dim: int = 2  # diffusers' name; it is the number of heads (2 heads: 1.9x faster than 8 on CPU)
    unet_norm_groups: int = 32  # must divide every UNet channel count (and 32 for the motion modules)
    unet_steps: int = 4000  # total UNet steps (length of the cosine schedule)
    unet_batch_size: int = 64  # latents per step
    unet_lr: float = 1e-3  # peak AdamW lr (UNet + text encoder)
    unet_warmup_steps: int = 200  # linear warm-up
    unet_min_lr_ratio: float = 0.1  # cosine floor as a fraction of the peak lr
    weight_decay: float = 1e-2  # AdamW
    grad_clip: float = 1.0  # max grad norm (0 = off)
    ema_decay: float = 0.999  # EMA of UNet + text encoder weights (the exported weights)
    snr_gamma: float = 5.0  # min-SNR-gamma loss weighting (0 = plain epsilon MSE)
    cond_drop: float = 0.1  # fraction of empty captions (classifier-free guidance)
    noise_offset: float = 0.0  # offset noise (diffusers' --noise_offset): training noise += offset * N(0, 1) per
    #   (sample, channel). SD's schedule keeps sqrt(alphas_cumprod[999]) = 0.068 of the image at t = 999, and the
    #   shapes world's uniform backgrounds make that leak a shortcut: the model read the background from the
    #   leaked latent mean instead of the caption, so sampling from pure noise drew gray (the mean) backgrounds.
    #   Measured on the 7000-step model: background right 45 % from pure noise, 70 % with the leak put back
    unet_object_weight: float = 1.0  # ε-loss weight of latent pixels on the object (its 4x4 pixel cells, dilated by
    #   one latent pixel), normalised to mean 1 per image; 1 = plain ε-MSE. The object is ~5 % of a frame and the cue
    #   mark inside it ~0.5 %: 3000 plain steps on the cue world learned whether a mark is there, not where
    text_probe_weight: float = 0.0  # weight of the caption probe's cross-entropy (t2i_models.CaptionProbe): the
    #   text encoder's pooled output must name colour, shape, motion and background, as CLIP's contrastive
    #   pre-training made SD's do. Without it the encoder, taught by single frames only, dropped the verb
    train_videos: int = 4000  # videos of the training split whose frames are pre-encoded
    frames_per_video: int = 4  # random frames taken from each video
    # --- bookkeeping -------------------------------------------------------------------------------------
    log_every: int = 10  # loss rows in the history / progress bar
    checkpoint_every: int = 200  # training state every N steps (atomic)
    sample_every: int = 500  # UNet sample grid every N steps (PNG in run_dir/samples)
    export_every_minutes: float = 15.0  # re-export output_dir this often during UNet training
    eval_prompts: int = 40  # prompts of --eval (about 2/3 seen, 1/3 held-out)
    eval_steps: int = 25  # DDIM steps of --eval and sample grids
    eval_guidance: float = 7.5  # CFG scale of --eval and sample grids


_POSITIVE_INT = {
    "image_size", "vae_layers_per_block", "latent_channels", "vae_norm_groups", "vae_batch_size", "vae_eval_every",
    "vae_eval_images", "vae_scale_images", "text_hidden", "text_layers", "text_heads", "text_intermediate", "unet_layers_per_block",
    "unet_attention_head_dim", "unet_norm_groups", "unet_batch_size", "train_videos", "frames_per_video",
    "log_every", "checkpoint_every", "sample_every", "eval_prompts", "eval_steps",
}
_NONNEG_INT = {"vae_steps", "unet_steps", "vae_warmup_steps", "unet_warmup_steps", "num_threads", "seed"}
_POSITIVE_FLOAT = {"vae_lr", "unet_lr", "ema_decay", "vae_object_weight", "unet_object_weight"}
_NONNEG_FLOAT = {"noise_offset", "text_probe_weight", "vae_kl_weight", "vae_l1_weight", "vae_mse_weight", "weight_decay", "grad_clip", "snr_gamma",
                 "max_minutes", "export_every_minutes", "vae_stop_psnr", "eval_guidance"}
_RATIO = {"vae_min_lr_ratio", "unet_min_lr_ratio", "cond_drop"}


def validate(cfg: T2IConfig) -> T2IConfig:
    """Raise ValueError naming the offending argument; returns cfg for chaining."""
    def bad(name, why):
        raise ValueError(f"{name}: {why} (got {getattr(cfg, name)!r})")

    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if f.name in _POSITIVE_INT and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            bad(f.name, "must be an integer >= 1")
        if f.name in _NONNEG_INT and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            bad(f.name, "must be an integer >= 0")
        if f.name in _POSITIVE_FLOAT | _NONNEG_FLOAT | _RATIO:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                bad(f.name, "must be a finite number")
        if f.name in _POSITIVE_FLOAT and v <= 0:
            bad(f.name, "must be > 0")
        if f.name in _NONNEG_FLOAT and v < 0:
            bad(f.name, "must be >= 0")
        if f.name in _RATIO and not 0 <= v <= 1:
            bad(f.name, "must lie in [0, 1]")
    if cfg.stage not in STAGES:
        bad("stage", f"must be one of {list(STAGES)}")
    if cfg.mixed_precision not in ("no", "bf16", "fp16"):
        bad("mixed_precision", "must be one of ['no', 'bf16', 'fp16']")
    if cfg.ema_decay >= 1:
        bad("ema_decay", "must be < 1")
    if cfg.image_size % 16 or cfg.image_size < 16:
        bad("image_size", "must be a multiple of 16 and >= 16")
    for name, groups in (("vae_channels", cfg.vae_norm_groups), ("unet_channels", cfg.unet_norm_groups)):
        ch = getattr(cfg, name)
        if not isinstance(ch, (tuple, list)) or len(ch) != 3 or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in ch):
            bad(name, "must be 3 positive integers (3 blocks: x4 downsampling)")
        if any(c % groups for c in ch):
            bad(name, f"every channel count must be divisible by the norm groups ({groups})")
    if any(c % 32 for c in cfg.unet_channels):
        bad("unet_channels", "must be divisible by 32 (MotionAdapter motion_norm_num_groups=32)")
    if any(c % cfg.unet_attention_head_dim for c in cfg.unet_channels):
        bad("unet_attention_head_dim", "(number of heads) must divide every UNet channel count")
    if cfg.text_hidden % cfg.text_heads:
        bad("text_heads", "must divide text_hidden")
    return cfg


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harivo.train_t2i", description=__doc__.split("\n")[0])
    p.add_argument("--config", help="YAML file of T2IConfig keys (CLI flags override it)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="total steps of the selected stage(s); overrides vae_steps / unet_steps")
    add_config_flags(p, T2IConfig)
    return p


def parse_config(argv: list[str] | None = None) -> T2IConfig:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(T2IConfig, args, skip=("max_steps",))
    if args.max_steps is not None:
        if args.max_steps < 0:
            raise ValueError(f"max_steps: must be an integer >= 0 (got {args.max_steps})")
        if cfg.stage in ("vae", "all"):
            cfg = dataclasses.replace(cfg, vae_steps=args.max_steps)
        if cfg.stage in ("unet", "all"):
            cfg = dataclasses.replace(cfg, unet_steps=args.max_steps)
    return validate(cfg)


# ------------------------------------------------------------------------------------------------ helpers
def lr_at(step: int, peak: float, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up to `peak`, then cosine down to `peak * min_ratio` at `total` (a pure function of step)."""
    return peak * WarmupDecay(warmup, total, min_ratio)(step)


def step_generator(seed: int, stage: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + stage * 7_919 + int(step)) % (2**63 - 1))


def to_pixels(images_uint8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images_uint8)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def render_batch(rng: np.random.Generator, n: int, split: str, size: int):
    from harivo.data.shapes import render_image, sample_spec

    specs = [sample_spec(rng, split) for _ in range(n)]
    imgs = np.stack([render_image(s, int(rng.integers(2**31 - 1)), size) for s in specs])
    return specs, imgs


def make_accelerator(cfg: T2IConfig):
    from accelerate import Accelerator

    return Accelerator(mixed_precision=cfg.mixed_precision)


def ddim_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(**_sched_kwargs(), clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                         prediction_type="epsilon")


def _sched_kwargs():
    from harivo.t2i_models import SCHEDULE

    return dict(SCHEDULE)


# --------------------------------------------------------------------------------- training state (resume)
def save_state(folder: Path, step: int, modules: dict, optimizer, meta: dict) -> None:
    """Weights + optimizer tensors -> state.safetensors, everything else -> state.json, atomically."""
    tensors: dict[str, torch.Tensor] = {}
    for name, m in modules.items():
        for k, v in m.state_dict().items():
            tensors[f"model/{name}/{k}"] = v.clone()
    osd = optimizer.state_dict()
    optim_tensors, scalars = optimizer_state_to_flat(osd)
    tensors.update(optim_tensors)
    tensors["rng/torch"] = torch.get_rng_state()
    meta = dict(meta, step=int(step), param_groups=osd["param_groups"], optim_scalars=scalars)
    with atomic_dir(folder) as tmp:
        save_tensors(tmp / "state.safetensors", tensors)
        write_json(tmp / "state.json", meta)


def load_state(folder: Path, modules: dict, optimizer) -> dict:
    tensors = load_tensors(folder / "state.safetensors", what="resume state")
    meta = read_json(folder / "state.json", what="resume state")
    for name, m in modules.items():
        prefix = f"model/{name}/"
        sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        m.load_state_dict(sd, strict=True)
    optimizer.load_state_dict(optimizer_state_from_flat(tensors, meta))
    torch.set_rng_state(tensors["rng/torch"])
    return meta


def write_history(folder: Path, name: str, history: list[dict], title: str) -> None:
    """loss_<name>.csv + loss_<name>.png (raw and smoothed curves)."""
    write_loss_curves(folder, history, title, stem=f"loss_{name}")


def save_grid(path: Path, images: list[np.ndarray], titles: list[str] | None = None, cols: int = 8) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.6, rows * 1.9), dpi=80, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], interpolation="nearest")
            if titles:
                ax.set_title(titles[i], fontsize=5)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _short(caption: str) -> str:
    return caption.replace("is ", "").replace(" background", " bg").replace("moving ", "").replace("a ", "", 1)


# ------------------------------------------------------------------------------------------------ VAE stage
def vae_metrics(vae, cfg: T2IConfig, device, checker: bool = True) -> dict:
    """PSNR (uint8 round trip, [0,1] scale) and colour errors on frames of the held-out split."""
    from harivo.data.shapes import BACKGROUNDS, COLOURS

    rng = np.random.default_rng([cfg.seed, 99])
    specs, imgs = render_batch(rng, cfg.vae_eval_images, "held_out", cfg.image_size)
    recs = []
    vae.eval()
    with torch.no_grad():
        for i in range(0, len(imgs), 64):
            x = to_pixels(imgs[i:i + 64]).to(device)
            recs.append(to_uint8(vae.decode(vae.encode(x).latent_dist.mode()).sample))
    vae.train()
    rec = np.concatenate(recs)
    a, b = imgs.astype(np.float64) / 255, rec.astype(np.float64) / 255
    mse = ((a - b) ** 2).mean(axis=(1, 2, 3))
    psnr = 10 * np.log10(1.0 / np.maximum(mse, 1e-10))
    obj_err, bg_err = [], []
    for s, o, r in zip(specs, imgs.astype(np.float64), rec.astype(np.float64)):
        bgc = np.array(BACKGROUNDS[s.background], dtype=np.float64)
        objc = np.array(COLOURS[s.colour], dtype=np.float64)
        d_bg = np.abs(o - bgc).sum(-1)
        d_obj = np.abs(o - objc).sum(-1)
        core = d_obj < 3  # fully covered object pixels
        back = d_bg < 3
        if core.any():
            obj_err.append(float(np.linalg.norm(r[core].mean(0) - objc)))
        if back.any():
            bg_err.append(float(np.linalg.norm(r[back].mean(0) - bgc)))
    out = {
        "psnr_db": float(psnr.mean()),
        "psnr_db_min": float(psnr.min()),
        "object_colour_error_median": float(np.median(obj_err)),
        "object_colour_error_max": float(np.max(obj_err)),
        "background_colour_error_median": float(np.median(bg_err)),
        "eval_images": int(len(imgs)),
        "eval_split": "held_out",
    }
    if checker:
        rd = _checker()
        if rd is not None:
            from harivo.data.checker import cue_agrees

            same = cue = 0
            for s, o, r in zip(specs, imgs, rec):
                fo, fr = rd(o), rd(r)
                same += int((fo.colour, fo.shape, fo.background) == (fr.colour, fr.shape, fr.background))
                cue += int(cue_agrees(s.motion, fr))
            out["checker_same_reading"] = same / len(imgs)
            out["checker_cue_kept"] = cue / len(imgs)  # reconstructions whose mark still shows the spec's cue
    return out, imgs, rec


def _checker():
    try:
        from harivo.data.checker import read_frame
    except Exception:
        return None
    return read_frame


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


def train_vae(cfg: T2IConfig, acc, t_start: float) -> dict:
    from tqdm.auto import tqdm

    from harivo.t2i_models import make_vae, n_params

    run = Path(cfg.run_dir)
    state_dir = run / "state_vae"
    torch.manual_seed(cfg.seed)
    vae = make_vae(cfg.vae_channels, cfg.vae_layers_per_block, cfg.latent_channels, cfg.vae_norm_groups, cfg.image_size)
    with torch.no_grad():  # start with a near-deterministic posterior: std exp(-3) instead of ~1 (see vae_logvar_init)
        vae.quant_conv.bias[cfg.latent_channels:] = cfg.vae_logvar_init
    if cfg.gradient_checkpointing:
        vae.enable_gradient_checkpointing()
    opt = torch.optim.Adam(vae.parameters(), lr=cfg.vae_lr)
    step, history, minutes_before, evals = 0, [], 0.0, []
    if cfg.resume and (state_dir / "state.json").is_file():
        meta = load_state(state_dir, {"vae": vae}, opt)
        step, history, minutes_before, evals = meta["step"], meta["history"], meta["minutes"], meta.get("evals", [])
        acc.print(f"[vae] resumed at step {step}")
    elif cfg.init_from:
        if not (Path(cfg.init_from) / "vae" / "config.json").is_file():
            raise ValueError(f"init_from: expected a StableDiffusionPipeline folder with vae/, got {cfg.init_from!r}")
        warm_start(Path(cfg.init_from), {"vae": (vae,)})
        acc.print(f"[vae] warm start from {cfg.init_from} (fresh optimizer)")
    vae, opt = acc.prepare(vae, opt)
    raw = acc.unwrap_model(vae)
    device = acc.device
    seg_start = time.time()
    done_psnr = bool(evals) and cfg.vae_stop_psnr > 0 and evals[-1]["psnr_db"] >= cfg.vae_stop_psnr

    def checkpoint():
        save_state(state_dir, step, {"vae": raw}, opt, {
            "history": history, "evals": evals, "minutes": minutes_before + (time.time() - seg_start) / 60,
            "config": dataclasses.asdict(cfg)})
        write_history(run, "vae", history, "VAE loss")

    bar = tqdm(total=cfg.vae_steps, initial=step, desc="vae", disable=not acc.is_local_main_process, mininterval=5)
    stopped = "steps"
    while step < cfg.vae_steps and not done_psnr:
        if cfg.max_minutes and (time.time() - t_start) / 60 >= cfg.max_minutes:
            stopped = "max_minutes"
            break
        lr = lr_at(step, cfg.vae_lr, cfg.vae_warmup_steps, cfg.vae_steps, cfg.vae_min_lr_ratio)
        for g in opt.param_groups:
            g["lr"] = lr
        rng = np.random.default_rng([cfg.seed, 1, step])
        specs, imgs = render_batch(rng, cfg.vae_batch_size, "train", cfg.image_size)
        x = to_pixels(imgs).to(device)
        weights = object_weights(specs, x, cfg.vae_object_weight) if cfg.vae_object_weight != 1.0 else None
        loss, l1, mse, kl = vae_loss(vae, x, step_generator(cfg.seed, 1, step), cfg, acc, weights)
        opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        if cfg.grad_clip:
            acc.clip_grad_norm_(vae.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        bar.update(1)
        if step % cfg.log_every == 0 or step == 1:
            history.append({"step": step, "loss": loss.item(), "loss_l1": l1.item(), "loss_mse": mse.item(),
                            "kl": kl.item(), "lr": lr, "minutes": round(minutes_before + (time.time() - seg_start) / 60, 3)})
            bar.set_postfix(loss=f"{loss.item():.4f}", mse=f"{mse.item():.4f}")
        if step % cfg.vae_eval_every == 0 or step == cfg.vae_steps:
            m, o, r = vae_metrics(raw, cfg, device, checker=True)
            evals.append({"step": step, **m})
            acc.print(f"[vae] step {step}: held-out PSNR {m['psnr_db']:.2f} dB, object colour err "
                      f"{m['object_colour_error_median']:.1f}, bg err {m['background_colour_error_median']:.1f}, "
                      f"same reading {m.get('checker_same_reading', float('nan')):.3f}, "
                      f"cue kept {m.get('checker_cue_kept', float('nan')):.3f}")
            save_grid(run / "samples" / f"vae_{step:06d}.png",
                      [im for pair in zip(o[:16], r[:16]) for im in pair], ["orig", "recon"] * 16)
            done_psnr = cfg.vae_stop_psnr > 0 and m["psnr_db"] >= cfg.vae_stop_psnr
            if done_psnr:
                stopped = "psnr_target"
        if step % cfg.checkpoint_every == 0:
            checkpoint()
    bar.close()
    checkpoint()
    finished = step >= cfg.vae_steps or done_psnr
    info = {"steps": step, "minutes": minutes_before + (time.time() - seg_start) / 60, "finished": finished,
            "stopped_by": stopped, "params": n_params(raw)}
    if finished:
        info.update(export_vae(raw, cfg, device, history, evals, info))
    return info


def export_vae(vae, cfg: T2IConfig, device, history, evals, info) -> dict:
    """Set scaling_factor = 1/std of the training latents and save run_dir/vae (diffusers folder + metrics)."""
    rng = np.random.default_rng([cfg.seed, 7])
    _, imgs = render_batch(rng, cfg.vae_scale_images, "train", cfg.image_size)
    vae.eval()
    with torch.no_grad():
        lat = torch.cat([vae.encode(to_pixels(imgs[i:i + 128]).to(device)).latent_dist.mode().float().cpu()
                         for i in range(0, len(imgs), 128)])
    std, mean = float(lat.std()), float(lat.mean())
    vae.register_to_config(scaling_factor=1.0 / std)
    m, o, r = vae_metrics(vae, cfg, device, checker=True)
    metrics = {**m, "latent_std": std, "latent_mean": mean, "latent_channel_mean": lat.mean((0, 2, 3)).tolist(),
               "latent_channel_std": lat.std((0, 2, 3)).tolist(), "scaling_factor": 1.0 / std, **info}
    save_grid(Path(cfg.run_dir) / "samples" / "vae_final.png",
              [im for pair in zip(o[:16], r[:16]) for im in pair], ["orig", "recon"] * 16)
    with atomic_dir(Path(cfg.run_dir) / "vae") as tmp:
        vae.save_pretrained(tmp, safe_serialization=True)
        write_json(tmp / "vae_metrics.json", {**metrics, "evals": evals})
        write_history(tmp, "vae", history, "VAE loss")
    vae.train()
    print(f"[vae] exported {cfg.run_dir}/vae: PSNR {m['psnr_db']:.2f} dB, scaling_factor {1/std:.4f} "
          f"(latent mean {mean:.3f})", flush=True)
    return {"metrics": metrics}


# ----------------------------------------------------------------------------------------------- UNet stage
def _tokenizer(cfg: T2IConfig):
    from harivo.tokenizer import build_tokenizer

    return build_tokenizer(Path(cfg.run_dir) / "tokenizer")


def frame_cache_key(cfg: T2IConfig) -> str:
    """What the caches of `training_frames` depend on (the world's version, data, frame choice, size)."""
    from harivo.data.shapes import WORLD_VERSION

    return f"{WORLD_VERSION}_n{cfg.train_videos}_f{cfg.frames_per_video}_s{cfg.seed}_{cfg.image_size}"


def training_frames(cfg: T2IConfig):
    """(spec, frame) for `frames_per_video` random frames of each of `train_videos` training videos, in the one
    order that every stage-1 cache (latents, object masks) is stored in."""
    from harivo.data.shapes import make_dataset, render_video

    data = make_dataset(cfg.train_videos, cfg.seed, split="train", num_frames=16, size=cfg.image_size)
    rng = np.random.default_rng([cfg.seed, 5])
    for spec, vseed in data:
        video, _ = render_video(spec, vseed, 16, cfg.image_size)
        for f in rng.choice(16, size=cfg.frames_per_video, replace=False):
            yield spec, video[f]


def latent_cache(cfg: T2IConfig, vae, device) -> tuple[torch.Tensor, list[str], list[int]]:
    """Pre-encode (once) `frames_per_video` random frames of `train_videos` training videos -> cached latents."""
    vae_file = Path(cfg.run_dir) / "vae" / "diffusion_pytorch_model.safetensors"
    stamp = str(int(vae_file.stat().st_mtime)) if vae_file.exists() else "mem"
    path = Path(cfg.run_dir) / "cache" / f"latents_{frame_cache_key(cfg)}.safetensors"
    meta_path = path.with_suffix(".json")
    if path.is_file() and meta_path.is_file():
        meta = read_json(meta_path)
        if meta.get("vae_stamp") == stamp:
            return load_tensors(path)["latents"], meta["captions"], meta["caption_index"]
    specs, frames = zip(*training_frames(cfg))
    captions: list[str] = sorted({s.caption for s in specs})
    cidx = {c: i for i, c in enumerate(captions)}
    caption_index = [cidx[s.caption] for s in specs]
    frames = np.stack(frames)
    vae.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(frames), 256):
            out.append(vae.encode(to_pixels(frames[i:i + 256]).to(device)).latent_dist.mode().float().cpu())
    lat = torch.cat(out)
    save_tensors(path, {"latents": lat})
    write_json(meta_path, {"vae_stamp": stamp, "captions": captions, "caption_index": caption_index})
    return lat, captions, caption_index


def object_mask_cache(cfg: T2IConfig) -> torch.Tensor:
    """(N, 1, h, w) share of each latent pixel's 4x4 pixel cell that is object (not the background colour), dilated
    by one latent pixel, for the frames of `latent_cache` in the same order (`training_frames`)."""
    from harivo.data.shapes import BACKGROUNDS

    path = Path(cfg.run_dir) / "cache" / f"object_masks_{frame_cache_key(cfg)}.safetensors"
    if path.is_file():
        return load_tensors(path)["masks"]
    masks = [np.any(frame != np.array(BACKGROUNDS[spec.background], np.uint8), axis=-1)
             for spec, frame in training_frames(cfg)]
    m = torch.from_numpy(np.stack(masks)).float()[:, None]
    m = torch.nn.functional.max_pool2d(torch.nn.functional.avg_pool2d(m, 4), 3, stride=1, padding=1)
    save_tensors(path, {"masks": m.contiguous()})
    return m


def sample_images(vae, text_encoder, tokenizer, unet, prompts, seed, steps, guidance, device):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=ddim_scheduler(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    gens = [torch.Generator().manual_seed(seed + i) for i in range(len(prompts))]
    with torch.no_grad():
        out = pipe(prompts, num_inference_steps=steps, guidance_scale=guidance, generator=gens, output_type="np",
                   height=cfg_size(vae), width=cfg_size(vae)).images
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def cfg_size(vae) -> int:
    return int(vae.config.sample_size)


def sample_prompts(n: int, seed: int) -> tuple[list[str], list[bool]]:
    """~2/3 prompts of the training split, ~1/3 of the held-out split (fixed by the seed)."""
    from harivo.data.shapes import all_specs

    rng = np.random.default_rng([seed, 3])
    n_held = n // 3
    train, held = all_specs("train"), all_specs("held_out")
    pick_t = [train[i] for i in rng.choice(len(train), size=n - n_held, replace=False)]
    pick_h = [held[i] for i in rng.choice(len(held), size=min(n_held, len(held)), replace=False)]
    return [s.caption for s in pick_t + pick_h], [False] * len(pick_t) + [True] * len(pick_h)


def warm_start(folder: Path, parts: dict[str, tuple[torch.nn.Module, ...]]) -> None:
    """Load `folder/<part>/*.safetensors` (strict) into every module of each part."""
    for part, modules in parts.items():
        files = sorted((folder / part).glob("*.safetensors"))
        if len(files) != 1:
            raise ValueError(f"init_from: expected one .safetensors file in {str(folder / part)!r}, found {len(files)}")
        weights = load_tensors(files[0], what=f"init_from {part}")
        for m in modules:
            m.load_state_dict(weights, strict=True)


def train_unet(cfg: T2IConfig, acc, t_start: float, argv_str: str) -> dict:
    from diffusers import AutoencoderKL, DDPMScheduler
    from tqdm.auto import tqdm

    from harivo.t2i_models import (EMA, CaptionProbe, caption_labels, check_motion_compatible, make_text_encoder,
                                   make_unet, n_params)

    run = Path(cfg.run_dir)
    init = Path(cfg.init_from) if cfg.init_from else None
    if init is not None and not (init / "unet" / "config.json").is_file():
        raise ValueError(f"init_from: expected a StableDiffusionPipeline folder with unet/, got {cfg.init_from!r}")
    vae_dir = run / "vae"
    if not (vae_dir / "config.json").is_file() and init is not None:
        vae_dir = init / "vae"
    if not (vae_dir / "config.json").is_file():
        raise ValueError(f"stage: the unet stage needs a trained VAE in {str(vae_dir)!r}; run --stage vae first")
    device = acc.device
    vae = AutoencoderKL.from_pretrained(vae_dir, use_safetensors=True).to(device).eval().requires_grad_(False)
    if (vae_dir / "vae_metrics.json").is_file():
        vae_info = read_json(vae_dir / "vae_metrics.json")
    else:  # an exported pipeline keeps the VAE's record in training.json
        vae_info = read_json(init / "training.json").get("vae", {})
    sf = float(vae.config.scaling_factor)
    tokenizer = _tokenizer(cfg)
    latents, captions, caption_index = latent_cache(cfg, vae, device)
    masks = object_mask_cache(cfg) if cfg.unet_object_weight != 1.0 else None
    cap_ids = token_ids(tokenizer, captions)
    empty_ids = token_ids(tokenizer, [""])[0]
    cap_index = torch.tensor(caption_index)
    acc.print(f"[unet] {len(latents)} cached latents, {len(captions)} captions, scaling_factor {sf:.4f}")

    torch.manual_seed(cfg.seed + 1)
    te = make_text_encoder(tokenizer, cfg.text_hidden, cfg.text_layers, cfg.text_heads, cfg.text_intermediate)
    unet = make_unet(cfg.unet_channels, cfg.unet_layers_per_block, cfg.text_hidden, cfg.unet_attention_head_dim,
                     cfg.unet_norm_groups, cfg.image_size // 4, cfg.latent_channels)
    motion_params = check_motion_compatible(unet, cfg.unet_layers_per_block)
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
        te.gradient_checkpointing_enable()
    ema_u, ema_t = EMA(unet, cfg.ema_decay), EMA(te, cfg.ema_decay)
    probe = CaptionProbe(cfg.text_hidden) if cfg.text_probe_weight else None
    cap_labels = caption_labels(captions) if probe is not None else None
    params = list(unet.parameters()) + list(te.parameters()) + (list(probe.parameters()) if probe else [])
    opt = torch.optim.AdamW(params, lr=cfg.unet_lr, weight_decay=cfg.weight_decay)
    state_dir = run / "state_unet"
    step, history, minutes_before = 0, [], 0.0
    stateful = {"unet": unet, "text_encoder": te, "ema_unet": ema_u.module, "ema_text_encoder": ema_t.module,
                **({"caption_probe": probe} if probe is not None else {})}
    if cfg.resume and (state_dir / "state.json").is_file():
        meta = load_state(state_dir, stateful, opt)
        step, history, minutes_before = meta["step"], meta["history"], meta["minutes"]
        acc.print(f"[unet] resumed at step {step}")
    elif init is not None:
        warm_start(init, {"unet": (unet, ema_u.module), "text_encoder": (te, ema_t.module)})
        acc.print(f"[unet] warm start from {init} (fresh optimizer)")
    unet, te, opt = acc.prepare(unet, te, opt)
    if probe is not None:
        probe = acc.prepare(probe)
    ema_u.module.to(device)
    ema_t.module.to(device)
    raw_u, raw_t = acc.unwrap_model(unet), acc.unwrap_model(te)
    raw_probe = acc.unwrap_model(probe) if probe is not None else None
    noise_sched = DDPMScheduler(**_sched_kwargs())
    alphas_cumprod = noise_sched.alphas_cumprod
    seg_start = time.time()
    last_export = time.time()
    info_base = {
        "params": {"unet": n_params(raw_u), "text_encoder": n_params(raw_t), "vae": n_params(vae),
                   "motion_adapter_for_stage2": motion_params},
    }

    def minutes():
        return minutes_before + (time.time() - seg_start) / 60

    def checkpoint():
        save_state(state_dir, step, stateful, opt,  # the unwrapped modules, as loaded
                   {"history": history, "minutes": minutes(), "config": dataclasses.asdict(cfg)})
        write_history(run, "unet", history, "UNet loss")

    def export():
        info = {**info_base, "steps": step, "minutes": minutes(),
                "text_encoder": text_encoder_record(ema_t.module, tokenizer, raw_probe, cfg)}
        export_pipeline(cfg, vae, ema_t.module, tokenizer, ema_u.module, info, vae_info, history, argv_str)
        acc.print(f"[unet] exported {cfg.output_dir} at step {step}")

    prompts, _ = sample_prompts(8, cfg.seed + 11)
    bar = tqdm(total=cfg.unet_steps, initial=step, desc="unet", disable=not acc.is_local_main_process, mininterval=5)
    unet.train()
    te.train()
    n = len(latents)
    while step < cfg.unet_steps:
        if cfg.max_minutes and (time.time() - t_start) / 60 >= cfg.max_minutes:
            break
        lr = lr_at(step, cfg.unet_lr, cfg.unet_warmup_steps, cfg.unet_steps, cfg.unet_min_lr_ratio)
        for g in opt.param_groups:
            g["lr"] = lr
        loss, mse, probe_ce = unet_loss(step, cfg, latents, cap_index, cap_ids, empty_ids, sf, noise_sched,
                                        alphas_cumprod, unet, te, acc, n, probe, cap_labels, masks)
        opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        if cfg.grad_clip:
            acc.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        step += 1
        ema_u.update(raw_u, step)
        ema_t.update(raw_t, step)
        bar.update(1)
        if step % cfg.log_every == 0 or step == 1:
            history.append({"step": step, "loss": loss.item(), "loss_eps_mse": mse.item(), "lr": lr,
                            "minutes": round(minutes(), 3),
                            **({"loss_text_probe": probe_ce.item()} if probe_ce is not None else {})})
            bar.set_postfix(loss=f"{loss.item():.4f}", mse=f"{mse.item():.4f}")
        if step % cfg.checkpoint_every == 0:
            checkpoint()
        if step % cfg.sample_every == 0:
            imgs = sample_images(vae, ema_t.module, tokenizer, ema_u.module, prompts, cfg.seed, cfg.eval_steps,
                                 cfg.eval_guidance, device)
            save_grid(run / "samples" / f"unet_{step:06d}.png", list(imgs), [_short(p) for p in prompts], cols=4)
        if cfg.export_every_minutes and (time.time() - last_export) / 60 >= cfg.export_every_minutes:
            export()
            last_export = time.time()
    bar.close()
    checkpoint()
    export()
    return {**info_base, "steps": step, "minutes": minutes(), "finished": step >= cfg.unet_steps}


def unet_loss(step, cfg, latents, cap_index, cap_ids, empty_ids, sf, noise_sched, alphas_cumprod, unet, te, acc, n,
              probe=None, cap_labels=None, masks=None):
    """Min-SNR-weighted epsilon loss of training step `step` (batch, noise, t and caption drop from (seed, step)).

    Returns (loss, eps MSE, caption-probe cross-entropy or None). With a `probe` (CaptionProbe) and `cap_labels`
    ((captions, 4), `caption_labels`), loss += text_probe_weight × the probe's cross-entropy on the batch's
    non-empty captions; it draws no random numbers, so the batch, noise and timesteps are those of a run without.
    """
    from harivo.losses import offset_noise
    from harivo.t2i_models import min_snr_weights

    device = acc.device
    gen = step_generator(cfg.seed, 2, step)
    idx = torch.randint(n, (cfg.unet_batch_size,), generator=gen)
    x0 = latents[idx] * sf
    noise = torch.randn(x0.shape, generator=gen)
    t = torch.randint(0, noise_sched.config.num_train_timesteps, (cfg.unet_batch_size,), generator=gen)
    drop = torch.rand(cfg.unet_batch_size, generator=gen) < cfg.cond_drop
    if cfg.noise_offset:  # drawn after the rest, so runs without it keep their exact random stream
        noise = offset_noise(noise, cfg.noise_offset, gen)
    ids = cap_ids[cap_index[idx]].clone()
    ids[drop] = empty_ids
    noisy = noise_sched.add_noise(x0, noise, t)
    noisy, noise, t, ids = noisy.to(device), noise.to(device), t.to(device), ids.to(device)
    with acc.autocast():
        out = te(ids)
        pred = unet(noisy, t, out[0]).sample
    sq = (pred.float() - noise) ** 2
    if masks is not None and cfg.unet_object_weight != 1.0:  # object-weighted ε-MSE (no random numbers drawn)
        wm = 1.0 + (cfg.unet_object_weight - 1.0) * masks[idx].to(device)
        per = (sq * (wm / wm.mean(dim=(1, 2, 3), keepdim=True))).mean(dim=(1, 2, 3))
    else:
        per = sq.mean(dim=(1, 2, 3))
    w = min_snr_weights(t, alphas_cumprod, cfg.snr_gamma)
    loss = (w * per).mean()
    probe_ce = None
    if probe is not None and cfg.text_probe_weight and bool((~drop).any()):
        keep = (~drop).to(device)
        probe_ce = probe(out[1][keep], cap_labels[cap_index[idx]].to(device)[keep])  # the CE (DDP-safe forward)
        loss = loss + cfg.text_probe_weight * probe_ce
    return loss, per.mean(), probe_ce


def export_pipeline(cfg, vae, text_encoder, tokenizer, unet, info, vae_info, history, argv_str) -> None:
    """Write output_dir atomically: StableDiffusionPipeline folder + training.json + curves + config."""
    import diffusers
    import transformers
    from diffusers import StableDiffusionPipeline

    from harivo.tokenizer import build_tokenizer_files

    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=ddim_scheduler(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    with atomic_dir(cfg.output_dir) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        build_tokenizer_files(tmp / "tokenizer")  # guarantee vocab.json + merges.txt in CLIP format
        last = history[-1] if history else {}
        tail = history[-20:]
        training = {
            "where_trained": where_trained(),
            "command": argv_str,
            "vae": {k: v for k, v in vae_info.items() if k != "evals"},
            "unet": {
                "steps": info["steps"],
                "minutes": round(info["minutes"], 2),
                "final_loss": last.get("loss"),
                "final_loss_mean_last_20_logs": float(np.mean([r["loss"] for r in tail])) if tail else None,
                "final_eps_mse_mean_last_20_logs": float(np.mean([r["loss_eps_mse"] for r in tail])) if tail else None,
                "batch_size": cfg.unet_batch_size,
                "exported_weights": f"EMA (decay {cfg.ema_decay})",
            },
            "params": info["params"],
            "text_encoder": info.get("text_encoder", {}),
            "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                         "transformers": transformers.__version__, "python": platform.python_version()},
        }
        # a warm-started export keeps its history: the init's training record and its loss curves
        init = Path(cfg.init_from) if cfg.init_from else None
        if init is not None:
            training["warm_started_from"] = warm_start_record(init)
        write_json(tmp / "training.json", training)
        write_text(tmp / "t2i_config.yaml", config_to_yaml(cfg))
        write_history(tmp, "unet", history, "UNet loss (min-SNR weighted eps MSE)")
        copies = [(Path(cfg.run_dir) / "vae" / "loss_vae", "loss_vae")]  # this run's VAE curve first, else the init's
        if init is not None:  # the init's UNet curves move one generation back: loss_unet -> loss_unet_init, ...
            copies += [(init / "loss_vae", "loss_vae")]
            copies += [(init / stem, "loss_unet_init" + stem[len("loss_unet"):])
                       for stem in sorted({f.stem for f in init.glob("loss_unet*.csv")})]
        for src, name in copies:
            for suffix in ("csv", "png"):
                source, target = src.with_suffix("." + suffix), tmp / f"{name}.{suffix}"
                if source.is_file() and not target.is_file():
                    target.write_bytes(source.read_bytes())


@torch.no_grad()
def text_encoder_record(text_encoder, tokenizer, probe, cfg: T2IConfig) -> dict:
    """What training.json says of the exported (EMA) text encoder: how far a verb moves its hidden states against
    a colour or a shape (`verb_separation`), and with a probe, its accuracy on train and held-out captions."""
    from harivo.data.shapes import all_specs
    from harivo.t2i_models import caption_labels, verb_separation

    was = text_encoder.training
    text_encoder.eval()
    record: dict = {"separation": {k: round(v, 4) for k, v in verb_separation(text_encoder, tokenizer).items()},
                    "text_probe_weight": cfg.text_probe_weight}
    if probe is not None:
        for split in ("train", "held_out"):
            caps = [s.caption for s in all_specs(split)]
            pooled = text_encoder(token_ids(tokenizer, caps).to(text_encoder.device))[1]
            acc = probe.accuracy(pooled, caption_labels(caps).to(pooled.device))
            record[f"probe_accuracy_{split}"] = {k: round(v, 4) for k, v in acc.items()}
    text_encoder.train(was)
    return record


def warm_start_record(init: Path) -> dict:
    """What training.json keeps of the folder a run was warm-started from (its command, machine, UNet record)."""
    record = read_json(init / "training.json") if (init / "training.json").is_file() else {}
    keep = ("command", "where_trained", "unet", "warm_started_from")
    return {"folder": str(init), **{k: record[k] for k in keep if k in record}}


# ------------------------------------------------------------------------------------------------ evaluation
def evaluate(cfg: T2IConfig, folder: str | None = None, record: bool = True) -> dict:
    """Sample `eval_prompts` captions with the stock StableDiffusionPipeline and score them with the checker; the
    result goes to `run_dir` and, with `record`, to eval.json beside the weights."""
    from diffusers import StableDiffusionPipeline

    from harivo.t2i_models import verb_separation

    folder = folder or cfg.output_dir
    if not (Path(folder) / "model_index.json").is_file():
        raise ValueError(f"output_dir: no StableDiffusionPipeline folder at {folder!r}")
    pipe = StableDiffusionPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    prompts, held = sample_prompts(cfg.eval_prompts, cfg.seed)
    gens = [torch.Generator().manual_seed(1000 + i) for i in range(len(prompts))]
    t0 = time.time()
    with torch.no_grad():
        out = pipe(prompts, num_inference_steps=cfg.eval_steps, guidance_scale=cfg.eval_guidance, generator=gens,
                   output_type="np").images
    imgs = (np.clip(out, 0, 1) * 255).round().astype(np.uint8)
    result = {"folder": str(folder), "prompts": len(prompts), "steps": cfg.eval_steps,
              "guidance": cfg.eval_guidance, "sampling_seconds": round(time.time() - t0, 1)}
    rd = _checker()
    titles = [_short(p) for p in prompts]
    if rd is not None:
        from harivo.data.shapes import ShapeSpec

        from harivo.data.checker import cue_agrees, cue_motion

        rows = []
        for p, h, im in zip(prompts, held, imgs):
            spec = ShapeSpec.from_caption(p)
            r = rd(im)
            rows.append({"prompt": p, "held_out": h, "colour": r.colour == spec.colour, "shape": r.shape == spec.shape,
                         "background": r.background == spec.background, "cue": cue_agrees(spec.motion, r),
                         "read": [r.colour, r.shape, r.background, cue_motion(r)]})
        def frac(sel, key):
            sel = [r for r in rows if sel(r)]
            if key == "all":
                return sum(r["colour"] and r["shape"] and r["background"] for r in sel) / max(1, len(sel))
            return sum(r[key] for r in sel) / max(1, len(sel))
        for name, sel in (("all", lambda r: True), ("seen", lambda r: not r["held_out"]), ("held_out", lambda r: r["held_out"])):
            result[name] = {k: frac(sel, k) for k in ("all", "colour", "shape", "background", "cue")}
        result["rows"] = rows
        titles = [("ok " if (r["colour"] and r["shape"] and r["background"]) else "X ") + ("" if r["cue"] else "~") + t
                  for r, t in zip(rows, titles)]
    else:
        result["checker"] = "harivo.data.checker not available"
    train_info = Path(folder) / "training.json"
    step = read_json(train_info).get("unet", {}).get("steps", 0) if train_info.is_file() else 0
    result["unet_steps"] = step
    with torch.no_grad():
        result["text_separation"] = verb_separation(pipe.text_encoder, pipe.tokenizer)
    grid = Path(cfg.run_dir) / "samples" / f"eval_step{step:06d}.png"
    save_grid(grid, list(imgs), titles, cols=8)
    result["grid"] = str(grid)
    write_json(Path(cfg.run_dir) / f"eval_step{step:06d}.json", result)
    if record:
        write_json(Path(folder) / "eval.json", result)  # beside the weights it scores (dropped by the next export)
    return result


# ------------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    cfg = parse_config(argv)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    t_start = time.time()
    acc = make_accelerator(cfg)
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    write_text(run / "t2i_config.yaml", config_to_yaml(cfg))
    argv_str = "python -m harivo.train_t2i " + " ".join(argv)
    out: dict = {}
    if cfg.stage in ("vae", "all"):
        vae_done = (run / "vae" / "vae_metrics.json").is_file() and cfg.resume and \
            read_json(run / "vae" / "vae_metrics.json").get("finished") and cfg.stage == "all"
        if not vae_done:
            out["vae"] = train_vae(cfg, acc, t_start)
            if not out["vae"]["finished"]:
                return out
    if cfg.stage in ("unet", "all"):
        out["unet"] = train_unet(cfg, acc, t_start, argv_str)
    if cfg.eval:
        out["eval"] = evaluate(cfg)
        print(json.dumps({k: v for k, v in out["eval"].items() if k != "rows"}, indent=1), flush=True)
    return out


if __name__ == "__main__":
    run_cli(main, "python -m harivo.train_t2i")
