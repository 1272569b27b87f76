"""How much is the verb worth at t ≈ T, in this world and in a world whose translations cross the frame?
(a cue-world experiment; no report, no cache)

    HARIVO_CUE_STYLE=cue3 PYTHONPATH=. python scripts/world_oracle.py [--base checkpoints/shapes-sd-zsnr] [--json OUT]

`verb_probe.oracle_gain` on the base's VAE latents of 48 generator videos per verb (a red circle on gray; left
to right vs right to left, up vs down): the caption-only x0 predictor's MSE with the verb known and ignored.
On a zero-terminal-SNR schedule the loss at t = 999 *is* that x0-MSE, so the gain is the share of the t = 999
loss a model saves by reading the verb. "random": the world as generated (a translation covers 0.30-0.45 of the
frame from a random start); "crossing": the same videos with every translation from one allowed edge to the other
(`HARIVO_TRACKS=crossing`, `shapes.TRACK_STYLE`), so that the verb alone fixes the object's position along its
axis in every frame (a candidate world change).
"""

from __future__ import annotations

import argparse
import json

import torch

import harivo.data.shapes as shapes
from harivo.data.shapes import ShapeSpec
from harivo.verb_probe import _encode_videos, oracle_gain, swap_verb


def measure(base: str, videos: int = 48) -> dict:
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(base, subfolder="vae", use_safetensors=True)
    out = {}
    for world in ("random", "crossing"):  # shapes.TRACK_STYLE, as HARIVO_TRACKS sets it
        saved, shapes.TRACK_STYLE = shapes.TRACK_STYLE, world
        try:
            for motion in ("moving left to right", "moving up"):
                spec = ShapeSpec("red", "circle", motion, "gray")
                groups = [_encode_videos(vae, [s] * videos, [80_000 + i for i in range(videos)], 64, 16)
                          for s in (spec, swap_verb(spec))]
                out[f"{world}: {motion} vs {swap_verb(spec).motion}"] = oracle_gain(groups)
        finally:
            shapes.TRACK_STYLE = saved
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="checkpoints/shapes-sd-zsnr")
    ap.add_argument("--videos", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = measure(args.base, args.videos)
    for k, v in result.items():
        print(f"{k}: verb known {v['x0_mse_verb_known']:.4f}, ignored {v['x0_mse_verb_ignored']:.4f}, "
              f"gain {v['gain_pct']:.1f} %")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
