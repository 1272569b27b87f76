"""Stage 2: train HARIVO on top of the frozen shapes-world T2I model (§3, Eq. 5), one run per Table 1 row.

    python -m harivo.train --variant full --config configs/shapes-harivo.yaml --max-minutes 45 --resume
    accelerate launch -m harivo.train --variant baseline --config configs/shapes-harivo.yaml --resume
    accelerate launch --multi_gpu --num_processes 8 -m harivo.train --config configs/sd15-webvid.yaml --resume

Variants (Table 1; same seed, data and number of iterations):
    baseline  motion modules, L_simple only (= AnimateDiff)              row A
    trs-dc    + L_TRS (Eq. 3) and L_DC (Eq. 4)                            row B
    mapping   + mapping network (§3.2) and L_reg (Eq. 2), which shapes it row C
    full      + frame-wise tokens (§3.5)                                  row D (MG is inference-only)

The T2I weights stay frozen; the motion adapter (zero-initialised `proj_out`, as AnimateDiff), mapping network,
frame-token generator and projection head g train with AdamW, lr 1e-4 → 1e-5 (App. D), on the base model's
noise schedule (linear betas 0.00085–0.012). Videos are VAE-encoded and captions text-encoded *once* and cached
in `cache_dir` (or, with `stream_data`, decoded and encoded step by step: WebVid at scale, `data/stream.py`);
batch, noise and timesteps of step n are a pure function of (seed, n), so `--resume` after a
kill continues exactly where the last saved state stopped. Output (DESIGN.md §3): `out/` with
`motion_adapter/`, `harivo.safetensors`, `config.json`, `training.json`, `loss_curves.{png,csv}` and
`train_config.yaml`; training state, samples and logs go to `run_dir/`.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import shlex
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import media
from .config import TABLE1, HarivoConfig, LossConfig, _check_range
from .fileio import atomic_dir, load_tensors, read_json, save_tensors, write_json, write_text
from .losses import NegativeQueue, capture_hspace, training_step
from .model import HarivoVideoModel, load_unet2d
from .tokenizer import token_ids
from .train_utils import (WarmupDecay, add_config_flags, config_from_args, config_to_yaml, has_training_state,
                          load_training_state, run_cli, save_training_state, step_generator, where_trained,
                          write_loss_curves)

# Table 1 rows: which networks exist and which terms of Eq. 5 are on.
VARIANTS: dict[str, dict[str, bool]] = {
    "baseline": dict(use_mapping=False, use_frame_tokens=False, use_trs=False, use_dc=False, use_reg=False),
    "trs-dc": dict(use_mapping=False, use_frame_tokens=False, use_trs=True, use_dc=True, use_reg=False),
    "mapping": dict(use_mapping=True, use_frame_tokens=False, use_trs=True, use_dc=True, use_reg=True),
    "full": dict(use_mapping=True, use_frame_tokens=True, use_trs=True, use_dc=True, use_reg=True),
}
TABLE1_ROW = {v: TABLE1[v][0] for v in VARIANTS}  # config.TABLE1: one naming of the rows
LOSS_TERMS = ("total", "simple", "trs", "reg", "dc")


# ----------------------------------------------------------------------------------------------- config
@dataclass
class TrainConfig:
    # --- run -------------------------------------------------------------------------------------------
    variant: str = "full"  # Table 1 row: baseline | trs-dc | mapping | full
    base_model: str = "checkpoints/shapes-sd"  # frozen T2I StableDiffusionPipeline folder (stage 1 output) or hub id
    out: str = ""  # checkpoint folder; "" = checkpoints/harivo-shapes-<variant>
    run_dir: str = ""  # training state, samples, logs; "" = runs/harivo-<variant>
    cache_dir: str = "runs/harivo-cache"  # pre-encoded latents + text embeddings, shared by the variants
    seed: int = 0  # model init, data and every step's batch/noise/timesteps derive from it
    resume: bool = False  # continue from run_dir/state if it exists
    max_minutes: float = 0.0  # stop gracefully (save + export) after this many minutes; 0 = no limit
    segment_steps: int = 0  # stop gracefully after this many steps in this run; 0 = no limit
    mixed_precision: str = "no"  # no | fp16 | bf16 (accelerate); fp32 is fastest on CPU
    gradient_checkpointing: bool = False  # recompute UNet activations in backward (GPU memory; slower)
    num_threads: int = 0  # torch CPU threads; 0 = torch's default
    # --- data ------------------------------------------------------------------------------------------
    data: str = "shapes"  # "shapes" (the embedded world, train split only) or a WebVid-style CSV path
    train_videos: int = 2000  # shapes-world training videos pre-encoded once (~2 per (colour, shape, motion, bg))
    num_frames: int = 16  # frames per video (shapes world: 16; paper: 24)
    video_size: int = 64  # pixels; video_size / VAE factor must equal the UNet's sample size
    webvid_fps: float = 0.0  # WebVid data: sampling fps (paper: 6); 0 = every frame
    stream_data: bool = False  # WebVid data: decode + VAE-encode each step's videos on the fly, no pre-encoded cache
    data_workers: int = 4  # stream_data: threads decoding the next step's videos
    # --- model -----------------------------------------------------------------------------------------
    motion_adapter: str = ""  # init the motion modules from this MotionAdapter (folder or hub id); "" = fresh (paper)
    motion_num_attention_heads: int = 4  # heads of the temporal attention (must divide the UNet channels)
    motion_max_seq_length: int = 32  # longest video the motion modules' positional encoding covers
    use_motion_mid_block: bool = True  # motion module in the mid block too (AnimateDiff v2 / v3)
    num_frame_tokens: int = 3  # K in §3.5
    mapping_hidden_channels: int = 64  # width of the mapping network's 3D-conv branch (ours)
    mapping_heads: int = 8  # appendix MappingLayer: heads=8
    mapping_head_dim: int = 64  # appendix MappingLayer: dim_head=64
    # --- optimisation ----------------------------------------------------------------------------------
    max_steps: int = 3000  # total optimizer steps (= length of the lr schedule); same for every variant
    batch_size: int = 4  # videos per step (per process)
    lr: float = 1e-4  # peak AdamW lr (App. D: 1e-4)
    min_lr: float = 1e-5  # lr at max_steps (App. D: decreased to 1e-5)
    lr_warmup_steps: int = 100  # linear warm-up from 0
    lr_schedule: str = "cosine"  # cosine | linear decay after warm-up
    weight_decay: float = 1e-2  # AdamW (AnimateDiff's adam_weight_decay)
    grad_clip: float = 1.0  # max gradient norm; 0 = off
    cond_drop: float = 0.1  # fraction of empty captions, for CFG (AnimateDiff's cfg_random_null_text_ratio)
    # --- losses (Eq. 5); which terms are on is set by the variant -------------------------------------
    trs_weight: float = 0.1  # λ_TRS (§4)
    reg_weight: float = 0.1  # λ_reg (§4)
    dc_weight: float = 0.1  # λ_DC (§4)
    dc_temperature: float = 0.1  # τ in Eq. 4
    dc_queue_size: int = 256  # negatives kept from earlier positive pairs
    dc_in_batch: bool = True  # ours: the batch's other videos are L_DC negatives too (config.LossConfig.dc_in_batch)
    dc_center_h: bool = True  # ours: h centred over the batch's frames before g (config.LossConfig.dc_center_h)
    noise_offset: float = 0.0  # offset noise per (video, channel, frame), ours (config.LossConfig.noise_offset)
    trs_chunk_size: int = 0  # 0 = L_TRS keeps the attention maps (fastest, small models); N = memory-efficient, N queries at a time
    # --- bookkeeping -----------------------------------------------------------------------------------
    log_every: int = 10  # one loss row (mean over the window) every N steps
    checkpoint_every: int = 100  # training state + exported checkpoint every N steps (atomic)
    sample_every: int = 500  # sample videos every N steps (and at the end); 0 = never
    sample_prompts: int = 4  # prompts per sample event (the last one held out when >= 4)
    sample_steps: int = 25  # DDIM steps of the samples (App. D)

    def resolved(self) -> "TrainConfig":
        return dataclasses.replace(
            self,
            out=self.out or f"checkpoints/harivo-shapes-{self.variant}",
            run_dir=self.run_dir or f"runs/harivo-{self.variant}",
        )


# Fields that must not change when a run is resumed (the others are run control or bookkeeping).
_FIXED_ON_RESUME = (
    "variant", "seed", "data", "train_videos", "num_frames", "video_size", "webvid_fps", "stream_data",
    "motion_adapter", "motion_num_attention_heads",
    "motion_max_seq_length", "use_motion_mid_block", "num_frame_tokens", "mapping_hidden_channels", "mapping_heads",
    "mapping_head_dim", "batch_size", "lr", "min_lr", "lr_warmup_steps", "lr_schedule", "weight_decay", "grad_clip",
    "cond_drop", "trs_weight", "reg_weight", "dc_weight", "dc_temperature", "dc_queue_size", "dc_in_batch",
    "dc_center_h", "noise_offset",
)


def validate(cfg: TrainConfig) -> TrainConfig:
    """ValueError naming the field for any value the training cannot use."""
    if cfg.variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {list(VARIANTS)}, got {cfg.variant!r}")
    if cfg.mixed_precision not in ("no", "fp16", "bf16"):
        raise ValueError(f"mixed_precision: expected 'no', 'fp16' or 'bf16', got {cfg.mixed_precision!r}")
    if cfg.lr_schedule not in ("cosine", "linear"):
        raise ValueError(f"lr_schedule: expected 'cosine' or 'linear', got {cfg.lr_schedule!r}")
    if not cfg.base_model:
        raise ValueError("base_model: expected a StableDiffusionPipeline folder, got ''")
    for name in ("train_videos", "video_size", "motion_num_attention_heads", "mapping_hidden_channels",
                 "mapping_heads", "mapping_head_dim", "max_steps", "batch_size", "log_every", "checkpoint_every",
                 "dc_queue_size", "sample_prompts", "sample_steps", "data_workers"):
        _check_range(name, getattr(cfg, name), 1, integer=True)
    for name in ("seed", "segment_steps", "num_threads", "lr_warmup_steps", "sample_every", "num_frame_tokens"):
        _check_range(name, getattr(cfg, name), 0, integer=True)
    _check_range("num_frames", cfg.num_frames, 2, integer=True)
    _check_range("motion_max_seq_length", cfg.motion_max_seq_length, cfg.num_frames, integer=True)
    for name in ("lr", "min_lr", "dc_temperature"):
        _check_range(name, getattr(cfg, name), 1e-12)
    for name in ("weight_decay", "grad_clip", "trs_weight", "reg_weight", "dc_weight", "max_minutes", "webvid_fps",
                 "noise_offset"):
        _check_range(name, getattr(cfg, name), 0.0)
    _check_range("cond_drop", cfg.cond_drop, 0.0, 1.0)
    if cfg.min_lr > cfg.lr:
        raise ValueError(f"min_lr: expected at most lr ({cfg.lr}), got {cfg.min_lr}")
    if VARIANTS[cfg.variant]["use_frame_tokens"] and cfg.num_frame_tokens < 1:
        raise ValueError(f"num_frame_tokens: variant {cfg.variant!r} uses frame tokens, expected >= 1, got 0")
    if cfg.data != "shapes" and not cfg.data.endswith(".csv"):
        raise ValueError(f"data: expected 'shapes' or a WebVid-style .csv file, got {cfg.data!r}")
    if cfg.stream_data and cfg.data == "shapes":
        raise ValueError("stream_data: streaming is for WebVid-style CSV data; the shapes world is pre-encoded")
    return cfg


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harivo.train", description=__doc__.split("\n")[0])
    p.add_argument("--config", help="YAML file of TrainConfig keys (CLI flags override it)")
    add_config_flags(p, TrainConfig)
    return p


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    """Defaults < YAML (--config) < CLI flags; returns the validated, resolved config."""
    return validate(config_from_args(TrainConfig, build_parser().parse_args(argv))).resolved()


# ------------------------------------------------------------------------------------ base model + data
@dataclass
class BaseModel:
    """The frozen stage-1 components."""

    vae: nn.Module
    text_encoder: nn.Module
    tokenizer: object
    unet: nn.Module
    scheduler_config: dict
    path: Path
    fingerprints: dict[str, str]  # sha256 (first 16 hex) of each weights file

    @property
    def vae_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)


def _sha(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def model_folder(source: str, what: str = "base_model") -> Path:
    """A local folder for `source`: the folder itself, or a hub id (`owner/name`) fetched into the HF cache
    (safetensors of the pipeline's sub-models only, no .bin, fp16 or single-file copies)."""
    path = Path(source)
    if path.exists() or path.is_absolute() or source.startswith(".") or source.count("/") != 1:
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source, allow_patterns=["*.json", "*.txt", "*.safetensors"],
                                      ignore_patterns=["*fp16*", "*non_ema*", "*.ckpt", "*.bin", "*pruned*"]))
    except Exception as e:  # offline, unknown repo, gated repo: say so, naming the field
        raise ValueError(f"{what}: {source!r} is no local folder and cannot be fetched from the hub ({e})") from None


