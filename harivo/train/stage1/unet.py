"""Stage 1's UNet stage: a `CLIPTextModel` (from scratch, trained jointly) and a `UNet2DConditionModel` on the
cached VAE latents of single training frames with their full captions (`cond_drop` of them empty, for
classifier-free guidance): epsilon prediction on SD's scaled-linear betas (or, with `zero_snr`, v-prediction on
the betas rescaled to zero terminal SNR), min-SNR-gamma weighting, optional
object weighting, offset noise and caption probe, AdamW + warm-up + cosine, EMA weights (the EMA is what is
exported to `output_dir`, see `stage1.export`).

The batch, noise, timesteps and caption drop of step n are a pure function of (seed, n)
(`train_utils.stage_step_generator`), so a run resumed from its state reproduces an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from harivo.train.stage1.config import T2IConfig
from harivo.train.stage1.data import UNetData, load_unet_data
from harivo.train.stage1.evaluation import sample_images, sample_prompts, save_grid, short_caption
from harivo.train.stage1.export import export_pipeline, text_encoder_record
from harivo.train.stage1.resume import resume_or_warm_start, state_dir
from harivo.train.utils import (WarmupDecay, module_tensors, save_training_state, stage_step_generator,
                                write_loss_curves)


def unet_loss(step, cfg, latents, cap_index, cap_ids, empty_ids, sf, noise_sched, alphas_cumprod, unet, te, acc, n,
              probe=None, cap_labels=None, masks=None):
    """Min-SNR-weighted epsilon loss of training step `step` (batch, noise, t and caption drop from (seed, step)).

    Returns (loss, eps MSE, caption-probe cross-entropy or None). With a `probe` (CaptionProbe) and `cap_labels`
    ((captions, 4), `caption_labels`), loss += text_probe_weight × the probe's cross-entropy on the batch's
    non-empty captions; it draws no random numbers, so the batch, noise and timesteps are those of a run without.
    """
    from harivo.noise import offset_noise, prediction_target
    from harivo.train.t2i_models import min_snr_weights

    device = acc.device
    gen = stage_step_generator(cfg.seed, 2, step)
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
    target = prediction_target(noise_sched, x0, noise, t)  # the noise itself, or v under zero_snr
    noisy, target, t, ids = noisy.to(device), target.to(device), t.to(device), ids.to(device)
    with acc.autocast():
        out = te(ids)
        pred = unet(noisy, t, out[0]).sample
    sq = (pred.float() - target) ** 2
    if masks is not None and cfg.unet_object_weight != 1.0:  # object-weighted ε-MSE (no random numbers drawn)
        wm = 1.0 + (cfg.unet_object_weight - 1.0) * masks[idx].to(device)
        per = (sq * (wm / wm.mean(dim=(1, 2, 3), keepdim=True))).mean(dim=(1, 2, 3))
    else:
        per = sq.mean(dim=(1, 2, 3))
    w = min_snr_weights(t, alphas_cumprod, cfg.snr_gamma, noise_sched.config.prediction_type)
    loss = (w * per).mean()
    probe_ce = None
    if probe is not None and cfg.text_probe_weight and bool((~drop).any()):
        keep = (~drop).to(device)
        probe_ce = probe(out[1][keep], cap_labels[cap_index[idx]].to(device)[keep])  # the CE (DDP-safe forward)
        loss = loss + cfg.text_probe_weight * probe_ce
    return loss, per.mean(), probe_ce


# ----------------------------------------------------------------------------------------------- the run
@dataclass
class UNetRun:
    """Everything the UNet stage holds while it trains."""

    cfg: T2IConfig
    acc: object
    data: UNetData
    unet: torch.nn.Module  # as accelerate prepared it (DDP on several GPUs)
    text_encoder: torch.nn.Module  # as prepared
    probe: torch.nn.Module | None  # the caption probe, as prepared (text_probe_weight > 0 only)
    ema_unet: object  # t2i_models.EMA; its module is what is exported
    ema_text_encoder: object
    optimizer: torch.optim.Optimizer
    params: list[torch.nn.Parameter]  # everything that trains (gradient clipping)
    stateful: dict[str, torch.nn.Module]  # the unwrapped modules whose weights the training state holds
    noise_scheduler: object  # DDPMScheduler on t2i_models.schedule(cfg.zero_snr)
    cap_labels: torch.Tensor | None  # (captions, 4) attribute labels for the probe
    params_record: dict  # parameter counts, for training.json
    step: int = 0
    history: list[dict] = field(default_factory=list)
    minutes_before: float = 0.0  # training minutes of the earlier segments
    seg_start: float = field(default_factory=time.time)

    @property
    def minutes(self) -> float:
        return self.minutes_before + (time.time() - self.seg_start) / 60


def build_models(cfg: T2IConfig, data: UNetData):
    """(text encoder, UNet, EMA of each, caption probe or None, motion-adapter parameter count), fresh; the
    weights are a pure function of cfg.seed."""
    from harivo.train.t2i_models import EMA, CaptionProbe, check_motion_compatible, make_text_encoder, make_unet

    torch.manual_seed(cfg.seed + 1)
    te = make_text_encoder(data.tokenizer, cfg.text_hidden, cfg.text_layers, cfg.text_heads, cfg.text_intermediate)
    unet = make_unet(cfg.unet_channels, cfg.unet_layers_per_block, cfg.text_hidden, cfg.unet_attention_head_dim,
                     cfg.unet_norm_groups, cfg.image_size // 4, cfg.latent_channels)
    motion_params = check_motion_compatible(unet, cfg.unet_layers_per_block)
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
        te.gradient_checkpointing_enable()
    ema_u, ema_t = EMA(unet, cfg.ema_decay), EMA(te, cfg.ema_decay)
    probe = CaptionProbe(cfg.text_hidden) if cfg.text_probe_weight else None
    return te, unet, ema_u, ema_t, probe, motion_params


def vae_folder(cfg: T2IConfig, init: Path | None) -> Path:
    """run_dir/vae (the VAE stage's export), else the init_from pipeline's VAE; ValueError if neither exists."""
    vae_dir = Path(cfg.run_dir) / "vae"
    if not (vae_dir / "config.json").is_file() and init is not None:
        vae_dir = init / "vae"
    if not (vae_dir / "config.json").is_file():
        raise ValueError(f"stage: the unet stage needs a trained VAE in {str(vae_dir)!r}; run --stage vae first")
    return vae_dir


def setup_unet(cfg: T2IConfig, acc) -> UNetRun:
    """Load the VAE and the (cached) data, build the models and AdamW, resume or warm-start, prepare."""
    from diffusers import DDPMScheduler

    from harivo.train.t2i_models import caption_labels, n_params, schedule

    init = Path(cfg.init_from) if cfg.init_from else None
    if init is not None and not (init / "unet" / "config.json").is_file():
        raise ValueError(f"init_from: expected a StableDiffusionPipeline folder with unet/, got {cfg.init_from!r}")
    data = load_unet_data(cfg, vae_folder(cfg, init), init, acc.device)
    acc.print(f"[unet] {len(data.latents)} cached latents, {len(data.captions)} captions, "
              f"scaling_factor {data.scaling_factor:.4f}")
    te, unet, ema_u, ema_t, probe, motion_params = build_models(cfg, data)
    params = list(unet.parameters()) + list(te.parameters()) + (list(probe.parameters()) if probe else [])
    opt = torch.optim.AdamW(params, lr=cfg.unet_lr, weight_decay=cfg.weight_decay)
    stateful = {"unet": unet, "text_encoder": te, "ema_unet": ema_u.module, "ema_text_encoder": ema_t.module,
                **({"caption_probe": probe} if probe is not None else {})}
    meta = resume_or_warm_start(cfg, "unet", stateful, opt,
                                {"unet": (unet, ema_u.module), "text_encoder": (te, ema_t.module)}, log=acc.print)
    unet, te, opt = acc.prepare(unet, te, opt)
    if probe is not None:
        probe = acc.prepare(probe)
    ema_u.module.to(acc.device)
    ema_t.module.to(acc.device)
    params_record = {"unet": n_params(acc.unwrap_model(unet)), "text_encoder": n_params(acc.unwrap_model(te)),
                     "vae": n_params(data.vae), "motion_adapter_for_stage2": motion_params}
    return UNetRun(cfg, acc, data, unet, te, probe, ema_u, ema_t, opt, params, stateful,
                   DDPMScheduler(**schedule(cfg.zero_snr)),
                   caption_labels(data.captions) if probe is not None else None,
                   params_record, meta.get("step", 0), meta.get("history", []), meta.get("minutes", 0.0))


def train_step(run: UNetRun, lr: float):
    """One optimizer step at `lr` on the batch of step `run.step`, then the EMA update; advances run.step.
    Returns (loss, eps MSE, probe cross-entropy or None)."""
    cfg, d, acc = run.cfg, run.data, run.acc
    for g in run.optimizer.param_groups:
        g["lr"] = lr
    loss, mse, probe_ce = unet_loss(run.step, cfg, d.latents, d.cap_index, d.cap_ids, d.empty_ids, d.scaling_factor,
                                    run.noise_scheduler, run.noise_scheduler.alphas_cumprod, run.unet,
                                    run.text_encoder, acc, len(d.latents), run.probe, run.cap_labels, d.masks)
    run.optimizer.zero_grad(set_to_none=True)
    acc.backward(loss)
    if cfg.grad_clip:
        acc.clip_grad_norm_(run.params, cfg.grad_clip)
    run.optimizer.step()
    run.step += 1
    run.ema_unet.update(acc.unwrap_model(run.unet), run.step)
    run.ema_text_encoder.update(acc.unwrap_model(run.text_encoder), run.step)
    return loss, mse, probe_ce


def save_state(run: UNetRun) -> None:
    """The training state (run_dir/state_unet) and the loss curves of run_dir."""
    meta = {"history": run.history, "minutes": run.minutes, "config": dataclasses.asdict(run.cfg), "step": run.step}
    save_training_state(state_dir(run.cfg, "unet"), module_tensors(run.stateful), run.optimizer, None, meta)
    write_loss_curves(Path(run.cfg.run_dir), run.history, "UNet loss", stem="loss_unet")


def export(run: UNetRun, argv_str: str) -> None:
    """output_dir from the EMA weights (`stage1.export.export_pipeline`)."""
    probe = run.acc.unwrap_model(run.probe) if run.probe is not None else None
    info = {"params": run.params_record, "steps": run.step, "minutes": run.minutes,
            "text_encoder": text_encoder_record(run.ema_text_encoder.module, run.data.tokenizer, probe, run.cfg)}
    export_pipeline(run.cfg, run.data.vae, run.ema_text_encoder.module, run.data.tokenizer, run.ema_unet.module, info,
                    run.data.vae_info, run.history, argv_str)
    run.acc.print(f"[unet] exported {run.cfg.output_dir} at step {run.step}")


def save_samples(run: UNetRun, prompts: list[str]) -> None:
    """A grid of the EMA models' images of `prompts` (run_dir/samples/unet_<step>.png)."""
    cfg = run.cfg
    imgs = sample_images(run.data.vae, run.ema_text_encoder.module, run.data.tokenizer, run.ema_unet.module, prompts,
                         cfg.seed, cfg.eval_steps, cfg.eval_guidance, cfg.zero_snr)
    save_grid(Path(cfg.run_dir) / "samples" / f"unet_{run.step:06d}.png", list(imgs),
              [short_caption(p) for p in prompts], cols=4)


def train_unet(cfg: T2IConfig, acc, t_start: float, argv_str: str) -> dict:
    """Train the UNet and text encoder to `unet_steps` (or until `max_minutes` after `t_start`): state every
    `checkpoint_every` steps, samples every `sample_every`, an export every `export_every_minutes` and at the
    end. Returns the stage's record (parameter counts, steps, minutes, finished)."""
    from tqdm.auto import tqdm

    run = setup_unet(cfg, acc)
    last_export = time.time()
    schedule = WarmupDecay(cfg.unet_warmup_steps, cfg.unet_steps, cfg.unet_min_lr_ratio)
    prompts, _ = sample_prompts(8, cfg.seed + 11)
    bar = tqdm(total=cfg.unet_steps, initial=run.step, desc="unet", disable=not acc.is_local_main_process,
               mininterval=5)
    run.unet.train()
    run.text_encoder.train()
    while run.step < cfg.unet_steps:
        if cfg.max_minutes and (time.time() - t_start) / 60 >= cfg.max_minutes:
            break
        lr = cfg.unet_lr * schedule(run.step)
        loss, mse, probe_ce = train_step(run, lr)
        bar.update(1)
        if run.step % cfg.log_every == 0 or run.step == 1:
            run.history.append({"step": run.step, "loss": loss.item(), "loss_eps_mse": mse.item(), "lr": lr,
                                "minutes": round(run.minutes, 3),
                                **({"loss_text_probe": probe_ce.item()} if probe_ce is not None else {})})
            bar.set_postfix(loss=f"{loss.item():.4f}", mse=f"{mse.item():.4f}")
        if run.step % cfg.checkpoint_every == 0:
            save_state(run)
        if run.step % cfg.sample_every == 0:
            save_samples(run, prompts)
        if cfg.export_every_minutes and (time.time() - last_export) / 60 >= cfg.export_every_minutes:
            export(run, argv_str)
            last_export = time.time()
    bar.close()
    save_state(run)
    export(run, argv_str)
    return {"params": run.params_record, "steps": run.step, "minutes": run.minutes,
            "finished": run.step >= cfg.unet_steps}
