"""Does stage 2 read a video's trajectory from the noise? (a cue-world experiment; no report, no cache)

    HARIVO_CUE_STYLE=cue3 PYTHONPATH=. python scripts/noise_leak_probe.py CHECKPOINT [--json OUT] [--videos 12]

Translation videos of the training split (`verb_probe.gap_specs`) are encoded and noised to t = 999 and t = 800
exactly as in training; the model predicts once (ε, or v on a zero-terminal-SNR base), with the true caption and with
the opposite verb, and the one-step x0 estimate (x_t − √(1−ᾱ) ε̂) / √ᾱ, or √ᾱ x_t − √(1−ᾱ) v̂, is decoded and read
by the checker. Printed per t: how far the object moves the
prompted way (fraction of the frame) in the clean latents (truth), in the estimate with the caption and with the
swapped caption, and the share moving the right way. When the caption and the swapped caption give the same
trajectory, the model takes it from what the noisy input still shows of the video (√ᾱ = 6.8 % of it at t = 999
under SD's schedule, none on a zero-terminal-SNR one), which sampling from pure noise never offers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from motion_proxy import along_track  # noqa: E402

from harivo.data.checker import read_video  # noqa: E402
from harivo.pipeline import HarivoPipeline  # noqa: E402
from harivo.sampling import split_prediction  # noqa: E402
from harivo.verb_probe import _encode_videos, _train_scheduler, gap_specs, swap_verb  # noqa: E402


def along(video: np.ndarray, motion: str, size: int) -> float:
    """`motion_proxy.along_track` of a video as the checker reads it (NaN: the object is not seen twice)."""
    shift = along_track(read_video(video).track, motion, size)
    return float("nan") if shift is None else shift


def probe(folder: str, videos: int = 12, timesteps=(999, 800)) -> dict:
    pipe = HarivoPipeline.from_checkpoint(folder)
    model, vae = pipe.model, pipe.vae
    size = model.unet.config.sample_size * pipe.vae_scale_factor
    specs = gap_specs(videos, 0)
    latents = _encode_videos(vae, specs, [70_000 + i for i in range(len(specs))], size, model.config.num_frames)
    scheduler = _train_scheduler(pipe)

    def decode(x0: torch.Tensor) -> np.ndarray:  # (1, c, f, h, w) latents -> (f, H, W, 3) uint8
        with torch.no_grad():
            img = vae.decode(x0[0].permute(1, 0, 2, 3) / vae.config.scaling_factor).sample
        return ((img.clamp(-1, 1) + 1) * 127.5).round().permute(0, 2, 3, 1).numpy().astype(np.uint8)

    out = {}
    for t in timesteps:
        a = scheduler.alphas_cumprod[t]
        rows = []
        for i, spec in enumerate(specs):
            noise = torch.randn(latents[i:i + 1].shape, generator=torch.Generator().manual_seed(i))
            tt = torch.tensor([t])
            xt = scheduler.add_noise(latents[i:i + 1], noise, tt)
            row = {"prompt": spec.caption, "truth": along(decode(latents[i:i + 1]), spec.motion, size)}
            for name, s in (("caption", spec), ("swapped", swap_verb(spec))):
                with torch.no_grad():
                    out_ = model(xt, tt, pipe.encode_prompt(s.caption)[0])  # ε, or v on a zero-SNR base
                x0 = split_prediction(xt, out_, a, scheduler.config.prediction_type)[0]
                row[name] = along(decode(x0), spec.motion, size)
            rows.append(row)
        arr = np.array([[r["truth"], r["caption"], r["swapped"]] for r in rows])
        out[str(t)] = {"mean_along": dict(zip(("truth", "caption", "swapped"), np.nanmean(arr, 0).round(3).tolist())),
                       "right_way": {"caption": float(np.nanmean(arr[:, 1] > 0)),
                                     "swapped": float(np.nanmean(arr[:, 2] > 0))},
                       "rows": rows}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--videos", type=int, default=12)
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    result = probe(args.checkpoint, args.videos)
    for t, r in result.items():
        print(f"t = {t}: mean shift the prompted way {r['mean_along']}, right way {r['right_way']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
