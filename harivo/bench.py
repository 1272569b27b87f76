"""`python -m harivo.bench [--quick] [--device cpu|cuda] [--json FILE]`: speed and memory of HARIVO, as ratios.

Every ratio compares cases on the same weights, seed and settings, run side by side in one process, interleaved
(A, B, A, B, … after a warm-up round) and reduced with the median, so that a busy machine slows both sides alike.
Ratios are of wall-clock medians; on the CPU `cpu_time_ratios` gives the same ratios of process CPU time, which
another process competing for the cores barely disturbs (with one torch thread it is the idle machine's wall
clock). Absolute seconds (both clocks) are reported for context, with the load average at start.

Figures (targets from issues 3 and 6, checked in the JSON as `checks`):
- `sampler_vs_diffusers`  HARIVO sampler with everything off ÷ diffusers `AnimateDiffPipeline` + `DDIMScheduler`
- `full_vs_baseline`      mapping network + frame tokens on ÷ off (inference; MG, CFG and capture equal)
- `mg_overhead`, `capture_overhead`, `cfg_schedule_overhead`   MG α = 40 / attention capture / App. D schedule,
                          each on ÷ off
- `train_step_full_vs_baseline`   one optimizer step of the `full` variant (all four losses of Eq. 5, two UNet
                          passes) ÷ one of the `baseline` variant (L_simple only); the L_reg branch alone is ~0.9
- `app_request_seconds`   one app request, `explorer.run_and_render` with the default settings (16 frames,
                          25 steps, attention capture, every view), on the CPU as the app runs
- `peak_rss_mb`           peak resident memory of the whole run
With `--device cuda` everything runs on the GPU (the app request stays on the CPU) and `sd15` adds SD1.5-sized
figures on random weights (the real UNet / VAE / CLIP / AnimateDiff v2 configs): 16 frames at 256² and 512²,
25 steps, HARIVO full vs `AnimateDiffPipeline` time and peak CUDA memory, and one training step of `baseline` and
`full` (bf16 autocast). A configuration that runs out of memory is recorded as such.

`--quick` uses the tiny random model (about a minute on 2 cores); without it the embedded shapes-world `full`
checkpoint and base are used when present, the tiny model otherwise (the JSON says which).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from diffusers import AnimateDiffPipeline, DDIMScheduler
from tqdm.auto import tqdm

from . import fileio, train
from .config import HarivoConfig
from .model import HarivoVideoModel
from .pipeline import DEFAULT_CHECKPOINTS, GenerationSettings, HarivoPipeline
from .sampling import CFGSchedule, MGConfig
from .tiny import TINY_WORDS, save_tiny_checkpoint, scheduler_config, word_tokenizer
from .train_utils import WarmupDecay, step_generator

PROMPT = "a red circle is moving left to right on a gray background"
TARGETS = {  # figure -> upper bound (issues 3 and 6)
    "sampler_vs_diffusers": 1.05,
    "full_vs_baseline": 1.15,
    "mg_overhead": 1.02,
    "capture_overhead": 1.25,
    "cfg_schedule_overhead": 1.02,  # ours: the schedule is a lookup per step, it should cost nothing
    "train_step_full_vs_baseline": 2.0,
    "app_request_seconds": 10.0,
}
# inference figure -> (numerator case, denominator case)
INFERENCE_RATIOS = {
    "sampler_vs_diffusers": ("harivo_off", "diffusers"),
    "full_vs_baseline": ("harivo_mapping_tokens", "harivo_off"),
    "mg_overhead": ("harivo_mg", "harivo_off"),
    "capture_overhead": ("harivo_capture", "harivo_off"),
    "cfg_schedule_overhead": ("harivo_cfg_schedule", "harivo_off"),
    "all_on_vs_diffusers": ("harivo_all_on", "diffusers"),  # context: the app's defaults, no target
}

# Real SD1.5 / AnimateDiff configs (as tests/test_real_scale.py), random weights: no download.
SD15_UNET = dict(  # runwayml/stable-diffusion-v1-5 unet/config.json
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32,
)
SD15_VAE = dict(  # vae/config.json
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, sample_size=512,
    scaling_factor=0.18215,
)
SD15_TEXT = dict(  # text_encoder/config.json (CLIP ViT-L/14 text tower)
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
    max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
)
ANIMATEDIFF_V2 = dict(  # guoyww/animatediff-motion-adapter-v1-5-2
    block_out_channels=(320, 640, 1280, 1280), motion_layers_per_block=2, motion_num_attention_heads=8,
    motion_max_seq_length=32, use_motion_mid_block=True,
)


@dataclass(frozen=True)
class ScaleConfigs:
    """The architecture of the `sd15` section (tests pass tiny ones for a dry run on the CPU)."""

    unet: dict = field(default_factory=lambda: dict(SD15_UNET))
    vae: dict = field(default_factory=lambda: dict(SD15_VAE))
    text: dict = field(default_factory=lambda: dict(SD15_TEXT))
    adapter: dict = field(default_factory=lambda: dict(ANIMATEDIFF_V2))
    train_batch_size: int = 1  # videos per training step


# ------------------------------------------------------------------------------------------------ timing
def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def timed(fn: Callable[[], object], device: torch.device) -> dict[str, float | None]:
    """Wall and process CPU seconds of one call, and its peak CUDA memory (MiB) on a GPU."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    if cuda:
        torch.cuda.synchronize(device)
    out = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu, "peak_cuda_mb": None}
    if cuda:
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def interleaved(cases: dict[str, Callable[[], object]], repeats: int, device: torch.device, warmup: int = 1,
                desc: str = "bench rounds") -> dict[str, dict]:
    """Cases run round-robin `repeats` times after `warmup` rounds, each round starting one case later (so that no
    case always follows the same one). Per case: median wall and CPU seconds, every wall time, and the peak CUDA
    memory over all calls (GPU only)."""
    runs: dict[str, list[dict]] = {name: [] for name in cases}
    peaks: dict[str, float] = {}
    names = list(cases)
    for r in tqdm(range(warmup + repeats), desc=desc, unit="round"):
        for name in names[r % len(names):] + names[: r % len(names)]:
            t = timed(cases[name], device)
            if t["peak_cuda_mb"] is not None:
                peaks[name] = max(peaks.get(name, 0.0), t["peak_cuda_mb"])
            if r >= warmup:
                runs[name].append(t)
    out = {}
    for name, ts in runs.items():
        out[name] = {"wall_s": statistics.median(t["wall_s"] for t in ts),
                     "cpu_s": statistics.median(t["cpu_s"] for t in ts),
                     "times_s": [round(t["wall_s"], 4) for t in ts]}
        if name in peaks:
            out[name]["peak_cuda_mb"] = round(peaks[name], 1)
    return out


