"""Resuming stage 2: whether a run may continue the training state in `run_dir/state` (`check_resume`: the
fields that shape the training must be the ones it was trained with, except the settings of losses the
variant does not use), restoring it (`restore`) and writing it (`save_state`), on `train_utils`' training
state. The L_DC negative queue travels as an extra tensor, the run's segments (command, steps, minutes, machine)
in the meta record.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from harivo.fileio import read_json
from harivo.train.stage2.config import VARIANTS, TrainConfig
from harivo.train.utils import STATE_JSON, has_training_state, load_training_state, save_training_state

if TYPE_CHECKING:
    from harivo.train.stage2.run import Run

# Fields that must not change when a run is resumed (the others are run control or bookkeeping).
FIXED_ON_RESUME = (
    "variant", "seed", "data", "world", "train_videos", "num_frames", "video_size", "webvid_fps", "stream_data",
    "motion_adapter", "init_from", "motion_num_attention_heads",
    "motion_max_seq_length", "use_motion_mid_block", "num_frame_tokens", "mapping_hidden_channels", "mapping_heads",
    "mapping_head_dim", "batch_size", "lr", "min_lr", "lr_warmup_steps", "lr_schedule", "weight_decay", "grad_clip",
    "cond_drop", "trs_weight", "reg_weight", "dc_weight", "dc_temperature", "dc_queue_size", "dc_in_batch",
    "dc_center_h", "noise_offset", "noise_share",
    "timestep_bias_multiplier", "timestep_bias_portion", "verb_phase_min_timestep", "verb_phase_lr",
    "verb_phase_motions", "verb_phase_train",
)


def unused_loss_fields(variant: str) -> set[str]:
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
    state = read_json(state_dir / STATE_JSON, what="resume state")
    saved = state["config"]
    unused = unused_loss_fields(cfg.variant)
    if state.get("step", 0) <= saved.get("max_steps", 0):  # the verb phase has not begun: its settings may change
        unused |= {"verb_phase_min_timestep", "verb_phase_lr", "verb_phase_motions", "verb_phase_train"}
    for name in FIXED_ON_RESUME:
        if name in saved and name not in unused and saved[name] != getattr(cfg, name):
            raise ValueError(f"{name}: the run in {str(state_dir)!r} was trained with {saved[name]!r}, "
                             f"got {getattr(cfg, name)!r}; resume with the same value or use another run_dir")
    if saved.get("max_steps") != cfg.max_steps:
        log(f"[resume] max_steps changed {saved.get('max_steps')} -> {cfg.max_steps}: the lr schedule is "
            f"recomputed for the remaining steps")
    return saved


def restore(run: Run, log=print) -> None:
    """Weights, optimizer, lr schedule, RNG, L_DC queue, step, history and segments from run_dir/state."""
    meta, extra = load_training_state(run.state_dir, run.params, run.optimizer, run.lr_scheduler)
    if meta.get("base_fingerprints") and meta["base_fingerprints"] != run.base.fingerprints:
        log(f"[resume] WARNING: the base model {str(run.base.path)!r} changed since the last segment "
            f"({meta['base_fingerprints']} -> {run.base.fingerprints}); the frozen T2I weights are not the ones "
            f"the earlier steps were trained on")
    if run.raw.queue is not None:
        run.raw.queue.load_state_dict({"items": extra["queue_items"]})
    run.step, run.history, run.segments = meta["step"], meta["history"], meta["segments"]
    # the lr of the next step from *this* config's schedule (a changed max_steps or an added verb phase)
    sched = run.lr_scheduler
    for group, base, factor in zip(run.optimizer.param_groups, sched.base_lrs, sched.lr_lambdas):
        group["lr"] = base * factor(run.step)
    sched._last_lr = [group["lr"] for group in run.optimizer.param_groups]
    log(f"[resume] {run.cfg.variant}: continuing at step {run.step} of {run.cfg.total_steps}")


def save_state(run: Run) -> None:
    """run_dir/state (atomically): what `restore` reads back, plus the config and the base's fingerprints."""
    extra = {"queue_items": run.raw.queue.state_dict()["items"]} if run.raw.queue is not None else {}
    meta = {"step": run.step, "history": run.history, "minutes": run.minutes, "segments": run.segments,
            "config": dataclasses.asdict(run.cfg), "base_fingerprints": run.base.fingerprints}
    save_training_state(run.state_dir, run.params, run.optimizer, run.lr_scheduler, meta, extra)