def load_base(base_model: str) -> BaseModel:
    from diffusers import AutoencoderKL, DDIMScheduler
    from transformers import CLIPTextModel, CLIPTokenizer

    path = model_folder(base_model)
    if not (path / "unet").is_dir():
        raise ValueError(f"base_model: expected a StableDiffusionPipeline folder with unet/, got {base_model!r}")
    try:
        vae = AutoencoderKL.from_pretrained(path, subfolder="vae", use_safetensors=True)
        text_encoder = CLIPTextModel.from_pretrained(path, subfolder="text_encoder", use_safetensors=True)
        tokenizer = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer")
        scheduler_config = dict(DDIMScheduler.load_config(path, subfolder="scheduler"))
    except (OSError, ValueError) as e:
        raise ValueError(f"base_model: cannot load the T2I components from {base_model!r} ({e})") from None
    unet = load_unet2d(str(path))
    if scheduler_config.get("prediction_type", "epsilon") != "epsilon":
        raise ValueError(f"base_model: expected an epsilon-prediction scheduler, got {scheduler_config['prediction_type']!r}")
    fingerprints = {part: _sha(list((path / part).glob("*.safetensors"))) for part in ("vae", "text_encoder", "unet")}
    fingerprints["tokenizer"] = _sha([p for p in (path / "tokenizer").iterdir() if p.is_file()])
    for m in (vae, text_encoder, unet):
        m.eval().requires_grad_(False)
    return BaseModel(vae, text_encoder, tokenizer, unet, scheduler_config, path, fingerprints)


