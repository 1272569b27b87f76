"""One stage-2 training run: `Run` (config, accelerator, base model, data, the training module as prepared and
unwrapped, AdamW and its lr schedule, step, loss history, segments), `setup` (which builds one, resuming if the
config says so) and the step: `make_batch` and `train_step`. Batch, noise and timesteps of step n are a pure
function of (seed, n, process index) (`train_utils.step_generator`), so a resumed run continues exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from harivo.train.losses import NegativeQueue, training_step
from harivo.train.stage2.base import BaseModel, load_base
from harivo.train.stage2.config import TrainConfig
from harivo.train.stage2.data import VideoLatents, load_training_data, streaming_data
from harivo.train.stage2.resume import check_resume, restore
from harivo.train.stage2.training_module import TrainingModule, build_training_module
from harivo.train.utils import WarmupDecay, make_accelerator, step_generator


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
    verb_phase_videos: torch.Tensor | None = None  # indices the verb phase draws from (computed on first use)

    @property
    def state_dir(self) -> Path:
        return Path(self.cfg.run_dir) / "state"

    @property
    def minutes(self) -> float:
        """Training minutes of all segments so far."""
        return sum(s["minutes"] for s in self.segments)


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
    schedule = WarmupDecay(cfg.lr_warmup_steps, cfg.max_steps, cfg.min_lr / cfg.lr, cfg.lr_schedule,
                           constant_from=cfg.max_steps if cfg.verb_phase_steps else 0,
                           constant_ratio=cfg.verb_phase_lr / cfg.lr)
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    run = Run(cfg, acc, base, data, raw, raw, params, optimizer, optimizer, lr_scheduler)
    if saved is not None:
        restore(run, log)
    if acc.device.type != "cpu":
        raw.to(acc.device)
    run.module, run.prepared_optimizer = acc.prepare(raw, optimizer)
    return run


def verb_phase_pool(data: VideoLatents, motions: str = "translations") -> torch.Tensor:
    """Indices of the training videos the verb phase draws from: those whose caption's motion is one of
    `motions` (config.VERB_PHASE_MOTIONS: the translations, the translations and the size changes, or the size
    changes)."""
    from harivo.data.shapes import MOTION_GROUPS, ShapeSpec
    from harivo.train.stage2.config import VERB_PHASE_MOTIONS

    if motions not in VERB_PHASE_MOTIONS:
        raise ValueError(f"verb_phase_motions: expected one of {list(VERB_PHASE_MOTIONS)}, got {motions!r}")
    wanted = set(MOTION_GROUPS[motions])
    moving = torch.tensor([ShapeSpec.from_caption(c).motion in wanted for c in data.captions])
    index = torch.nonzero(moving[data.caption_index]).flatten()
    if not len(index):
        raise ValueError(f"verb_phase_steps: the training videos hold no {motions} video to train the verb phase on")
    return index


def is_motion_module(name: str) -> bool:
    """Whether trainable parameter `name` belongs to the motion modules (verb_phase_train = motion)."""
    return ".motion_modules." in name  # e.g. model.unet.down_blocks.0.motion_modules.0.… and the mid block's


def make_batch(run: Run, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """batch_size random pre-encoded videos and their text embeddings (cond_drop of them empty, for CFG); in the
    verb phase drawn from its pool only (`verb_phase_pool`, cfg.verb_phase_motions)."""
    d, cfg, device = run.data, run.cfg, run.accelerator.device
    if cfg.in_verb_phase(run.step):
        if run.verb_phase_videos is None:
            run.verb_phase_videos = verb_phase_pool(d, cfg.verb_phase_motions)
        pool = run.verb_phase_videos
        idx = pool[torch.randint(len(pool), (cfg.batch_size,), generator=generator)]
    else:
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
    min_t = run.cfg.verb_phase_min_timestep if run.cfg.in_verb_phase(run.step) else None
    loss, terms = run.module(latents, embeds, gen, min_t)
    acc.backward(loss)
    if min_t is not None and run.cfg.verb_phase_train == "motion":  # AdamW skips a parameter without a gradient
        for name, p in run.params.items():
            if not is_motion_module(name):
                p.grad = None
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