def ratio(timings: dict[str, dict], num: str, den: str, clock: str = "wall_s") -> float:
    return timings[num][clock] / timings[den][clock]


def free_memory(device: torch.device, accelerator=None) -> None:
    """Drop what earlier cases left behind (the accelerator keeps every prepared model and optimizer)."""
    if accelerator is not None:
        accelerator.free_memory()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------------ inference
def animatediff_pipeline(pipe: HarivoPipeline) -> AnimateDiffPipeline:
    """diffusers' AnimateDiffPipeline on the very modules of `pipe` (its UNetMotionModel already holds the motion
    modules, so no MotionAdapter copy is needed)."""
    scheduler = DDIMScheduler(**pipe.scheduler.config)
    ad = AnimateDiffPipeline(vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
                             unet=pipe.model.unet, motion_adapter=None, scheduler=scheduler)
    ad.set_progress_bar_config(disable=True)
    return ad


def inference_cases(pipe: HarivoPipeline, frames: int, steps: int, size: int | None = None) -> dict[str, Callable]:
    """The cases of INFERENCE_RATIOS. Every HARIVO case is `harivo_off` with one thing switched on."""
    ad = animatediff_pipeline(pipe)
    off = GenerationSettings(prompt=PROMPT, seed=0, num_frames=frames, num_inference_steps=steps,
                             cfg=CFGSchedule.constant(7.5), mg=MGConfig(enabled=False), use_mapping=False,
                             use_frame_tokens=False, capture_attention=False, height=size, width=size)
    settings = {
        "harivo_off": off,
        "harivo_mapping_tokens": dataclasses.replace(off, use_mapping=True, use_frame_tokens=True),
        "harivo_mg": dataclasses.replace(off, mg=MGConfig(alpha=40.0)),
        "harivo_capture": dataclasses.replace(off, capture_attention=True),
        "harivo_cfg_schedule": dataclasses.replace(off, cfg=CFGSchedule()),
        "harivo_all_on": GenerationSettings(prompt=PROMPT, seed=0, num_frames=frames, num_inference_steps=steps,
                                            height=size, width=size),  # the app's defaults
    }
    cases: dict[str, Callable] = {
        "diffusers": lambda: ad(PROMPT, num_frames=frames, num_inference_steps=steps, guidance_scale=7.5, height=size,
                                width=size, generator=torch.Generator(pipe.device).manual_seed(0), output_type="np"),
    }
    cases.update({name: (lambda s=s: pipe(s)) for name, s in settings.items()})
    return cases