@dataclass
class VideoLatents:
    """The pre-encoded training set."""

    latents: torch.Tensor  # (N, c, f, h, w) float16, VAE latents × scaling_factor
    caption_index: torch.Tensor  # (N,) int64 into captions
    captions: list[str]
    text_embeds: torch.Tensor  # (C, M, D) text-encoder states of the captions
    empty_embeds: torch.Tensor  # (M, D) state of the empty caption (CFG's unconditional branch)

    def __len__(self) -> int:
        return len(self.latents)


def training_videos(cfg: TrainConfig):
    """(uint8 (f, h, w, 3) or float (3, f, h, w) in [-1, 1], caption) pairs of the training data."""
    if cfg.data == "shapes":
        from .data.shapes import is_held_out, make_dataset, render_video

        for spec, seed in make_dataset(cfg.train_videos, cfg.seed, split="train", num_frames=cfg.num_frames,
                                       size=cfg.video_size):
            assert not is_held_out(spec), spec  # held-out combinations are never trained on
            yield render_video(spec, seed, cfg.num_frames, cfg.video_size)[0], spec.caption
    else:
        from .data.webvid import WebVidDataset

        ds = WebVidDataset(cfg.data, num_frames=cfg.num_frames, fps=cfg.webvid_fps or None, size=cfg.video_size)
        for i in range(min(len(ds), cfg.train_videos)):
            item = ds[i]
            yield item["pixel_values"], item["caption"]


def _pixels(video) -> torch.Tensor:
    """→ (f, 3, h, w) float in [-1, 1]."""
    if isinstance(video, np.ndarray):
        return torch.from_numpy(video).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return video.permute(1, 0, 2, 3).float()


@torch.no_grad()
def encode_videos(cfg: TrainConfig, base: BaseModel, device: torch.device, chunk: int = 256) -> tuple[torch.Tensor, list[str]]:
    """VAE latents (mode of the posterior × scaling_factor, as stage 1) of every training video, once."""
    from tqdm.auto import tqdm

    vae = base.vae.to(device)
    scale = float(vae.config.scaling_factor)
    out, captions, pending = [], [], []

    def flush():
        frames = torch.cat([v for v in pending]).to(device)  # (n f, 3, h, w)
        z = torch.cat([vae.encode(frames[i:i + chunk]).latent_dist.mode() for i in range(0, len(frames), chunk)])
        z = z.float().cpu() * scale
        out.append(z.reshape(len(pending), cfg.num_frames, *z.shape[1:]).permute(0, 2, 1, 3, 4).half())  # (n, c, f, h, w)
        pending.clear()

    for video, caption in tqdm(training_videos(cfg), total=cfg.train_videos, desc="encode videos", mininterval=10):
        pending.append(_pixels(video))
        captions.append(caption)
        if len(pending) * cfg.num_frames >= chunk:
            flush()
    if pending:
        flush()
    return torch.cat(out), captions


