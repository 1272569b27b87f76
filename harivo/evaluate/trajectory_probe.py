"""Has a stage-2 checkpoint learned which way the prompt's object goes? One forward pass, no sampling.

    python -m harivo.evaluate.trajectory_probe runs/tb/harivo-shapes-baseline [--videos 32] [--split held_out]
        [--timesteps 999 900 700] [--threads 1] [--json out.json]

Renders `--videos` translation videos of the shapes world (the world the environment selects, as
scripts/motion_proxy.py), noises each at the given training timesteps (fixed noise, the model's own noise prior) and
asks the video model for its clean-video prediction x̂0. Per video, the *time-reversal score*

    s = (‖x̂0 − reverse(x0)‖² − ‖x̂0 − x0‖²) / ‖x0 − reverse(x0)‖²

is 1 when x̂0 is the video, −1 when it is the video played backwards and 0 for any prediction that is the same
played backwards (a still object, a blur over the track). At t = 999 on a zero-terminal-SNR base the input is pure
noise, so s > 0 there means the model draws the prompted trajectory from the caption alone, the layout sampling
starts from; at lower t the noisy frames show the video and s rises for any model. The frozen T2I model (motion
modules off) is reported beside it as the reference. Seconds on CPU, where a sampled proxy takes minutes.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from harivo.data.shapes import TRANSLATIONS, all_specs, render_video
from harivo.noise import mixed_noise
from harivo.pixels import to_pixels
from harivo.sampling import split_prediction


def reversal_scores(x0_pred: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """(b,) time-reversal scores of predictions (b, c, f, h, w) against the videos x0 (module docstring)."""
    rev = x0.flip(2)
    to_true = (x0_pred - x0).pow(2).flatten(1).sum(1)
    to_rev = (x0_pred - rev).pow(2).flatten(1).sum(1)
    gap = (x0 - rev).pow(2).flatten(1).sum(1)
    if bool((gap == 0).any()):
        raise ValueError("x0: a video equal to itself played backwards has no direction to score")
    return (to_rev - to_true) / gap


def predicted_x0(prediction: torch.Tensor, x_t: torch.Tensor, alpha_bar: float, prediction_type: str) -> torch.Tensor:
    """Clean latents from the model output at one timestep (ε or v parameterisation, `sampling.split_prediction`)."""
    if prediction_type == "epsilon" and alpha_bar == 0:
        raise ValueError("timesteps: an ε-prediction model says nothing about x0 where ᾱ_t = 0")
    return split_prediction(x_t, prediction, alpha_bar, prediction_type)[0]


@torch.no_grad()
def probe(folder: str, videos: int = 32, split: str = "held_out", timesteps=(999, 900, 700), seed: int = 0,
          num_frames: int = 16, size: int = 64, chunk: int = 8, weights: str = "") -> dict:
    from diffusers import DDPMScheduler

    from harivo.pipeline import HarivoPipeline

    pipe = HarivoPipeline.from_checkpoint(folder)
    if weights:  # trained parts (scripts/verb_finetune.py) over the checkpoint's, as scripts/motion_proxy.py --weights
        from harivo.fileio import load_tensors

        loaded = pipe.model.load_state_dict(load_tensors(weights, what="weights"), strict=False)
        if loaded.unexpected_keys:
            raise ValueError(f"weights: keys the model does not have: {loaded.unexpected_keys[:3]}")
    model = pipe.model.eval()
    train_sched = DDPMScheduler.from_config(pipe.scheduler.config)
    kind = train_sched.config.prediction_type
    pool = [s for s in all_specs(split) if s.motion in TRANSLATIONS]
    if not pool:
        raise ValueError(f"split: {split!r} has no translation videos")
    rng = np.random.default_rng(seed)
    picks = [pool[i] for i in rng.choice(len(pool), min(videos, len(pool)), replace=False)]
    scale = float(pipe.vae.config.scaling_factor)
    latents, embeds = [], []
    for i, spec in enumerate(picks):
        frames = to_pixels(render_video(spec, seed + i, num_frames, size)[0])  # (f, 3, h, w) in [-1, 1]
        z = pipe.vae.encode(frames).latent_dist.mode() * scale  # (f, c, h, w)
        latents.append(z.permute(1, 0, 2, 3))
        embeds.append(pipe.encode_prompt(spec.caption)[0][0])
    x0, text = torch.stack(latents).float(), torch.stack(embeds).float()
    gen = torch.Generator().manual_seed(seed)
    noise = mixed_noise(torch.randn(x0.shape, generator=gen), model.config.noise_share, gen)
    rows = {}
    for t in timesteps:
        tt = torch.full((len(x0),), int(t), dtype=torch.long)
        x_t = train_sched.add_noise(x0, noise, tt)
        ab = float(train_sched.alphas_cumprod[int(t)])
        row = {}
        for name, motion in (("model", True), ("frozen_t2i", False)):
            out = torch.cat([model(x_t[i:i + chunk], tt[i:i + chunk], text[i:i + chunk], use_motion=motion)
                             for i in range(0, len(x0), chunk)])
            s = reversal_scores(predicted_x0(out.float(), x_t, ab, kind), x0)
            row[name] = {"mean": round(float(s.mean()), 4), "positive": int((s > 0).sum()), "n": len(s)}
        rows[str(t)] = row
    return {"checkpoint": folder, "weights": weights, "split": split, "videos": len(picks), "timesteps": rows}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--videos", type=int, default=32)
    p.add_argument("--split", default="held_out", help="train | held_out | all")
    p.add_argument("--timesteps", type=int, nargs="+", default=[999, 900, 700])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--weights", default="", help="safetensors of trained parts to load over the checkpoint's")
    p.add_argument("--json", default="")
    a = p.parse_args(argv)
    if a.videos < 1:
        raise SystemExit("--videos: expected at least 1")
    torch.set_num_threads(a.threads)
    out = probe(a.checkpoint, a.videos, a.split, tuple(a.timesteps), a.seed, weights=a.weights)
    print(f"{a.checkpoint}: {out['videos']} {a.split} translation videos; time-reversal score of x̂0 "
          f"(1 = the video, 0 = no direction, -1 = backwards), videos with s > 0")
    for t, row in out["timesteps"].items():
        m, f = row["model"], row["frozen_t2i"]
        print(f"  t={t:>4}: model {m['mean']:+.3f} ({m['positive']}/{m['n']})   frozen T2I {f['mean']:+.3f} "
              f"({f['positive']}/{f['n']})")
    if a.json:
        from harivo.fileio import write_json

        write_json(a.json, out)


if __name__ == "__main__":
    main()
