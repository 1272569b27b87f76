"""Stage 1: train the tiny Stable-Diffusion-shaped text-to-image model of the shapes world from scratch.

    python -m harivo.train.t2i --config configs/shapes-t2i.yaml --stage all --resume
    accelerate launch -m harivo.train.t2i --config configs/shapes-t2i.yaml --stage unet --resume --max-minutes 45
    python -m harivo.train.t2i --stage none --eval            # evaluate checkpoints/shapes-sd

Two stages, each resumable from its own training state in `run_dir`:
- `vae`: `AutoencoderKL` (x4 downsampling, 4 latent channels) on freshly rendered shapes-world frames of the
  training split, L1 + MSE + tiny KL, warm-up + cosine lr. Evaluated by PSNR / colour error on frames of the
  held-out split. Exported to `run_dir/vae` with `scaling_factor` = 1/std of its latents, as SD does.
- `unet`: `CLIPTextModel` (from scratch, trained jointly) + `UNet2DConditionModel` on pre-encoded (cached)
  VAE latents of single video frames with their full captions (10 % empty for classifier-free guidance);
  epsilon prediction, SD's scaled-linear betas, min-SNR-gamma weighting, AdamW + warm-up + cosine, EMA
  weights (the EMA is what is exported). Exports `output_dir`: a complete diffusers `StableDiffusionPipeline`
  folder (DDIM scheduler, no safety checker, safetensors only) + training.json + loss curves + config.

Training state (weights, EMA, optimizer, step, RNG, loss history) is written atomically every
`checkpoint_every` steps and when `--max-minutes` runs out; `--resume` continues from exactly that step: the
batch, noise and timesteps of step n are a pure function of (seed, n), so a resumed run reproduces an
uninterrupted one. No pickle is ever written or loaded (safetensors + JSON).

This file is the command line; the stage lives in `harivo/train/stage1/`: `config` (T2IConfig, flags), `data`
(rendered frames, latent and mask caches), `resume` (state / warm start), `vae` and `unet` (the two stages'
losses and loops), `export` (the pipeline folder) and `evaluation` (sample grids, `--eval`).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from harivo.fileio import read_json, write_text
from harivo.train.stage1.config import T2IConfig, parse_config
from harivo.train.stage1.evaluation import evaluate
from harivo.train.stage1.unet import train_unet
from harivo.train.stage1.vae import train_vae
from harivo.train.utils import config_to_yaml, make_accelerator, run_cli


def vae_already_done(cfg: T2IConfig) -> bool:
    """`--stage all --resume` skips a VAE stage that finished (its export records it)."""
    metrics = Path(cfg.run_dir) / "vae" / "vae_metrics.json"
    return metrics.is_file() and cfg.resume and bool(read_json(metrics).get("finished")) and cfg.stage == "all"


def main(argv: list[str] | None = None) -> dict:
    """Run the stages `--stage` selects, then `--eval` if asked; returns each one's record."""
    argv = sys.argv[1:] if argv is None else argv
    cfg = parse_config(argv)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    t_start = time.time()
    acc = make_accelerator(cfg)
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    write_text(run / "t2i_config.yaml", config_to_yaml(cfg))
    argv_str = "python -m harivo.train.t2i " + " ".join(argv)
    out: dict = {}
    if cfg.stage in ("vae", "all") and not vae_already_done(cfg):
        out["vae"] = train_vae(cfg, acc, t_start)
        if not out["vae"]["finished"]:
            return out
    if cfg.stage in ("unet", "all"):
        out["unet"] = train_unet(cfg, acc, t_start, argv_str)
    if cfg.eval:
        out["eval"] = evaluate(cfg)
        print(json.dumps({k: v for k, v in out["eval"].items() if k != "rows"}, indent=1), flush=True)
    return out


if __name__ == "__main__":
    run_cli(main, "python -m harivo.train.t2i")
