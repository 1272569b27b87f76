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
kill continues exactly where the last saved state stopped. Output (docs/design.md §3): `out/` with
`motion_adapter/`, `harivo.safetensors`, `config.json`, `training.json`, `loss_curves.{png,csv}` and
`train_config.yaml`; training state, samples and logs go to `run_dir/`.

This file is the command line and the training loop (`train`); the rest of the stage lives in `harivo/train/stage2/`:
`config` (variants, TrainConfig, flags), `base` (the frozen T2I model), `data` (encoded-video cache,
streaming), `training_module` (the inflated model, g, the L_DC queue), `run` (setup and one step), `resume`
(the training state), `samples` and `export`.
"""

from __future__ import annotations

import shlex
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from harivo.fileio import write_text
from harivo.train.stage2.config import LOSS_TERMS, TrainConfig, parse_config
from harivo.train.stage2.data import VideoLatents
from harivo.train.stage2.export import export
from harivo.train.stage2.resume import save_state
from harivo.train.stage2.run import Run, setup, train_step
from harivo.train.stage2.samples import sample_videos
from harivo.train.utils import config_to_yaml, where_trained


def stop_reason(cfg: TrainConfig, run: Run, t_start: float, start_step: int,
                stop: threading.Event | None) -> str | None:
    """Why the run should stop before its next step (max_minutes, segment_steps, a signal), or None."""
    if cfg.max_minutes and (time.time() - t_start) / 60 >= cfg.max_minutes:
        return "max_minutes"
    if cfg.segment_steps and run.step - start_step >= cfg.segment_steps:
        return "segment_steps"
    if stop is not None and stop.is_set():
        return "signal"
    return None


def loss_row(run: Run, window: list[dict], lr: float) -> dict:
    """One history row: the loss terms averaged over the steps of `window` and over the processes, the lr, the
    seconds per step and the training minutes so far."""
    acc = run.accelerator
    means = torch.tensor([[t.get(k, float("nan")) for k in LOSS_TERMS] for t in window]).mean(0)
    means = acc.gather(means.to(acc.device)[None]).float().mean(0).tolist()  # mean over processes
    return {"step": run.step, "lr": lr, **{f"loss_{k}": v for k, v in zip(LOSS_TERMS, means) if v == v},
            "sec_per_step": round(float(np.mean([t["seconds"] for t in window])), 3),
            "minutes": round(run.minutes, 3)}


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
            export(run, finished=run.step >= cfg.total_steps)
        acc.wait_for_everyone()

    bar = tqdm(total=cfg.total_steps, initial=run.step, desc=f"harivo {cfg.variant}", disable=not main, mininterval=30)
    stopped_by = "max_steps"
    while run.step < cfg.total_steps:
        reason = stop_reason(cfg, run, t_start, start_step, stop)
        if reason is not None:
            stopped_by = reason
            break
        lr = run.lr_scheduler.get_last_lr()[0]
        t0 = time.time()
        terms = train_step(run)
        run.step += 1
        bar.update(1)
        window.append({**terms, "seconds": time.time() - t0})
        if run.step % cfg.log_every == 0 or run.step == cfg.total_steps:
            tick()
            run.history.append(loss_row(run, window, lr))
            bar.set_postfix({k[5:]: f"{v:.4f}" for k, v in run.history[-1].items() if k.startswith("loss_")})
            window = []
        if run.step % cfg.checkpoint_every == 0:
            checkpoint()
            if main and run.history:
                log(f"[{cfg.variant}] step {run.step}/{cfg.total_steps} saved; "
                    + ", ".join(f"{k} {v:.4g}" for k, v in run.history[-1].items() if k != "step"))
        if main and cfg.sample_every and run.step % cfg.sample_every == 0:
            log(f"[{cfg.variant}] samples -> {sample_videos(run)}")
    bar.close()
    checkpoint()
    if not isinstance(run.data, VideoLatents):
        run.data.close()  # stop the decoding threads of stream_data
    if main and cfg.sample_every and run.step >= cfg.total_steps and run.step % cfg.sample_every \
            and run.step > start_step:  # the last samples, unless the loop has just drawn them
        log(f"[{cfg.variant}] samples -> {sample_videos(run)}")
    log(f"[{cfg.variant}] stopped by {stopped_by} at step {run.step}/{cfg.total_steps}; exported {cfg.out}")
    return run


def main(argv: list[str] | None = None) -> Run:
    """`python -m harivo.train`: parse the flags, train; SIGTERM finishes the step, then saves and exports."""
    argv = sys.argv[1:] if argv is None else list(argv)
    cfg = parse_config(argv)
    command = "python -m harivo.train " + shlex.join(argv)
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())  # finish the step, then save and export
    try:
        return train(cfg, command, log=lambda m: print(m, flush=True), stop=stop)
    finally:
        signal.signal(signal.SIGTERM, previous)