@torch.no_grad()
def encode_captions(base: BaseModel, captions: list[str], device: torch.device) -> torch.Tensor:
    """(C, M, D) text-encoder states, as the pipelines compute them (padded to max length, no attention mask)."""
    ids = token_ids(base.tokenizer, captions)
    te = base.text_encoder.to(device)
    return torch.cat([te(ids[i:i + 64].to(device))[0].float().cpu() for i in range(0, len(ids), 64)])


def load_training_data(cfg: TrainConfig, base: BaseModel, device: torch.device, log=print) -> VideoLatents:
    """Pre-encoded latents and text embeddings from `cache_dir`, computed and cached on first use."""
    cache = Path(cfg.cache_dir)
    from .data.shapes import WORLD_VERSION

    source = f"shapes-{WORLD_VERSION}" if cfg.data == "shapes" else f"csv-{_sha([Path(cfg.data)])}-fps{cfg.webvid_fps:g}"
    key = f"{source}_n{cfg.train_videos}_s{cfg.seed}_f{cfg.num_frames}_{cfg.video_size}px_vae{base.fingerprints['vae']}"
    lat_file, cap_file = cache / f"latents_{key}.safetensors", cache / f"latents_{key}.json"
    if not (lat_file.is_file() and cap_file.is_file()):
        t0 = time.time()
        latents, captions = encode_videos(cfg, base, device)
        save_tensors(lat_file, {"latents": latents})
        write_json(cap_file, {"captions": captions, "config": dataclasses.asdict(cfg), "base": str(base.path)})
        log(f"[data] encoded {len(latents)} videos in {time.time() - t0:.0f} s -> {lat_file}")
    # always read back from the cache: a run that encoded and a run that resumes then train on the same tensors
    latents, captions = load_tensors(lat_file)["latents"], read_json(cap_file)["captions"]
    log(f"[data] {len(latents)} cached video latents from {lat_file}")
    unique = sorted(set(captions))
    index = {c: i for i, c in enumerate(unique)}
    text_key = hashlib.sha256("\n".join(unique).encode()).hexdigest()[:16]
    text_file = cache / f"text_{text_key}_te{base.fingerprints['text_encoder']}_tok{base.fingerprints['tokenizer']}.safetensors"
    if not text_file.is_file():
        save_tensors(text_file, {"embeds": encode_captions(base, unique, device),
                                 "empty": encode_captions(base, [""], device)[0]})
    text = load_tensors(text_file)
    caption_index = torch.tensor([index[c] for c in captions], dtype=torch.long)
    return VideoLatents(latents, caption_index, unique, text["embeds"], text["empty"])


def streaming_data(cfg: TrainConfig, base: BaseModel, device: torch.device):
    """The first `train_videos` rows of the CSV, decoded and encoded step by step (WebVid at scale)."""
    from .data.stream import StreamingVideos
    from .data.webvid import WebVidDataset

    ds = WebVidDataset(cfg.data, num_frames=cfg.num_frames, fps=cfg.webvid_fps or None, size=cfg.video_size,
                       seed=cfg.seed)
    return StreamingVideos(ds, base.vae.to(device), base.text_encoder.to(device), base.tokenizer, device,
                           limit=cfg.train_videos, workers=cfg.data_workers)


# ------------------------------------------------------------------------------------------------ model
def make_motion_adapter(unet2d: nn.Module, cfg: TrainConfig):
    """An AnimateDiff MotionAdapter shaped for `unet2d`, output projections zero-initialised (AnimateDiff's
    `zero_initialize`), so the inflated model starts as the T2I model applied frame by frame."""
    from diffusers import MotionAdapter

    channels = tuple(unet2d.config.block_out_channels)
    heads = cfg.motion_num_attention_heads
    if any(c % heads for c in channels):
        raise ValueError(f"motion_num_attention_heads: must divide every UNet channel count {channels}, got {heads}")
    adapter = MotionAdapter(
        block_out_channels=channels, motion_layers_per_block=unet2d.config.layers_per_block,
        motion_num_attention_heads=heads, motion_norm_num_groups=unet2d.config.norm_num_groups,
        motion_max_seq_length=cfg.motion_max_seq_length, use_motion_mid_block=cfg.use_motion_mid_block,
    )
    with torch.no_grad():
        for name, p in adapter.named_parameters():
            if name.split(".")[-2] == "proj_out":
                p.zero_()
    return adapter


def pretrained_motion_adapter(unet2d: nn.Module, cfg: TrainConfig):
    """An AnimateDiff MotionAdapter (folder or hub id) to start the motion modules from, checked against the UNet."""
    from .model import load_motion_adapter

    source = str(model_folder(cfg.motion_adapter, "motion_adapter"))
    adapter = load_motion_adapter(source)
    if tuple(adapter.config.block_out_channels) != tuple(unet2d.config.block_out_channels):
        raise ValueError(f"motion_adapter: built for UNet channels {tuple(adapter.config.block_out_channels)}, the "
                         f"base UNet has {tuple(unet2d.config.block_out_channels)}")
    if adapter.config.motion_max_seq_length < cfg.num_frames:
        raise ValueError(f"motion_adapter: covers at most {adapter.config.motion_max_seq_length} frames, "
                         f"num_frames is {cfg.num_frames}")
    return adapter


