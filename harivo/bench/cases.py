"""The measured cases and sections of `python -m harivo.bench` (the figures are listed in its module docstring).

Timing helpers (`timed`, `interleaved`: cases run round-robin, reduced with the median; `ratio`), the cases
themselves (HARIVO sampler settings vs diffusers' `AnimateDiffPipeline`, one optimizer step of `baseline` and
`full`), and the sections that run them: the embedded / tiny model (`small_model_section`), one app request
(`app_request_section`) and the SD1.5-sized configs on random weights (`scale_section`).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from diffusers import AnimateDiffPipeline, DDIMScheduler
from tqdm.auto import tqdm

from harivo.config import HarivoConfig
from harivo.model import HarivoVideoModel
from harivo.pipeline import DEFAULT_CHECKPOINTS, HarivoPipeline
from harivo.sampling import CFGSchedule, MGConfig
from harivo.settings import GenerationSettings
from harivo.train.stage2.base import BaseModel, load_base
from harivo.train.stage2.config import TrainConfig, validate
from harivo.train.stage2.run import Run, train_step
from harivo.train.stage2.training_module import build_training_module
from harivo.threads import usable_cpus
from harivo.tracing import trace
from harivo.tiny import TINY_WORDS, save_tiny_checkpoint, scheduler_config, word_tokenizer
from harivo.train.utils import WarmupDecay, step_generator

PROMPT = "a red circle is moving left to right on a gray background"
# inference figure -> (numerator case, denominator case)
INFERENCE_RATIOS = {
    "sampler_vs_diffusers": ("harivo_off", "diffusers"),
    "full_vs_baseline": ("harivo_mapping_tokens", "harivo_off"),
    "mg_overhead": ("harivo_mg", "harivo_off"),
    "capture_overhead": ("harivo_capture", "harivo_off"),
    "cfg_schedule_overhead": ("harivo_cfg_schedule", "harivo_off"),
    "trace_overhead": ("diffusers_traced", "diffusers"),  # `harivo.trace` around the stock pipeline
    "all_on_vs_diffusers": ("harivo_all_on", "diffusers"),  # context: the app's defaults, no target
}
TRACE_CASES = INFERENCE_RATIOS["trace_overhead"]

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
    def diffusers():
        return ad(PROMPT, num_frames=frames, num_inference_steps=steps, guidance_scale=7.5, height=size, width=size,
                  generator=torch.Generator(pipe.device).manual_seed(0), output_type="np")

    def diffusers_traced():
        with trace(ad) as tr:
            diffusers()
        return tr.record  # read back, as a notebook does

    cases: dict[str, Callable] = {"diffusers": diffusers, "diffusers_traced": diffusers_traced}
    cases.update({name: (lambda s=s: pipe(s)) for name, s in settings.items()})
    return cases


# ------------------------------------------------------------------------------------------------ training
def make_accelerator(device: torch.device, mixed_precision: str):
    """One Accelerator per process (accelerate's state is global; a second one may not change the precision)."""
    from accelerate import Accelerator

    return Accelerator(cpu=device.type == "cpu" and torch.cuda.is_available(), mixed_precision=mixed_precision)


def training_run(variant: str, base: BaseModel, accelerator, **overrides) -> Run:
    """A `Run` of `variant` on an in-memory base, without data: the model, projection head, queue, AdamW and
    lr schedule exactly as `stage2.run.setup` makes them (weights are a function of the seed, so every variant
    starts from the same motion modules). `video_size` defaults to the base's native size."""
    overrides.setdefault("video_size", base.unet.config.sample_size * base.vae_factor)
    cfg = validate(TrainConfig(variant=variant, sample_every=0, **overrides)).resolved()
    raw = build_training_module(cfg, base)
    params = raw.trainable()
    optimizer = torch.optim.AdamW(list(params.values()), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = WarmupDecay(cfg.lr_warmup_steps, cfg.max_steps, cfg.min_lr / cfg.lr, cfg.lr_schedule)
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    raw.to(accelerator.device)
    module, prepared = accelerator.prepare(raw, optimizer)
    return Run(cfg, accelerator, base, None, raw, module, params, optimizer, prepared, lr_scheduler)


def random_batch(base: BaseModel, cfg: TrainConfig, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Latents (b, c, f, h, w) and text states (b, M, D) of the base's shapes; values do not change the timing."""
    g = torch.Generator().manual_seed(cfg.seed)
    unet, side = base.unet.config, cfg.video_size // base.vae_factor
    latents = torch.randn((cfg.batch_size, unet.in_channels, cfg.num_frames, side, side), generator=g)
    text = torch.randn(cfg.batch_size, base.tokenizer.model_max_length, unet.cross_attention_dim, generator=g)
    return latents.to(device), text.to(device)


def training_cases(base: BaseModel, accelerator, **overrides) -> tuple[dict[str, Callable], dict]:
    """One optimizer step (`train_step`: Eq. 5 forward, backward, clip, AdamW) per call of each variant, on
    the same batch; the noise and timesteps of call n are the same for both variants. Also returns the settings."""
    cases = {}
    for variant in ("baseline", "full"):
        run = training_run(variant, base, accelerator, **overrides)
        batch = random_batch(base, run.cfg, accelerator.device)
        calls = iter(range(10**9))
        cases[variant] = lambda run=run, batch=batch, calls=calls: train_step(
            run, batch, step_generator(run.cfg.seed, next(calls)))
    keys = ("num_frames", "video_size", "batch_size", "mapping_hidden_channels", "mapping_heads", "mapping_head_dim",
            "motion_num_attention_heads", "num_frame_tokens")
    settings = {k: getattr(run.cfg, k) for k in keys} | {"mixed_precision": accelerator.mixed_precision,
                                                        "base": str(base.path)}
    return cases, settings


# ------------------------------------------------------------------------------------------------ sections
def small_pipeline(quick: bool, frames: int, device: torch.device, workdir: Path) -> tuple[HarivoPipeline, str]:
    """The embedded shapes-world `full` model (the tiny random one with `quick` or when it is absent), on `device`."""
    embedded = DEFAULT_CHECKPOINTS / "harivo-shapes-full"
    if not quick and embedded.is_dir():
        pipe, label = HarivoPipeline.from_variant("full"), "embedded shapes-world `full`"
    else:
        pipe, label = HarivoPipeline.from_checkpoint(save_tiny_checkpoint(workdir, num_frames=frames)), "tiny random"
    return pipe.to(device), label


def small_model_section(quick: bool, frames: int, steps: int, repeats: int, device: torch.device, accelerator,
                        workdir: Path) -> dict:
    """The ratios on the embedded shapes-world model (or the tiny random one)."""
    pipe, label = small_pipeline(quick, frames, device, workdir)
    result: dict = {"model": label}
    timings = interleaved(inference_cases(pipe, frames, steps), repeats, device, desc="inference rounds")
    result.update({name: ratio(timings, *cases) for name, cases in INFERENCE_RATIOS.items()})
    cpu_ratios = {name: ratio(timings, *cases, clock="cpu_s") for name, cases in INFERENCE_RATIOS.items()}
    del pipe
    free_memory(device)

    base_dir = DEFAULT_CHECKPOINTS / "shapes-sd" if label.startswith("embedded") else workdir / "base"
    base = load_base(str(base_dir))
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


def world_section(repeats: int) -> dict:
    """Rendering one 16x64x64 shapes-world video (stage 1 renders its training frames fresh every step) with the
    world's band ÷ on a flat backdrop (``World(band_px=0)``), over a few specs and seeds; absolute milliseconds for
    context."""
    from harivo.data.shapes import WORLD, ShapeSpec, World, render_video

    specs = [ShapeSpec("yellow", "star", "getting closer", "gray"), ShapeSpec("red", "square", "spinning", "blue"),
             ShapeSpec("white", "triangle", "moving left to right", "black")]

    seeds = range(3)

    def renders(world):
        return lambda: [render_video(spec, seed, world=world) for spec in specs for seed in seeds]

    n = len(specs) * len(seeds)
    t = interleaved({"band": renders(WORLD), "flat": renders(World(band_px=0))}, repeats, torch.device("cpu"),
                    desc="render rounds")
    return {"render_band_vs_flat": ratio(t, "band", "flat"), "render_world": WORLD.version,
            "render_video_ms": {k: round(1000 * v["wall_s"] / n, 2) for k, v in t.items()}}


def app_request_section(quick: bool, repeats: int, workdir: Path, threads: int | None = None) -> dict:
    """The app's default request as `python app.py` answers it (`explorer.run_in_stages`, the CFG plot, the app's
    thread choice `harivo.threads.ThreadChoice`: the cores the load leaves, or `threads`), after one warm-up request
    (which loads the model). `app_request_seconds`: until the first answer (the video and the first screen's views);
    `app_request_all_seconds`: until every view and the download bundle. Also the median split: sampling (the
    pipeline call, VAE decode included), then the first screen, then the rest."""
    from harivo.explorer import ModelRegistry, RunRequest, default_request, render_cfg_schedule, run_in_stages
    from harivo.threads import ThreadChoice

    checkpoints = workdir / "no-checkpoints" if quick else None  # an empty folder: the registry offers the tiny model
    registry = ModelRegistry(checkpoints=checkpoints, cache_dir=workdir / "app-cache", tiny_frames=16,
                             threads=ThreadChoice(threads))
    request = default_request(registry)  # the model's recorded sampling (CFG schedule, α, steps), as the app opens
    marks: dict[str, list[float]] = {"first_s": [], "all_s": [], "sampling_s": []}
    used: list[int] = []

    def run():
        start = time.perf_counter()
        render_cfg_schedule(request.cfg_high, request.cfg_switch, request.cfg_low, request.num_inference_steps,
                            registry.get(request.model).scheduler.config)  # as the app's handler does
        for result, _, done in run_in_stages(registry, RunRequest(**dataclasses.asdict(request))):
            marks["all_s" if done else "first_s"].append(time.perf_counter() - start)
        marks["sampling_s"].append(result.elapsed)
        used.append(result.threads)

    timings = interleaved({"app_request": run}, repeats, torch.device("cpu"), desc="app requests")["app_request"]
    med = {k: statistics.median(v[1:]) for k, v in marks.items()}  # without the warm-up request
    return {"app_request_seconds": med["first_s"], "app_request_all_seconds": med["all_s"],
            "app_model": registry.entry(request.model).label,
            "app_request": {**timings, **{k: round(v, 3) for k, v in med.items()}, "threads": used[1:],
                            "frames": request.num_frames, "steps": request.num_inference_steps}}


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
    MG, App. D schedule; without and with the app's attention capture) vs AnimateDiffPipeline, seconds and peak
    memory per video. One set of random weights serves every size."""
    out: dict = {"frames": frames, "steps": steps, "dtype": str(dtype).removeprefix("torch.")}
    c = scale_components(configs)
    base = BaseModel(c["vae"], c["text_encoder"], c["tokenizer"], c["unet"].to(device), scheduler_config(),
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
    pipe = scale_pipeline(c, frames, device, dtype)

    def inference_part(size: int) -> dict:
        every = inference_cases(pipe, frames, steps, size)
        full = GenerationSettings(prompt=PROMPT, seed=0, num_frames=frames, num_inference_steps=steps,
                                  capture_attention=False, height=size, width=size)
        app = dataclasses.replace(full, capture_attention=True)  # the app's path: cross-attention maps recorded
        cases = {"diffusers": every["diffusers"], "harivo_full": lambda: pipe(full), "harivo_app": lambda: pipe(app),
                 "diffusers_traced": every["diffusers_traced"]}
        t = interleaved(cases, repeats, device, desc=f"{size}px inference")
        return {"seconds": t, "full_vs_diffusers": ratio(t, "harivo_full", "diffusers"),
                "app_vs_diffusers": ratio(t, "harivo_app", "diffusers"), "trace_overhead": ratio(t, *TRACE_CASES)}

    for size in sizes:
        out[f"{size}px"]["inference"] = guarded(lambda: inference_part(size))
        free_memory(device)
    return out


def scale_pipeline(c: dict, frames: int, device: torch.device, dtype: torch.dtype) -> HarivoPipeline:
    """A HarivoPipeline (full model) over `scale_components`, cast to `dtype` on `device`."""
    model = HarivoVideoModel.from_unet2d(c["unet"], c["adapter"], HarivoConfig(num_frames=frames))
    pipe = HarivoPipeline(c["vae"], c["text_encoder"], c["tokenizer"], model.eval(), DDIMScheduler(**scheduler_config()))
    return pipe.to(device, dtype)


def trace_section(quick: bool, frames: int, steps: int, repeats: int, device: torch.device, workdir: Path,
                  sd15_sizes: Sequence[int] = (), dtype: torch.dtype = torch.float16,
                  configs: ScaleConfigs = ScaleConfigs()) -> dict:
    """`trace_overhead` alone (`python -m harivo.bench --trace`): stock AnimateDiffPipeline inside `harivo.trace` ÷
    without, interleaved, on the small model (`small_pipeline`); per size of `sd15_sizes` also on SD1.5-sized
    random weights in `dtype` (16 frames, 25 steps, as the `sd15` section)."""
    pipe, label = small_pipeline(quick, frames, device, workdir)
    cases = inference_cases(pipe, frames, steps)
    t = interleaved({name: cases[name] for name in TRACE_CASES}, repeats, device, desc="trace rounds")
    result: dict = {"model": label, "trace_overhead": ratio(t, *TRACE_CASES), "seconds": t}
    if device.type == "cpu":
        result["cpu_time_ratios"] = {"trace_overhead": ratio(t, *TRACE_CASES, clock="cpu_s")}
    del pipe, cases
    free_memory(device)
    if sd15_sizes:
        pipe = scale_pipeline(scale_components(configs), 16, device, dtype)

        def sd15_part(size: int) -> dict:
            every = inference_cases(pipe, 16, 25, size)
            t = interleaved({name: every[name] for name in TRACE_CASES}, repeats, device, desc=f"{size}px trace")
            return {"seconds": t, "trace_overhead": ratio(t, *TRACE_CASES)}

        result["sd15"] = {"dtype": str(dtype).removeprefix("torch."), "frames": 16, "steps": 25}
        for size in sd15_sizes:
            result["sd15"][f"{size}px"] = guarded(lambda: sd15_part(size))
            free_memory(device)
    return result


# ------------------------------------------------------------------------------------------------ load section
BUSY_LOOP = "import time\nwhile True:\n    pass"  # one busy core, as another tenant of a shared machine


def generate_command(workdir: Path, threads: int | None, steps: int) -> list[str]:
    """`python -m harivo.generate` with the app's default prompt and settings (its thread choice unless given)."""
    cmd = [sys.executable, "-m", "harivo.generate", "--prompt", PROMPT, "--steps", str(steps), "--out",
           str(workdir / "load-bench")]
    return cmd + (["--threads", str(threads)] if threads else [])


def load_section(repeats: int, workdir: Path, steps: int = 25) -> dict:
    """Whole `python -m harivo.generate` runs (model load included) on an idle machine and beside one busy
    process, with the CLI's thread choice (`harivo.threads`: the cores the load leaves) and with one thread per CPU
    (torch's default), the four cases interleaved; `loaded_vs_idle` is the ratio of medians for the CLI's choice,
    `threads_used` the threads each run recorded (its config.json's `torch_threads`)."""
    import subprocess

    cpus = usable_cpus()
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "HARIVO_THREADS")}
    cases = {"default_idle": (None, False), "default_loaded": (None, True),
             "all_cpus_idle": (cpus, False), "all_cpus_loaded": (cpus, True)}
    seconds: dict[str, list[float]] = {name: [] for name in cases}
    used: dict[str, list[int]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, (threads, loaded) in cases.items():
            busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if loaded else None
            try:
                t0 = time.perf_counter()
                subprocess.run(generate_command(workdir, threads, steps), check=True, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                seconds[name].append(time.perf_counter() - t0)
                config = json.loads((workdir / "load-bench" / "config.json").read_text())
                used[name].append(int(config.get("torch_threads", 0)))
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    med = {name: float(np.median(v)) for name, v in seconds.items()}
    return {"load": {"seconds": seconds, "median_s": med, "cpus": cpus, "threads_used": used,
                     "steps": steps, "repeats": repeats},
            "loaded_vs_idle": med["default_loaded"] / med["default_idle"],
            "loaded_vs_idle_all_cpus": med["all_cpus_loaded"] / med["all_cpus_idle"]}