# ------------------------------------------------------------------------------------------------ training
def make_accelerator(device: torch.device, mixed_precision: str):
    """One Accelerator per process (accelerate's state is global; a second one may not change the precision)."""
    from accelerate import Accelerator

    return Accelerator(cpu=device.type == "cpu" and torch.cuda.is_available(), mixed_precision=mixed_precision)


def training_run(variant: str, base: train.BaseModel, accelerator, **overrides) -> train.Run:
    """A `train.Run` of `variant` on an in-memory base, without data: the model, projection head, queue, AdamW and
    lr schedule exactly as `train.setup` makes them (weights are a function of the seed, so every variant starts
    from the same motion modules). `video_size` defaults to the base's native size."""
    overrides.setdefault("video_size", base.unet.config.sample_size * base.vae_factor)
    cfg = train.validate(train.TrainConfig(variant=variant, sample_every=0, **overrides)).resolved()
    raw = train.build_training_module(cfg, base)
    params = raw.trainable()
    optimizer = torch.optim.AdamW(list(params.values()), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = WarmupDecay(cfg.lr_warmup_steps, cfg.max_steps, cfg.min_lr / cfg.lr, cfg.lr_schedule)
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    raw.to(accelerator.device)
    module, prepared = accelerator.prepare(raw, optimizer)
    return train.Run(cfg, accelerator, base, None, raw, module, params, optimizer, prepared, lr_scheduler)


def random_batch(base: train.BaseModel, cfg: train.TrainConfig, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Latents (b, c, f, h, w) and text states (b, M, D) of the base's shapes; values do not change the timing."""
    g = torch.Generator().manual_seed(cfg.seed)
    unet, side = base.unet.config, cfg.video_size // base.vae_factor
    latents = torch.randn((cfg.batch_size, unet.in_channels, cfg.num_frames, side, side), generator=g)
    text = torch.randn(cfg.batch_size, base.tokenizer.model_max_length, unet.cross_attention_dim, generator=g)
    return latents.to(device), text.to(device)


def training_cases(base: train.BaseModel, accelerator, **overrides) -> tuple[dict[str, Callable], dict]:
    """One optimizer step (`train.train_step`: Eq. 5 forward, backward, clip, AdamW) per call of each variant, on
    the same batch; the noise and timesteps of call n are the same for both variants. Also returns the settings."""
    cases = {}
    for variant in ("baseline", "full"):
        run = training_run(variant, base, accelerator, **overrides)
        batch = random_batch(base, run.cfg, accelerator.device)
        calls = iter(range(10**9))
        cases[variant] = lambda run=run, batch=batch, calls=calls: train.train_step(
            run, batch, step_generator(run.cfg.seed, next(calls)))
    keys = ("num_frames", "video_size", "batch_size", "mapping_hidden_channels", "mapping_heads", "mapping_head_dim",
            "motion_num_attention_heads", "num_frame_tokens")
    settings = {k: getattr(run.cfg, k) for k in keys} | {"mixed_precision": accelerator.mixed_precision,
                                                        "base": str(base.path)}
    return cases, settings


# ------------------------------------------------------------------------------------------------ sections
def small_model_section(quick: bool, frames: int, steps: int, repeats: int, device: torch.device, accelerator,
                        workdir: Path) -> dict:
    """The ratios on the embedded shapes-world model (or the tiny random one)."""
    embedded = DEFAULT_CHECKPOINTS / "harivo-shapes-full"
    if not quick and embedded.is_dir():
        pipe, label = HarivoPipeline.from_variant("full"), "embedded shapes-world `full`"
    else:
        pipe, label = HarivoPipeline.from_checkpoint(save_tiny_checkpoint(workdir, num_frames=frames)), "tiny random"
    pipe.to(device)
    result: dict = {"model": label}
    timings = interleaved(inference_cases(pipe, frames, steps), repeats, device, desc="inference rounds")
    result.update({name: ratio(timings, *cases) for name, cases in INFERENCE_RATIOS.items()})
    cpu_ratios = {name: ratio(timings, *cases, clock="cpu_s") for name, cases in INFERENCE_RATIOS.items()}
    del pipe
    free_memory(device)

    base_dir = DEFAULT_CHECKPOINTS / "shapes-sd" if label.startswith("embedded") else workdir / "base"
    base = train.load_base(str(base_dir))
    base.unet.to(accelerator.device)
    cases, result["train_step_settings"] = training_cases(base, accelerator, num_frames=frames)
    train_timings = interleaved(cases, repeats, device, desc="train-step rounds")
    result["train_step_full_vs_baseline"] = ratio(train_timings, "full", "baseline")
    cpu_ratios["train_step_full_vs_baseline"] = ratio(train_timings, "full", "baseline", clock="cpu_s")
    if device.type == "cpu":  # process CPU time: what the wall clock would say on an idle machine (one thread)
        result["cpu_time_ratios"] = cpu_ratios
    result["seconds"] = timings | {f"train_step_{k}": v for k, v in train_timings.items()}
    del base, cases
    free_memory(device, accelerator)
    return result


def app_request_section(quick: bool, repeats: int, workdir: Path) -> dict:
    """`explorer.run_and_render` with the app's default request, after one warm-up request (which loads the model)."""
    from .explorer import ModelRegistry, RunRequest, run_and_render

    checkpoints = workdir / "no-checkpoints" if quick else None  # an empty folder: the registry offers the tiny model
    registry = ModelRegistry(checkpoints=checkpoints, cache_dir=workdir / "app-cache", tiny_frames=16)
    request = RunRequest(model=registry.default_key)
    run = lambda: run_and_render(registry, RunRequest(**dataclasses.asdict(request)))  # noqa: E731
    timings = interleaved({"app_request": run}, repeats, torch.device("cpu"), desc="app requests")["app_request"]
    return {"app_request_seconds": timings["wall_s"], "app_model": registry.entry(request.model).label,
            "app_request": {**timings, "frames": request.num_frames, "steps": request.num_inference_steps}}


def scale_components(configs: ScaleConfigs, seed: int = 0) -> dict:
    """Random-weight SD-style components (no download); any video size up to the UNet's native one works."""
    from diffusers import AutoencoderKL, MotionAdapter, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    tokenizer = word_tokenizer(TINY_WORDS)
    vae = AutoencoderKL(**configs.vae).eval().requires_grad_(False)
    unet = UNet2DConditionModel(**configs.unet).eval().requires_grad_(False)
    text = dict(configs.text, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)
    text_encoder = CLIPTextModel(CLIPTextConfig(**text)).eval().requires_grad_(False)
    return dict(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                adapter=MotionAdapter(**configs.adapter))


def guarded(fn: Callable[[], dict]) -> dict:
    """fn() or, when the accelerator runs out of memory, a record saying so."""
    try:
        return fn()
    except torch.OutOfMemoryError as e:
        return {"error": f"out of memory: {str(e).splitlines()[0]}"}


def scale_section(sizes: list[int], frames: int, steps: int, repeats: int, device: torch.device, accelerator,
                  dtype: torch.dtype, configs: ScaleConfigs = ScaleConfigs()) -> dict:
    """Per size: one training step of `baseline` and `full` (fp32 weights, the accelerator's autocast; below the
    native size as the paper trains SD1.5 at 256²), then inference in `dtype`: HARIVO full (mapping, frame tokens,
    MG, App. D schedule; no capture) vs AnimateDiffPipeline. One set of random weights serves every size."""
    out: dict = {"frames": frames, "steps": steps, "dtype": str(dtype).removeprefix("torch.")}
    c = scale_components(configs)
    base = train.BaseModel(c["vae"], c["text_encoder"], c["tokenizer"], c["unet"].to(device), scheduler_config(),
                           Path("random-sd15"), {})

    def train_part(size: int) -> dict:
        cases, settings = training_cases(base, accelerator, num_frames=frames, video_size=size,
                                         batch_size=configs.train_batch_size,
                                         motion_num_attention_heads=configs.adapter["motion_num_attention_heads"])
        t = interleaved(cases, repeats, device, desc=f"{size}px train steps")
        return {"seconds": t, "full_vs_baseline": ratio(t, "full", "baseline"), "settings": settings}

    for size in sizes:
        out[f"{size}px"] = {"train_step": guarded(lambda: train_part(size))}
        free_memory(device, accelerator)

    # inference: the same weights cast to `dtype` (after training, which needs them in fp32)
    model = HarivoVideoModel.from_unet2d(c["unet"], c["adapter"], HarivoConfig(num_frames=frames))
    pipe = HarivoPipeline(c["vae"], c["text_encoder"], c["tokenizer"], model.eval(), DDIMScheduler(**scheduler_config()))
    pipe.to(device, dtype)

    def inference_part(size: int) -> dict:
        every = inference_cases(pipe, frames, steps, size)
        full = GenerationSettings(prompt=PROMPT, seed=0, num_frames=frames, num_inference_steps=steps,
                                  capture_attention=False, height=size, width=size)
        cases = {"diffusers": every["diffusers"], "harivo_full": lambda: pipe(full)}
        t = interleaved(cases, repeats, device, desc=f"{size}px inference")
        return {"seconds": t, "full_vs_diffusers": ratio(t, "harivo_full", "diffusers")}

    for size in sizes:
        out[f"{size}px"]["inference"] = guarded(lambda: inference_part(size))
        free_memory(device)
    return out


# ------------------------------------------------------------------------------------------------ run + CLI
def machine_info(device: torch.device) -> dict:
    import diffusers
    import transformers

    info = {
        "platform": platform.platform(), "python": platform.python_version(), "cpu": platform.processor() or "",
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(), "load_average_at_start": list(os.getloadavg()),
        "device": str(device), "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                                            "transformers": transformers.__version__},
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = {"name": props.name, "memory_gb": round(props.total_memory / 2**30, 1)}
    return info


def checks(result: dict) -> dict[str, dict]:
    return {name: {"value": result[name], "target": target, "pass": bool(result[name] <= target)}
            for name, target in TARGETS.items() if isinstance(result.get(name), (int, float))}


def run(quick: bool, device: str = "cpu", frames: int = 16, steps: int | None = None, repeats: int | None = None,
        sd15_sizes: list[int] | None = None, sd15_dtype: str = "float16", app: bool = True) -> dict:
    """Every figure of the module docstring as one JSON-serialisable dict."""
    validate(device, frames, steps, repeats, sd15_sizes)
    dev = torch.device(device)
    steps = steps or (10 if quick else 25)
    repeats = repeats or 7
    accelerator = make_accelerator(dev, "bf16" if dev.type == "cuda" else "no")
    result: dict = {"quick": quick, "frames": frames, "steps": steps, "repeats": repeats, "machine": machine_info(dev)}
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        result.update(small_model_section(quick, frames, steps, repeats, dev, accelerator, Path(tmp)))
        if app:
            result.update(app_request_section(quick, 2 if quick else 3, Path(tmp)))
    if dev.type == "cuda":
        sizes = sd15_sizes or ([256] if quick else [256, 512])
        result["sd15"] = scale_section(sizes, 16, 25, 1 if quick else 3, dev, accelerator, getattr(torch, sd15_dtype))
    result["peak_rss_mb"] = peak_rss_mb()
    result["checks"] = checks(result)
    result["targets"] = dict(TARGETS)
    return result


def validate(device: str, frames: int, steps: int | None, repeats: int | None, sd15_sizes: list[int] | None) -> None:
    """ValueError naming the argument for anything the benchmark cannot run."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device: expected 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' asked for, but torch sees no CUDA device")
    if not 3 <= frames <= 32:
        raise ValueError(f"frames: expected 3..32 (the tiny motion modules cover 32 frames; MG needs 3), got {frames}")
    for name, value in (("steps", steps), ("repeats", repeats)):
        if value is not None and value < 1:
            raise ValueError(f"{name}: expected a positive number, got {value}")
    for size in sd15_sizes or []:
        if not 64 <= size <= 512 or size % 64:
            raise ValueError(f"sd15_sizes: expected multiples of 64 (VAE ×8, UNet ×8) up to SD1.5's native 512, "
                             f"got {size}")


def summary(result: dict) -> str:
    lines = [f"{result['model']} · {result['frames']} frames · {result['steps']} steps · {result['repeats']} rounds · "
             f"{result['machine']['device']}, {result['machine']['torch_threads']} threads"]
    cpu = result.get("cpu_time_ratios", {})
    for name, c in result["checks"].items():
        line = f"  {name:30s} {c['value']:8.3f}  target ≤ {c['target']:<5g} {'pass' if c['pass'] else 'MISS'}"
        lines.append(line + (f"   (CPU-time ratio {cpu[name]:.3f})" if name in cpu else ""))
    lines.append(f"  {'peak_rss_mb':30s} {result['peak_rss_mb']:8.0f}")
    for size, parts in result.get("sd15", {}).items():
        if size.endswith("px"):
            lines += [f"  sd15 {size} {part}: {scale_line(out)}" for part, out in parts.items()]
    return "\n".join(lines)


def scale_line(part: dict) -> str:
    if "error" in part:
        return part["error"]
    return " · ".join(f"{k} {v['wall_s']:.2f} s, {(v.get('peak_cuda_mb') or 0) / 1024:.1f} GiB"
                      for k, v in part["seconds"].items())


def parse_sizes(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated sizes such as 256,512, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harivo.bench", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny random model, 10 steps (about a minute)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (cuda adds the SD1.5-sized figures)")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--steps", type=int, default=None, help="DDIM steps of the ratio cases (default 10 quick, 25 full)")
    p.add_argument("--repeats", type=int, default=None, help="measured rounds after one warm-up (default 7)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--sd15-sizes", type=parse_sizes, default=None,
                   help="cuda: video sizes of the SD1.5-sized figures (default 256,512; quick 256)")
    p.add_argument("--sd15-dtype", choices=("float16", "bfloat16", "float32"), default="float16",
                   help="cuda: inference weights dtype of the SD1.5-sized figures")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        validate(args.device, args.frames, args.steps, args.repeats, args.sd15_sizes)
    except ValueError as e:
        p.error(str(e))
    result = run(args.quick, args.device, args.frames, args.steps, args.repeats, args.sd15_sizes, args.sd15_dtype)
    print(summary(result))
    if args.json:
        fileio.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