def variant_configs(cfg: TrainConfig, max_text_len: int) -> tuple[HarivoConfig, LossConfig]:
    v = VARIANTS[cfg.variant]
    harivo = HarivoConfig(
        use_mapping=v["use_mapping"], use_frame_tokens=v["use_frame_tokens"], num_frames=cfg.num_frames,
        num_frame_tokens=cfg.num_frame_tokens, max_text_len=max_text_len,
        mapping_hidden_channels=cfg.mapping_hidden_channels, mapping_heads=cfg.mapping_heads,
        mapping_head_dim=cfg.mapping_head_dim,
    )
    losses = LossConfig(
        use_simple=True, use_trs=v["use_trs"], use_reg=v["use_reg"], use_dc=v["use_dc"], trs_weight=cfg.trs_weight,
        reg_weight=cfg.reg_weight, dc_weight=cfg.dc_weight, dc_temperature=cfg.dc_temperature,
        dc_queue_size=cfg.dc_queue_size, dc_in_batch=cfg.dc_in_batch,
        dc_center_h=cfg.dc_center_h, trs_chunk_size=cfg.trs_chunk_size, noise_offset=cfg.noise_offset,
    ).validate()
    return harivo, losses


class TrainingModule(nn.Module):
    """The video model, the projection head g and the L_DC queue; `forward` = one step's passes of Eq. 5.
    One module, so that `accelerator.prepare` (DDP) wraps every trainable parameter."""

    def __init__(self, model: HarivoVideoModel, projection_head: nn.Module | None, loss_config: LossConfig,
                 noise_scheduler, queue: NegativeQueue | None):
        super().__init__()
        self.model = model
        self.projection_head = projection_head
        self.loss_config = loss_config
        self.noise_scheduler = noise_scheduler
        self.queue = queue

    def forward(self, latents: torch.Tensor, text_embeds: torch.Tensor, generator: torch.Generator):
        out = training_step(self.model, latents, text_embeds, self.noise_scheduler, self.loss_config,
                            self.projection_head, self.queue, generator)
        return out.loss, out.terms

    def trainable(self) -> dict[str, nn.Parameter]:
        """Name → parameter of everything that trains, in a fixed order (the optimizer's order)."""
        return {n: p for n, p in self.named_parameters() if p.requires_grad}


def enable_gradient_checkpointing(model: HarivoVideoModel, loss_cfg: LossConfig) -> None:
    """Checkpoint the UNet blocks, except, with L_TRS, the decoder's spatial transformers: L_TRS takes their
    self-attention maps (with gradients) through processors that `training_step` removes before backward, so a
    recomputation in backward would not replay what the first pass saved (torch's CheckpointError)."""
    model.unet.enable_gradient_checkpointing()
    model.t2i_unet.enable_gradient_checkpointing()
    if loss_cfg.use_trs:
        for name, module in model.unet.named_modules():
            parts = name.split(".")
            if len(parts) == 4 and parts[0] == "up_blocks" and parts[2] == "attentions":
                module.gradient_checkpointing = False


def build_training_module(cfg: TrainConfig, base: BaseModel) -> TrainingModule:
    """Inflate the frozen base UNet for `cfg.variant`; weights are a pure function of cfg.seed."""
    from diffusers import DDPMScheduler

    native = base.unet.config.sample_size * base.vae_factor
    levels = len(base.unet.config.block_out_channels) - 1
    multiple = base.vae_factor * 2**levels
    if cfg.video_size % multiple or cfg.video_size > native:
        # below the native size is fine (the paper trains SD1.5, native 512², at 256²), above it is not
        raise ValueError(f"video_size: the base UNet works on videos of at most {native}px whose side is a multiple "
                         f"of {multiple}px, got {cfg.video_size}")
    harivo_cfg, loss_cfg = variant_configs(cfg, base.tokenizer.model_max_length)
    torch.manual_seed(cfg.seed)
    adapter = pretrained_motion_adapter(base.unet, cfg) if cfg.motion_adapter else make_motion_adapter(base.unet, cfg)
    model = HarivoVideoModel.from_unet2d(base.unet, adapter, harivo_cfg)
    model.config.hspace_size = cfg.video_size // base.vae_factor // 2**levels  # h-space at the training size (g)
    head = model.make_projection_head() if loss_cfg.use_dc else None
    queue = NegativeQueue(loss_cfg.dc_queue_size, harivo_cfg.hspace_channels) if loss_cfg.use_dc else None
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model, loss_cfg)
    noise_scheduler = DDPMScheduler.from_config(base.scheduler_config)
    return TrainingModule(model, head, loss_cfg, noise_scheduler, queue)


# ----------------------------------------------------------------------------------------------- the run
@dataclass
class Run:
    """Everything one training run holds."""

    cfg: TrainConfig
    accelerator: object
    base: BaseModel
    data: VideoLatents
    raw: TrainingModule  # unwrapped
    module: nn.Module  # what accelerate prepared (DDP on several GPUs)
    params: dict[str, nn.Parameter]
    optimizer: torch.optim.Optimizer  # the raw optimizer (its state is what is saved)
    prepared_optimizer: object
    lr_scheduler: torch.optim.lr_scheduler.LambdaLR
    step: int = 0
    history: list[dict] = field(default_factory=list)
    segments: list[dict] = field(default_factory=list)  # one entry per run segment (command, steps, minutes)
    state_saved_at: int = -1  # step of the last saved state in this process

    @property
    def state_dir(self) -> Path:
        return Path(self.cfg.run_dir) / "state"

    @property
    def minutes(self) -> float:
        """Training minutes of all segments so far."""
        return sum(s["minutes"] for s in self.segments)


def make_accelerator(cfg: TrainConfig):
    from accelerate import Accelerator

    return Accelerator(mixed_precision=cfg.mixed_precision)


