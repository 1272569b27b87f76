"""`python -m harivo.generate`: text → video with HARIVO, from the command line.

    python -m harivo.generate --prompt "a red circle is moving left to right on a gray background" --seed 0 \
        --variant full --out outputs/red-circle

Writes `video.mp4`, `frames.npy` (float32, (f, h, w, 3) in [0, 1]), `config.json` (every setting, seed,
versions) and `attention.npz` (frame-wise cross-attention maps) into --out.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import diffusers
import torch
import transformers
from tqdm.auto import tqdm

from . import __version__, fileio, media
from .pipeline import VARIANTS, GenerationSettings, HarivoOutput, HarivoPipeline
from .sampling import CFGSchedule, MGConfig


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harivo.generate", description=__doc__.split("\n")[0])
    p.add_argument("--prompt", required=True, help="text prompt")
    p.add_argument("--negative-prompt", default="", help="negative prompt (the unconditional branch of CFG)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial noise (same seed ⇒ same video)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--variant", choices=VARIANTS, help="embedded shapes-world model (default: full)")
    src.add_argument("--checkpoint", help="a HARIVO checkpoint folder (motion_adapter/, harivo.safetensors, config.json)")
    p.add_argument("--base-model", help="override the checkpoint's base StableDiffusion folder or hub id")
    p.add_argument("--frames", type=int, default=16, help="number of frames")
    p.add_argument("--steps", type=int, default=25, help="DDIM steps (App. D: 25)")
    p.add_argument("--cfg-high", type=float, default=12.5, help="CFG scale while t > switch·T (App. D: 10–15)")
    p.add_argument("--cfg-low", type=float, default=7.5, help="CFG scale after the switch (App. D: 7.5)")
    p.add_argument("--cfg-switch", type=float, default=0.7, help="switch point as a fraction of T (App. D: 0.7)")
    p.add_argument("--alpha", type=float, default=40.0, help="MG strength α (§4: 40)")
    p.add_argument("--mg-symmetric", action="store_true", help="full Eq. 7 gradient instead of Algorithm 1")
    p.add_argument("--no-mapping", action="store_true", help="skip the mapping network")
    p.add_argument("--no-frame-tokens", action="store_true", help="skip the frame-wise tokens")
    p.add_argument("--no-mg", action="store_true", help="skip mitigating-gradient sampling")
    p.add_argument("--no-motion", action="store_true", help="frozen T2I model on each frame (temporal layers off)")
    p.add_argument("--fps", type=int, default=8, help="frames per second of video.mp4")
    p.add_argument("--out", required=True, help="output folder")
    return p


def load_pipeline(args: argparse.Namespace) -> HarivoPipeline:
    if args.checkpoint:
        return HarivoPipeline.from_checkpoint(args.checkpoint, base_model=args.base_model)
    return HarivoPipeline.from_variant(args.variant or "full")


def settings_from_args(args: argparse.Namespace) -> GenerationSettings:
    return GenerationSettings(
        prompt=args.prompt, negative_prompt=args.negative_prompt, seed=args.seed, num_frames=args.frames,
        num_inference_steps=args.steps, cfg=CFGSchedule(args.cfg_high, args.cfg_low, args.cfg_switch),
        mg=MGConfig(alpha=args.alpha, symmetric=args.mg_symmetric, enabled=not args.no_mg),
        use_mapping=not args.no_mapping, use_frame_tokens=not args.no_frame_tokens, use_motion=not args.no_motion,
    )


def versions() -> dict[str, str]:
    return {"harivo": __version__, "torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__, "python": platform.python_version()}


def save_output(out: HarivoOutput, directory: str | Path, fps: int = 8, extra: dict | None = None) -> Path:
    """Write the four files of DESIGN.md §3 into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    media.write_mp4(out.frames, directory / "video.mp4", fps=fps)
    media.write_npy(out.frames.astype("float32"), directory / "frames.npy")
    if out.attention is not None:
        media.write_npz(out.attention.to_arrays(), directory / "attention.npz")
    config = {"settings": out.settings, "steps": out.steps, "notes": out.notes, "versions": versions(), "fps": fps}
    fileio.write_json(directory / "config.json", {**config, **(extra or {})})
    return directory


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
        pipe = load_pipeline(args)
        pipe.check(settings)
        bar = tqdm(total=settings.num_inference_steps, desc="sampling", unit="step")
        out = pipe(settings, callback=lambda info: bar.update(1))
        bar.close()
        path = save_output(out, args.out, fps=args.fps, extra={"model": pipe.name, "checkpoint": args.checkpoint, "variant": args.variant})
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for note in out.notes:
        print(f"note: {note}")
    print(f"wrote {path}/video.mp4, frames.npy, config.json, attention.npz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
