"""`python -m harivo.bench [--quick] [--device cpu|cuda] [--json FILE]`: speed and memory of HARIVO, as ratios.

Every ratio compares cases on the same weights, seed and settings, run side by side in one process, interleaved
(A, B, A, B, … after a warm-up round) and reduced with the median, so that a busy machine slows both sides alike.
Ratios are of wall-clock medians; on the CPU `cpu_time_ratios` gives the same ratios of process CPU time, which
another process competing for the cores barely disturbs (with one torch thread it is the idle machine's wall
clock). Absolute seconds (both clocks) are reported for context, with the load average at start.

Figures (with the project's targets, checked in the JSON as `checks`):
- `sampler_vs_diffusers`  HARIVO sampler with everything off ÷ diffusers `AnimateDiffPipeline` + `DDIMScheduler`
- `full_vs_baseline`      mapping network + frame tokens on ÷ off (inference; MG, CFG and capture equal)
- `mg_overhead`, `capture_overhead`, `cfg_schedule_overhead`   MG α = 40 / attention capture / App. D schedule,
                          each on ÷ off
- `trace_overhead`        diffusers `AnimateDiffPipeline` inside `harivo.trace` (record read back) ÷ without;
                          `--trace` measures it alone (with `--device cuda` also on SD1.5-sized weights)
- `train_step_full_vs_baseline`   one optimizer step of the `full` variant (all four losses of Eq. 5, two UNet
                          passes) ÷ one of the `baseline` variant (L_simple only); the L_reg branch alone is ~0.9
- `app_request_seconds`   one app request with the default settings (16 frames, the model's recorded sampling,
                          attention capture), on the CPU as the app runs it (its thread choice: the cores the load
                          leaves), until the page's first answer (the video and the first screen's views);
                          `app_request_all_seconds` until every view and the bundle; `--app` measures them alone
                          (median of 3 after a warm-up)
- `render_band_vs_flat`   rendering a shapes-world video with the world's band ÷ on a flat backdrop (stage 1 renders every
                          training frame fresh); `render_video_ms` gives both in milliseconds
- `peak_rss_mb`           peak resident memory of the whole run
- `loaded_vs_idle` (`--load`, alone)   a whole `python -m harivo.generate` run with default settings beside one busy
                          process ÷ the same run on an idle machine, with the CLI's thread choice (`harivo.threads`);
                          `loaded_vs_idle_all_cpus` is the same with torch's one thread per CPU, for comparison
With `--device cuda` everything runs on the GPU (the app request, a CPU figure, is left out) and `sd15` adds SD1.5-sized
figures on random weights (the real UNet / VAE / CLIP / AnimateDiff v2 configs): 16 frames at 256² and 512²,
25 steps, HARIVO full vs `AnimateDiffPipeline` time and peak CUDA memory, and one training step of `baseline` and
`full` (bf16 autocast). A configuration that runs out of memory is recorded as such.

`--quick` uses the tiny random model (about a minute on 2 cores); without it the embedded shapes-world `full`
checkpoint and base are used when present, the tiny model otherwise (the JSON says which).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

import torch

from harivo import fileio
from harivo.bench.cases import (app_request_section, load_section, make_accelerator, peak_rss_mb, scale_section,
                          small_model_section, trace_section, world_section)

TARGETS = {  # figure -> upper bound (the project's targets)
    "sampler_vs_diffusers": 1.05,
    "full_vs_baseline": 1.15,
    "mg_overhead": 1.02,
    "capture_overhead": 1.25,
    "trace_overhead": 1.25,  # tracing adds at most 25 % to the sampling time
    "cfg_schedule_overhead": 1.02,  # ours: the schedule is a lookup per step, it should cost nothing
    "train_step_full_vs_baseline": 2.0,
    "app_request_seconds": 2.5,  # a visitor waits for it at every toggle (2 idle cores)
    "render_band_vs_flat": 2.0,  # ours: the world's band at most doubles rendering (~20 ms a video)
}
LOAD_TARGETS = {"loaded_vs_idle": 2.5}  # `--load`: beside one busy process ÷ idle, the CLI's threads


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


def run_alone(section, targets: dict[str, float], line, json_path: str | None) -> int:
    """One CPU section on its own (`--app`, `--load`): `section(workdir)`, its checks, one printed line, the JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        result = {"machine": machine_info(torch.device("cpu")), **section(Path(tmp))}
    result["checks"] = checks(result, targets)
    print(line(result))
    if json_path:
        fileio.write_json(json_path, result)
    return 0