def setup(cfg: TrainConfig, accelerator=None, log=print) -> Run:
    """Load the base, the (cached) data, build the model, optimizer and schedule; restore the state if resuming."""
    saved = check_resume(cfg, log)  # before anything slow
    acc = accelerator or make_accelerator(cfg)
    base = load_base(cfg.base_model)
    raw = build_training_module(cfg, base)  # validates video_size first: fail before the slow encoding
    if cfg.stream_data:
        data = streaming_data(cfg, base, acc.device)
    else:
        with acc.main_process_first():  # one process encodes and caches, the others then read the cache
            data = load_training_data(cfg, base, acc.device, log=log)
    params = raw.trainable()
    optimizer = torch.optim.AdamW(list(params.values()), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = WarmupDecay(cfg.lr_warmup_steps, cfg.max_steps, cfg.min_lr / cfg.lr, cfg.lr_schedule)
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    run = Run(cfg, acc, base, data, raw, raw, params, optimizer, optimizer, lr_scheduler)
    if saved is not None:
        restore(run, log)
    if acc.device.type != "cpu":
        raw.to(acc.device)
    run.module, run.prepared_optimizer = acc.prepare(raw, optimizer)
    return run


def _unused_loss_fields(variant: str) -> set[str]:
    """Settings of the losses `variant` does not train with: they may change between segments (the baseline
    trained before the shapes config set λ_DC = 0.01 resumes under it)."""
    v = VARIANTS.get(variant, {})
    unused = set()
    if not v.get("use_trs", True):
        unused.add("trs_weight")
    if not v.get("use_reg", True):
        unused.add("reg_weight")
    if not v.get("use_dc", True):
        unused |= {"dc_weight", "dc_temperature", "dc_queue_size", "dc_in_batch", "dc_center_h"}
    return unused


def check_resume(cfg: TrainConfig, log=print) -> dict | None:
    """The saved config of run_dir's training state if this run resumes it (None: fresh start); ValueError if
    a state exists without --resume or was trained with other values of the fields that must stay fixed."""
    state_dir = Path(cfg.run_dir) / "state"
    if not has_training_state(state_dir):
        return None
    if not cfg.resume:
        raise ValueError(f"resume: {str(state_dir)!r} already holds a training state; pass --resume to continue "
                         f"it or choose another run_dir")
    saved = read_json(state_dir / "state.json", what="resume state")["config"]
    unused = _unused_loss_fields(cfg.variant)
    for name in _FIXED_ON_RESUME:
        if name in saved and name not in unused and saved[name] != getattr(cfg, name):
            raise ValueError(f"{name}: the run in {str(state_dir)!r} was trained with {saved[name]!r}, "
                             f"got {getattr(cfg, name)!r}; resume with the same value or use another run_dir")
    if saved.get("max_steps") != cfg.max_steps:
        log(f"[resume] max_steps changed {saved.get('max_steps')} -> {cfg.max_steps}: the lr schedule is "
            f"recomputed for the remaining steps")
    return saved


def restore(run: Run, log=print) -> None:
    meta, extra = load_training_state(run.state_dir, run.params, run.optimizer, run.lr_scheduler)
    if meta.get("base_fingerprints") and meta["base_fingerprints"] != run.base.fingerprints:
        log(f"[resume] WARNING: the base model {str(run.base.path)!r} changed since the last segment "
            f"({meta['base_fingerprints']} -> {run.base.fingerprints}); the frozen T2I weights are not the ones "
            f"the earlier steps were trained on")
    if run.raw.queue is not None:
        run.raw.queue.load_state_dict({"items": extra["queue_items"]})
    run.step, run.history, run.segments = meta["step"], meta["history"], meta["segments"]
    log(f"[resume] {run.cfg.variant}: continuing at step {run.step} of {run.cfg.max_steps}")


def save_state(run: Run) -> None:
    extra = {"queue_items": run.raw.queue.state_dict()["items"]} if run.raw.queue is not None else {}
    meta = {"step": run.step, "history": run.history, "minutes": run.minutes, "segments": run.segments,
            "config": dataclasses.asdict(run.cfg), "base_fingerprints": run.base.fingerprints}
    save_training_state(run.state_dir, run.params, run.optimizer, run.lr_scheduler, meta, extra)


def make_batch(run: Run, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """batch_size random pre-encoded videos and their text embeddings (cond_drop of them empty, for CFG)."""
    d, cfg, device = run.data, run.cfg, run.accelerator.device
    idx = torch.randint(len(d), (cfg.batch_size,), generator=generator)
    drop = torch.rand(cfg.batch_size, generator=generator) < cfg.cond_drop
    if not isinstance(d, VideoLatents):  # stream_data: decode this batch, start decoding the next step's
        following = step_generator(cfg.seed, run.step + 1, run.accelerator.process_index)
        d.prefetch(torch.randint(len(d), (cfg.batch_size,), generator=following).tolist())
        latents, embeds = d.batch(idx.tolist(), drop)
        return latents.to(device), embeds.to(device)
    embeds = d.text_embeds[d.caption_index[idx]]  # (b, M, D)
    embeds = torch.where(drop[:, None, None], d.empty_embeds.expand_as(embeds), embeds)
    return d.latents[idx].float().to(device), embeds.to(device)


def train_step(run: Run, batch: tuple[torch.Tensor, torch.Tensor] | None = None,
               generator: torch.Generator | None = None) -> dict[str, float]:
    """One optimizer step (Eq. 5) on `batch` (default: the batch of step `run.step`). Does not advance run.step."""
    acc = run.accelerator
    gen = generator or step_generator(run.cfg.seed, run.step, acc.process_index)
    latents, embeds = batch if batch is not None else make_batch(run, gen)
    run.module.train()
    loss, terms = run.module(latents, embeds, gen)
    acc.backward(loss)
    if run.cfg.grad_clip:
        acc.clip_grad_norm_(list(run.params.values()), run.cfg.grad_clip)
    run.prepared_optimizer.step()
    run.lr_scheduler.step()
    run.prepared_optimizer.zero_grad(set_to_none=True)
    return terms


@torch.no_grad()
def fixed_batch_loss(run: Run, batch: tuple[torch.Tensor, torch.Tensor], seed: int = 0) -> dict[str, float]:
    """Eq. 5 terms on `batch` with fixed noise/timesteps and an empty L_DC queue (no update): for tests."""
    raw = run.raw
    queue = NegativeQueue(raw.queue.size, raw.queue.dim) if raw.queue is not None else None
    out = training_step(raw.model, batch[0], batch[1], raw.noise_scheduler, raw.loss_config, raw.projection_head,
                        queue, step_generator(seed, 10**9))
    return out.terms


# ------------------------------------------------------------------------------------- samples + export
def sample_specs(n: int, seed: int = 0):
    """n fixed sample prompts, each with another motion; the last one held out when n >= 4."""
    from .data.shapes import MOTIONS, all_specs

    rng = np.random.default_rng([seed, 17])
    order = ("moving left to right", "getting closer", "moving up", "spinning", "moving right to left",
             "moving away", "moving down", "standing still")
    assert set(order) == set(MOTIONS)
    train, held = all_specs("train"), all_specs("held_out")
    specs = []
    for i in range(n):
        if n >= 4 and i == n - 1:
            specs.append(held[int(rng.integers(len(held)))])
            continue
        pool = [s for s in train if s.motion == order[i % len(order)] and s not in specs]
        specs.append(pool[int(rng.integers(len(pool)))])
    return specs


def frame_strip(videos: list[np.ndarray], titles: list[str], scale: int = 2) -> np.ndarray:
    """One row per video (frames left to right, nearest-neighbour upscaled), a caption line above each row."""
    from PIL import Image, ImageDraw

    rows = []
    for video, title in zip(videos, titles):
        row = media.upscale(media.to_uint8(np.concatenate(list(video), axis=1)[None]), video.shape[1] * scale)[0]
        label = Image.new("RGB", (row.shape[1], 14), (255, 255, 255))
        ImageDraw.Draw(label).text((3, 1), title, fill=(0, 0, 0))
        rows += [np.asarray(label), row]
    return np.concatenate(rows, axis=0)


def sample_videos(run: Run) -> Path:
    """Videos for the fixed sample prompts (seed 0; plain CFG schedule, MG off) → run_dir/samples/step_N/."""
    from diffusers import DDIMScheduler

    from .data.checker import judge
    from .pipeline import GenerationSettings, HarivoPipeline
    from .sampling import MGConfig

    cfg, base, model = run.cfg, run.base, run.raw.model
    folder = Path(cfg.run_dir) / "samples" / f"step_{run.step:06d}"
    folder.mkdir(parents=True, exist_ok=True)
    pipe = HarivoPipeline(base.vae, base.text_encoder, base.tokenizer, model,
                          DDIMScheduler.from_config(base.scheduler_config), name=cfg.variant)
    model.eval()
    videos, titles, scores = [], [], []
    for i, spec in enumerate(sample_specs(cfg.sample_prompts, cfg.seed)):
        out = pipe(GenerationSettings(prompt=spec.caption, seed=i, num_frames=cfg.num_frames,
                                      num_inference_steps=cfg.sample_steps, mg=MGConfig(enabled=False),
                                      capture_attention=False))
        stem = f"{i}_{spec.caption.replace(' ', '-')}"
        media.write_mp4(out.frames, folder / f"{stem}.mp4")
        media.write_gif(out.frames, folder / f"{stem}.gif")
        verdict = {k: bool(v) for k, v in judge(out.frames, spec).items() if k != "details"} if cfg.data == "shapes" else {}
        scores.append({"prompt": spec.caption, "seed": i, **verdict})
        videos.append(out.frames)
        titles.append(f"{spec.caption}  " + " ".join(k for k, v in verdict.items() if v))
    model.train()
    media.write_png(frame_strip(videos, titles), folder / "strip.png")
    write_json(folder / "judge.json", {"step": run.step, "variant": cfg.variant, "videos": scores})
    return folder


def final_terms(history: list[dict], last: int = 10) -> dict[str, float]:
    rows = history[-last:]
    keys = sorted({k for r in rows for k in r if k.startswith("loss_")})
    return {k: float(np.mean([r[k] for r in rows if k in r])) for k in keys}


@torch.no_grad()
def hspace_stats(run: Run, n: int = 8, t: int = 500) -> dict[str, float]:
    """Collapse check of h-space (docs/training.md: the L_DC guards): on the first n training videos at timestep t, the std
    of the video UNet's mid-block output and the mean cosine between different videos' frame-averaged h (1 =
    every video looks the same to L_DC). The baseline (no L_DC) measures std 1.52, cosine 0.77; the first `full`
    run, whose L_DC collapsed, 44.6 and 0.999."""
    d, device = run.data, run.accelerator.device
    if not isinstance(d, VideoLatents) or len(d) < 2:
        return {}
    n = min(n, len(d))
    latents = d.latents[:n].float().to(device)
    embeds = d.text_embeds[d.caption_index[:n]].to(device)
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(0)).to(device)
    timesteps = torch.full((n,), t, device=device)
    model = run.raw.model
    with capture_hspace(model) as store:
        model(run.raw.noise_scheduler.add_noise(latents, noise, timesteps), timesteps, embeds)
    h = store[-1].float()
    per_video = torch.nn.functional.normalize(h.reshape(n, -1, *h.shape[1:]).mean(1).flatten(1), dim=-1)
    cos = per_video @ per_video.T
    off_diagonal = cos[~torch.eye(n, dtype=torch.bool, device=cos.device)]
    return {"timestep": t, "videos": n, "std": round(h.std().item(), 4),
            "mean_cos_between_videos": round(off_diagonal.mean().item(), 4)}


def export(run: Run, finished: bool) -> Path:
    """Write `out/` as DESIGN.md §3 (atomically): the model without the training-only projection head,
    the resolved config, training.json and the loss curves."""
    import diffusers
    import transformers

    cfg, model = run.cfg, run.raw.model
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.config.base_model = os.path.relpath(run.base.path.resolve(), out.resolve())
    v = VARIANTS[cfg.variant]
    components = {
        "table1_row": TABLE1_ROW[cfg.variant], "motion_modules": True, "mapping_network": v["use_mapping"],
        "frame_tokens": v["use_frame_tokens"],
        "losses": {"simple": True, "trs": v["use_trs"], "reg": v["use_reg"], "dc": v["use_dc"]},
        "loss_weights": {"trs": cfg.trs_weight, "reg": cfg.reg_weight, "dc": cfg.dc_weight},
    }
    training = {
        "variant": cfg.variant, "steps": run.step, "max_steps": cfg.max_steps, "finished": finished,
        "minutes": round(run.minutes, 2), "where_trained": where_trained(), "torch_threads": torch.get_num_threads(),
        "num_processes": run.accelerator.num_processes, "batch_size": cfg.batch_size,
        "videos_seen": run.step * cfg.batch_size * run.accelerator.num_processes,
        "train_videos": len(run.data), "final_loss_terms": final_terms(run.history),
        "sec_per_step": run.history[-1].get("sec_per_step") if run.history else None,
        "command": run.segments[-1]["command"] if run.segments else "", "segments": run.segments,
        "base_model": str(run.base.path), "base_fingerprints": run.base.fingerprints,
        "trainable_parameters": {"shipped": sum(p.numel() for n, p in run.params.items() if not n.startswith("projection_head.")),
                                 "projection_head (not shipped)": sum(p.numel() for n, p in run.params.items() if n.startswith("projection_head."))},
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__},
        "hspace": hspace_stats(run),
    }
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, extra={"variant": cfg.variant, "components": components})
        write_json(tmp / "training.json", training)
        write_text(tmp / "train_config.yaml", config_to_yaml(cfg))
        write_loss_curves(tmp, run.history, f"HARIVO {cfg.variant} (Table 1 row {TABLE1_ROW[cfg.variant]})",
                          terms=tuple(f"loss_{t}" for t in LOSS_TERMS))
    return out


