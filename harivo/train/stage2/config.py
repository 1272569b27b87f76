"""Stage 2's configuration: the Table 1 variants (which networks exist and which terms of Eq. 5 train),
`TrainConfig` (every field a `--flag` of `python -m harivo.train` and a key of configs/shapes-harivo.yaml or
configs/sd15-webvid.yaml, with why it has its value), its validation, the command-line parser, and the
model and loss configs a variant makes (`variant_configs`).

Precedence: field defaults < the YAML file of `--config` < flags given on the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

from harivo.config import TABLE1, HarivoConfig, LossConfig, check_noise_share, check_range
from harivo.data.shapes import MOTION_GROUPS, WORLD, World
from harivo.train.utils import add_config_flags, config_from_args

DESCRIPTION = \
    "Stage 2: train HARIVO on top of the frozen shapes-world T2I model (§3, Eq. 5), one run per Table 1 row."

# Table 1 rows: which networks exist and which terms of Eq. 5 are on.
VARIANTS: dict[str, dict[str, bool]] = {
    "baseline": dict(use_mapping=False, use_frame_tokens=False, use_trs=False, use_dc=False, use_reg=False),
    "trs-dc": dict(use_mapping=False, use_frame_tokens=False, use_trs=True, use_dc=True, use_reg=False),
    "mapping": dict(use_mapping=True, use_frame_tokens=False, use_trs=True, use_dc=True, use_reg=True),
    "full": dict(use_mapping=True, use_frame_tokens=True, use_trs=True, use_dc=True, use_reg=True),
}
TABLE1_ROW = {v: TABLE1[v][0] for v in VARIANTS}  # config.TABLE1: one naming of the rows
LOSS_TERMS = ("total", "simple", "trs", "reg", "dc")
# verb_phase_motions: which videos the verb phase draws, by the motion of their caption (stage2.run.verb_phase_pool:
# harivo.data.shapes.TRANSLATIONS, SIZE_CHANGES, or both)
VERB_PHASE_MOTIONS = tuple(MOTION_GROUPS)  # ("translations", "directed", "sizes")


# ----------------------------------------------------------------------------------------------- config
@dataclass
class TrainConfig:
    """Every setting of a stage-2 run, one field per flag, grouped by part (run, data, model, optimisation,
    losses, bookkeeping); `resolved()` fills in the variant's default folders."""

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
    world: str = WORLD.version  # shapes data: the world (`shapes.World.parse`: a version or settings such as
    #   band_px=4), recorded in the checkpoint's config.json
    stream_data: bool = False  # WebVid data: decode + VAE-encode each step's videos on the fly, no pre-encoded cache
    data_workers: int = 4  # stream_data: threads decoding the next step's videos
    # --- model -----------------------------------------------------------------------------------------
    motion_adapter: str = ""  # init the motion modules from this MotionAdapter (folder or hub id); "" = fresh (paper)
    init_from: str = ""  # warm start (ours): every shipped part (motion modules, mapping network, frame-token
    #   generator) from this HARIVO checkpoint folder of the same variant; optimizer and projection head start fresh
    motion_num_attention_heads: int = 4  # heads of the temporal attention (must divide the UNet channels)
    motion_max_seq_length: int = 32  # longest video the motion modules' positional encoding covers
    use_motion_mid_block: bool = True  # motion module in the mid block too (AnimateDiff v2 / v3)
    num_frame_tokens: int = 3  # K in §3.5
    mapping_hidden_channels: int = 64  # width of the mapping network's 3D-conv branch (ours)
    mapping_heads: int = 8  # appendix MappingLayer: heads=8
    mapping_head_dim: int = 64  # appendix MappingLayer: dim_head=64
    # --- optimisation ----------------------------------------------------------------------------------
    max_steps: int = 3000  # total optimizer steps (= length of the lr schedule); same for every variant
    # ours (docs/results.md, "The verb phase"): after max_steps, this many more steps of Eq. 5 on the
    # translation videos only, at t >= verb_phase_min_timestep, at the constant lr verb_phase_lr: where the layout is
    # decided, the verb's trajectory. 0 = off (the paper's single phase)
    verb_phase_steps: int = 0
    verb_phase_min_timestep: int = 900
    verb_phase_lr: float = 1e-3
    verb_phase_motions: str = "translations"  # translations | directed (+ getting closer / moving away: every verb
    #   that fixes where the object is or how big it is at each frame)
    verb_phase_train: str = "all"  # all | motion: in the verb phase, only the motion modules update (the mapping
    #   network, frame-token generator and projection head keep their phase-1 weights)
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
    timestep_bias_multiplier: float = 1.0  # ours (diffusers' "later" timestep bias): the last timestep_bias_portion
    timestep_bias_portion: float = 0.1  #   of the timesteps drawn this many times as often; 1 = uniform t (paper)
    noise_share: float = 0.0  # PYoCo mixed noise, ours: variance share common to a video's frames, in training and
    #   (saved in config.json) sampling (config.LossConfig.noise_share, HarivoConfig.noise_share); 0 = independent
    trs_chunk_size: int = 0  # 0 = L_TRS keeps the attention maps (fastest, small models); N = memory-efficient,
    #   N queries at a time
    # --- bookkeeping -----------------------------------------------------------------------------------
    log_every: int = 10  # one loss row (mean over the window) every N steps
    checkpoint_every: int = 100  # training state + exported checkpoint every N steps (atomic)
    sample_every: int = 500  # sample videos every N steps (and at the end); 0 = never
    sample_prompts: int = 4  # prompts per sample event (the last one held out when >= 4)
    sample_steps: int = 25  # DDIM steps of the samples (App. D)

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the whole run: max_steps, then the verb phase's."""
        return self.max_steps + self.verb_phase_steps

    def in_verb_phase(self, step: int) -> bool:
        """Whether optimizer step `step` (0-based) belongs to the verb phase."""
        return self.verb_phase_steps > 0 and step >= self.max_steps

    def resolved(self) -> "TrainConfig":
        return dataclasses.replace(
            self,
            out=self.out or f"checkpoints/harivo-shapes-{self.variant}",
            run_dir=self.run_dir or f"runs/harivo-{self.variant}",
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
    World.parse(cfg.world)  # ValueError naming `world`
    for name in ("train_videos", "video_size", "motion_num_attention_heads", "mapping_hidden_channels",
                 "mapping_heads", "mapping_head_dim", "max_steps", "batch_size", "log_every", "checkpoint_every",
                 "dc_queue_size", "sample_prompts", "sample_steps", "data_workers"):
        check_range(name, getattr(cfg, name), 1, integer=True)
    for name in ("seed", "segment_steps", "num_threads", "lr_warmup_steps", "sample_every", "num_frame_tokens"):
        check_range(name, getattr(cfg, name), 0, integer=True)
    check_range("num_frames", cfg.num_frames, 2, integer=True)
    check_range("motion_max_seq_length", cfg.motion_max_seq_length, cfg.num_frames, integer=True)
    for name in ("lr", "min_lr", "dc_temperature"):
        check_range(name, getattr(cfg, name), 1e-12)
    for name in ("weight_decay", "grad_clip", "trs_weight", "reg_weight", "dc_weight", "max_minutes", "webvid_fps",
                 "noise_offset"):
        check_range(name, getattr(cfg, name), 0.0)
    check_range("cond_drop", cfg.cond_drop, 0.0, 1.0)
    check_noise_share(cfg.noise_share)
    check_range("verb_phase_steps", cfg.verb_phase_steps, 0, integer=True)
    check_range("verb_phase_min_timestep", cfg.verb_phase_min_timestep, 0, 999, integer=True)
    check_range("verb_phase_lr", cfg.verb_phase_lr, 1e-12)
    if cfg.verb_phase_motions not in VERB_PHASE_MOTIONS:
        raise ValueError(f"verb_phase_motions: expected one of {list(VERB_PHASE_MOTIONS)}, got {cfg.verb_phase_motions!r}")
    if cfg.verb_phase_train not in ("all", "motion"):
        raise ValueError(f"verb_phase_train: expected 'all' or 'motion', got {cfg.verb_phase_train!r}")
    if cfg.verb_phase_steps and cfg.data != "shapes":
        raise ValueError("verb_phase_steps: the verb phase selects the shapes world's translation videos by caption; "
                         f"data is {cfg.data!r}")
    check_range("timestep_bias_multiplier", cfg.timestep_bias_multiplier, 1e-6)
    check_range("timestep_bias_portion", cfg.timestep_bias_portion, 0.0, 1.0)
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
    p = argparse.ArgumentParser(prog="python -m harivo.train", description=DESCRIPTION)
    p.add_argument("--config", help="YAML file of TrainConfig keys (CLI flags override it)")
    add_config_flags(p, TrainConfig)
    return p


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    """Defaults < YAML (--config) < CLI flags; returns the validated, resolved config."""
    return validate(config_from_args(TrainConfig, build_parser().parse_args(argv))).resolved()


def variant_configs(cfg: TrainConfig, max_text_len: int) -> tuple[HarivoConfig, LossConfig]:
    """The video model's and the losses' configs of `cfg.variant` (texts padded to `max_text_len` tokens)."""
    v = VARIANTS[cfg.variant]
    harivo = HarivoConfig(
        use_mapping=v["use_mapping"], use_frame_tokens=v["use_frame_tokens"], num_frames=cfg.num_frames,
        num_frame_tokens=cfg.num_frame_tokens, max_text_len=max_text_len,
        mapping_hidden_channels=cfg.mapping_hidden_channels, mapping_heads=cfg.mapping_heads,
        mapping_head_dim=cfg.mapping_head_dim, noise_share=cfg.noise_share,
    ).validate()
    losses = LossConfig(
        use_simple=True, use_trs=v["use_trs"], use_reg=v["use_reg"], use_dc=v["use_dc"], trs_weight=cfg.trs_weight,
        reg_weight=cfg.reg_weight, dc_weight=cfg.dc_weight, dc_temperature=cfg.dc_temperature,
        dc_queue_size=cfg.dc_queue_size, dc_in_batch=cfg.dc_in_batch,
        dc_center_h=cfg.dc_center_h, trs_chunk_size=cfg.trs_chunk_size, noise_offset=cfg.noise_offset,
        noise_share=cfg.noise_share, timestep_bias_multiplier=cfg.timestep_bias_multiplier,
        timestep_bias_portion=cfg.timestep_bias_portion,
    ).validate()
    return harivo, losses

