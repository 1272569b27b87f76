"""`python -m harivo.bench [--quick] [--json FILE]`: speed and memory of HARIVO, as ratios measured side by side.

Every ratio compares two runs on the same weights, seed and settings, interleaved (A, B, A, B, …) and reduced
with the median so that a noisy machine hurts both sides alike. Targets (issue 3/6, not timed tests):
`sampler_vs_diffusers` ≤ 1.05, `mg_overhead` ≤ 1.02, `capture_overhead` ≤ 1.25.

--quick uses a tiny random model (seconds); without it the embedded shapes-world `full` checkpoint is used
when present.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from diffusers import AnimateDiffPipeline, DDIMScheduler
from tqdm.auto import tqdm

from . import fileio
from .pipeline import DEFAULT_CHECKPOINTS, GenerationSettings, HarivoPipeline
from .sampling import CFGSchedule, MGConfig
from .tiny import save_tiny_checkpoint

PROMPT = "a red circle is moving left to right on a gray background"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def interleaved(cases: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, dict]:
    """Median and all wall times per case, cases run round-robin `repeats` times after `warmup` rounds."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for r in tqdm(range(warmup + repeats), desc="bench rounds", unit="round"):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: {"median_s": statistics.median(v), "times_s": v} for name, v in times.items()}


def load_pipeline(quick: bool, workdir: Path) -> HarivoPipeline:
    if not quick and (DEFAULT_CHECKPOINTS / "harivo-shapes-full").is_dir():
        return HarivoPipeline.from_variant("full")
    return HarivoPipeline.from_checkpoint(save_tiny_checkpoint(workdir, num_frames=16))


def run(quick: bool, frames: int, steps: int, repeats: int) -> dict:
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        pipe = load_pipeline(quick, Path(tmp))
        diffusers_pipe = AnimateDiffPipeline(
            vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=pipe.model.unet,
            motion_adapter=pipe.model.motion_adapter(), scheduler=DDIMScheduler(**pipe.scheduler.config),
        )
        diffusers_pipe.set_progress_bar_config(disable=True)
        cfg = CFGSchedule.constant(7.5)
        base = dict(prompt=PROMPT, seed=0, num_frames=frames, num_inference_steps=steps)
        off = GenerationSettings(**base, cfg=cfg, mg=MGConfig(enabled=False), use_mapping=False, use_frame_tokens=False, capture_attention=False)
        mg_on = GenerationSettings(**{**off.__dict__, "mg": MGConfig(alpha=40.0)})
        capture = GenerationSettings(**{**off.__dict__, "capture_attention": True})
        full = GenerationSettings(**base)  # everything the model has, App. D schedule, MG α = 40, capture on
        cases = {
            "diffusers": lambda: diffusers_pipe(PROMPT, num_frames=frames, num_inference_steps=steps, guidance_scale=7.5,
                                                generator=torch.Generator().manual_seed(0), output_type="np"),
            "harivo_off": lambda: pipe(off),
            "harivo_mg": lambda: pipe(mg_on),
            "harivo_capture": lambda: pipe(capture),
            "harivo_full": lambda: pipe(full),
        }
        timings = interleaved(cases, repeats)
    med = {k: v["median_s"] for k, v in timings.items()}
    return {
        "model": "tiny random (quick)" if quick else pipe.name,
        "frames": frames, "steps": steps, "repeats": repeats,
        "sampler_vs_diffusers": med["harivo_off"] / med["diffusers"],
        "mg_overhead": med["harivo_mg"] / med["harivo_off"],
        "capture_overhead": med["harivo_capture"] / med["harivo_off"],
        "full_vs_off": med["harivo_full"] / med["harivo_off"],
        "seconds": med,
        "peak_rss_mb": peak_rss_mb(),
        "device": f"cpu, {torch.get_num_threads()} threads",
        "machine": platform.platform(),
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harivo.bench", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny random model, few repeats")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--steps", type=int, default=None, help="DDIM steps (default 10 quick, 25 full)")
    p.add_argument("--repeats", type=int, default=None, help="measured rounds (default 3 quick, 5 full)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    steps = args.steps or (10 if args.quick else 25)
    result = run(args.quick, args.frames, steps, args.repeats or (3 if args.quick else 5))
    print(json.dumps({k: v for k, v in result.items() if k != "seconds"} | {"seconds": result["seconds"]}, indent=2))
    if args.json:
        fileio.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