# ------------------------------------------------------------------------------------------------ train
def train(cfg: TrainConfig, command: str = "", accelerator=None, log=print, stop: threading.Event | None = None) -> Run:
    """The training loop: runs until max_steps, max_minutes, segment_steps or `stop` is set; saves and exports."""
    from tqdm.auto import tqdm

    t_start = time.time()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    run = setup(cfg, accelerator, log)
    acc = run.accelerator
    main = acc.is_main_process
    if main:
        write_text(Path(cfg.run_dir) / "train_config.yaml", config_to_yaml(cfg))
    segment = {"command": command, "start_step": run.step, "end_step": run.step, "minutes": 0.0,
               "where_trained": where_trained(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    run.segments.append(segment)
    seg_start, start_step, window = time.time(), run.step, []

    def tick():
        segment.update(end_step=run.step, minutes=round((time.time() - seg_start) / 60, 3))

    def checkpoint():
        if run.state_saved_at == run.step:
            return
        run.state_saved_at = run.step
        tick()
        if main:
            save_state(run)
            export(run, finished=run.step >= cfg.max_steps)
        acc.wait_for_everyone()

    bar = tqdm(total=cfg.max_steps, initial=run.step, desc=f"harivo {cfg.variant}", disable=not main, mininterval=30)
    stopped_by = "max_steps"
    while run.step < cfg.max_steps:
        if cfg.max_minutes and (time.time() - t_start) / 60 >= cfg.max_minutes:
            stopped_by = "max_minutes"
            break
        if cfg.segment_steps and run.step - start_step >= cfg.segment_steps:
            stopped_by = "segment_steps"
            break
        if stop is not None and stop.is_set():
            stopped_by = "signal"
            break
        lr = run.lr_scheduler.get_last_lr()[0]
        t0 = time.time()
        terms = train_step(run)
        run.step += 1
        bar.update(1)
        window.append({**terms, "seconds": time.time() - t0})
        if run.step % cfg.log_every == 0 or run.step == cfg.max_steps:
            tick()
            means = torch.tensor([[t.get(k, float("nan")) for k in LOSS_TERMS] for t in window]).mean(0)
            means = acc.gather(means.to(acc.device)[None]).float().mean(0).tolist()  # mean over processes
            row = {"step": run.step, "lr": lr, **{f"loss_{k}": v for k, v in zip(LOSS_TERMS, means) if v == v},
                   "sec_per_step": round(float(np.mean([t["seconds"] for t in window])), 3),
                   "minutes": round(run.minutes, 3)}
            run.history.append(row)
            bar.set_postfix({k[5:]: f"{v:.4f}" for k, v in row.items() if k.startswith("loss_")})
            window = []
        if run.step % cfg.checkpoint_every == 0:
            checkpoint()
            if main and run.history:
                log(f"[{cfg.variant}] step {run.step}/{cfg.max_steps} saved; "
                    + ", ".join(f"{k} {v:.4g}" for k, v in run.history[-1].items() if k != "step"))
        if main and cfg.sample_every and run.step % cfg.sample_every == 0:
            log(f"[{cfg.variant}] samples -> {sample_videos(run)}")
    bar.close()
    checkpoint()
    if not isinstance(run.data, VideoLatents):
        run.data.close()  # stop the decoding threads of stream_data
    if main and cfg.sample_every and run.step >= cfg.max_steps and run.step % cfg.sample_every and run.step > start_step:
        log(f"[{cfg.variant}] samples -> {sample_videos(run)}")
    log(f"[{cfg.variant}] stopped by {stopped_by} at step {run.step}/{cfg.max_steps}; exported {cfg.out}")
    return run


def main(argv: list[str] | None = None) -> Run:
    argv = sys.argv[1:] if argv is None else list(argv)
    cfg = parse_config(argv)
    command = "python -m harivo.train " + shlex.join(argv)
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())  # finish the step, then save and export
    try:
        return train(cfg, command, log=lambda m: print(m, flush=True), stop=stop)
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    run_cli(main, "python -m harivo.train")