def app_line(result: dict) -> str:
    r = result["app_request"]
    return (f"app request: first answer {result['app_request_seconds']:.2f} s (target ≤ "
            f"{TARGETS['app_request_seconds']:g} s), all {result['app_request_all_seconds']:.2f} s; sampling "
            f"{r['sampling_s']} s; threads {r['threads']}; {result['app_model']}, {r['steps']} steps")


def load_line(result: dict) -> str:
    used = result["load"]["threads_used"]
    return (f"loaded ÷ idle: {result['loaded_vs_idle']:.2f} with the CLI's choice (threads idle {used['default_idle']}, "
            f"loaded {used['default_loaded']}) (target ≤ {LOAD_TARGETS['loaded_vs_idle']:g}); "
            f"{result['loaded_vs_idle_all_cpus']:.2f} with one per CPU; medians {result['load']['median_s']}")


def checks(result: dict, targets: dict[str, float] = TARGETS) -> dict[str, dict]:
    return {name: {"value": result[name], "target": target, "pass": bool(result[name] <= target)}
            for name, target in targets.items() if isinstance(result.get(name), (int, float))}


def run(quick: bool, device: str = "cpu", frames: int = 16, steps: int | None = None, repeats: int | None = None,
        sd15_sizes: list[int] | None = None, sd15_dtype: str = "float16", app: bool = True,
        threads: int | None = None) -> dict:
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
        result.update(world_section(repeats))
        if app:  # a CPU figure: the app's request on the app's thread choice (or `threads`), then torch's as it was
            before = torch.get_num_threads()
            result.update(app_request_section(quick, 2 if quick else 3, Path(tmp), threads))
            torch.set_num_threads(before)
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


def run_trace(args: argparse.Namespace) -> dict:
    """`--trace`: the trace figure alone, printed and returned."""
    dev = torch.device(args.device)
    sizes = (args.sd15_sizes or [256]) if dev.type == "cuda" else []
    steps = args.steps or (10 if args.quick else 25)
    with tempfile.TemporaryDirectory() as tmp:
        result = {"quick": args.quick, "frames": args.frames, "steps": steps, "repeats": args.repeats or 7,
                  "machine": machine_info(dev),
                  **trace_section(args.quick, args.frames, steps, args.repeats or 7, dev, Path(tmp), sizes,
                                  getattr(torch, args.sd15_dtype))}
    result["checks"] = checks(result, {"trace_overhead": TARGETS["trace_overhead"]})
    cpu = result.get("cpu_time_ratios", {}).get("trace_overhead")
    print(f"{result['model']} · {args.frames} frames · {steps} steps · {result['repeats']} rounds · {dev}: "
          f"trace_overhead {result['trace_overhead']:.3f} (target ≤ {TARGETS['trace_overhead']:g})"
          + (f", CPU-time ratio {cpu:.3f}" if cpu else ""))
    for size, part in result.get("sd15", {}).items():
        if size.endswith("px"):
            line = part.get("error") or f"trace_overhead {part['trace_overhead']:.3f} ({scale_line(part)})"
            print(f"  sd15 {size}: {line}")
    return result


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
    p.add_argument("--load", action="store_true",
                   help="only the load figure: whole `python -m harivo.generate` runs idle and beside one busy "
                        "process, with the CLI's thread choice and with one thread per CPU (a few minutes)")
    p.add_argument("--trace", action="store_true",
                   help="only `trace_overhead`: AnimateDiffPipeline inside `harivo.trace` ÷ without (cuda: also the "
                        "SD1.5-sized weights at --sd15-sizes)")
    p.add_argument("--app", action="store_true",
                   help="only `app_request_seconds`: the app's default request, median of --repeats (default 3)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    if args.app:
        return run_alone(lambda tmp: app_request_section(args.quick, args.repeats or 3, tmp, args.threads or None),
                         TARGETS, app_line, args.json)
    if args.load:
        return run_alone(lambda tmp: load_section(args.repeats or 2, tmp, args.steps or 25), LOAD_TARGETS, load_line,
                         args.json)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        validate(args.device, args.frames, args.steps, args.repeats, args.sd15_sizes)
    except ValueError as e:
        p.error(str(e))
    if args.trace:
        result = run_trace(args)
        if args.json:
            fileio.write_json(args.json, result)
        return 0
    # on a GPU machine the app figure (a CPU request that writes an mp4) is left out: `--app` measures it alone
    result = run(args.quick, args.device, args.frames, args.steps, args.repeats, args.sd15_sizes, args.sd15_dtype,
                 app=args.device == "cpu", threads=args.threads or None)
    print(summary(result))
    if args.json:
        fileio.write_json(args.json, result)
    return 0

