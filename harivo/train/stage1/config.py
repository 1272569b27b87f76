"""Stage 1's configuration: `T2IConfig` (every field a `--flag` of `python -m harivo.train.t2i` and a key of
configs/shapes-t2i.yaml, with why it has its value), its validation, and the command-line parser.

Precedence: field defaults < the YAML file of `--config` < flags given on the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass

from harivo.data.shapes import WORLD, World
from harivo.train.utils import add_config_flags, config_from_args

STAGES = ("vae", "unet", "all", "none")
DESCRIPTION = "Stage 1: train the tiny Stable-Diffusion-shaped text-to-image model of the shapes world from scratch."


# ----------------------------------------------------------------------------------------------- config
@dataclass
class T2IConfig:
    """Every setting of a stage-1 run, one field per flag, grouped by part (run, VAE, text encoder, UNet,
    bookkeeping). A long class by nature: a flat list of fields, each with why it has its value."""

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
    world: str = WORLD.version  # the shapes world (`shapes.World.parse`: a version or settings such as
    #   band_px=4), recorded in the export's training.json
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
    zero_snr: bool = False  # zero terminal SNR + v-prediction + trailing timesteps (Lin et al. 2024,
    #   t2i_models.schedule); warm-starting an epsilon model with it converts the model (how shapes-sd-zsnr was made)
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
    "vae_eval_images", "vae_scale_images", "text_hidden", "text_layers", "text_heads", "text_intermediate",
    "unet_layers_per_block", "unet_attention_head_dim", "unet_norm_groups", "unet_batch_size", "train_videos",
    "frames_per_video", "log_every", "checkpoint_every", "sample_every", "eval_prompts", "eval_steps",
}
_NONNEG_INT = {"vae_steps", "unet_steps", "vae_warmup_steps", "unet_warmup_steps", "num_threads", "seed"}
_POSITIVE_FLOAT = {"vae_lr", "unet_lr", "ema_decay", "vae_object_weight", "unet_object_weight"}
_NONNEG_FLOAT = {"noise_offset", "text_probe_weight", "vae_kl_weight", "vae_l1_weight", "vae_mse_weight",
                 "weight_decay", "grad_clip", "snr_gamma", "max_minutes", "export_every_minutes", "vae_stop_psnr",
                 "eval_guidance"}
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
    World.parse(cfg.world)  # ValueError naming `world`
    if cfg.mixed_precision not in ("no", "bf16", "fp16"):
        bad("mixed_precision", "must be one of ['no', 'bf16', 'fp16']")
    if cfg.ema_decay >= 1:
        bad("ema_decay", "must be < 1")
    if cfg.image_size % 16 or cfg.image_size < 16:
        bad("image_size", "must be a multiple of 16 and >= 16")
    for name, groups in (("vae_channels", cfg.vae_norm_groups), ("unet_channels", cfg.unet_norm_groups)):
        ch = getattr(cfg, name)
        if not isinstance(ch, (tuple, list)) or len(ch) != 3 or \
                any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in ch):
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
    p = argparse.ArgumentParser(prog="python -m harivo.train.t2i", description=DESCRIPTION)
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

