"""Stage 1's product: `output_dir`, a complete diffusers `StableDiffusionPipeline` folder (the UNet and text
encoder as their EMA weights, DDIM scheduler, no safety checker, safetensors only) with `training.json` (where
and how it was trained, the VAE's and the text encoder's records, versions; for a warm-started run, the record
of the folder it started from), the loss curves and the config. Written atomically; stage 2 loads it as its
frozen base model.
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import torch

from harivo.fileio import atomic_dir, read_json, write_json, write_text
from harivo.train.stage1.config import T2IConfig
from harivo.train.stage1.evaluation import ddim_scheduler
from harivo.tokenizer import token_ids
from harivo.train.utils import config_to_yaml, where_trained, write_loss_curves


def export_pipeline(cfg, vae, text_encoder, tokenizer, unet, info, vae_info, history, argv_str) -> None:
    """Write output_dir atomically: StableDiffusionPipeline folder + training.json + curves + config."""
    from diffusers import StableDiffusionPipeline

    from harivo.tokenizer import build_tokenizer_files

    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=ddim_scheduler(cfg.zero_snr), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    with atomic_dir(cfg.output_dir) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        build_tokenizer_files(tmp / "tokenizer")  # guarantee vocab.json + merges.txt in CLIP format
        write_json(tmp / "training.json", training_record(cfg, info, vae_info, history, argv_str))
        write_text(tmp / "t2i_config.yaml", config_to_yaml(cfg))
        target = "v" if cfg.zero_snr else "eps"
        write_loss_curves(tmp, history, f"UNet loss (min-SNR weighted {target} MSE)", stem="loss_unet")
        copy_earlier_curves(cfg, tmp)


def training_record(cfg: T2IConfig, info: dict, vae_info: dict, history: list[dict], argv_str: str) -> dict:
    """training.json of an export: the command, machine, VAE record, UNet steps and final losses, parameter counts,
    the text encoder's record, versions and, for a warm-started run, what it started from."""
    import diffusers
    import transformers

    last = history[-1] if history else {}
    tail = history[-20:]
    from harivo.data.shapes import World

    training = {
        "world": World.parse(cfg.world).record(),  # the shapes world the T2I was trained in
        "where_trained": where_trained(),
        "command": argv_str,
        "vae": {k: v for k, v in vae_info.items() if k != "evals"},
        "unet": {
            "steps": info["steps"],
            "minutes": round(info["minutes"], 2),
            "final_loss": last.get("loss"),
            "final_loss_mean_last_20_logs": float(np.mean([r["loss"] for r in tail])) if tail else None,
            "final_eps_mse_mean_last_20_logs": float(np.mean([r["loss_eps_mse"] for r in tail])) if tail else None,
            "batch_size": cfg.unet_batch_size,
            "exported_weights": f"EMA (decay {cfg.ema_decay})",
        },
        "params": info["params"],
        "text_encoder": info.get("text_encoder", {}),
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                     "transformers": transformers.__version__, "python": platform.python_version()},
    }
    # a warm-started export keeps its history: the init's training record and its loss curves
    if cfg.init_from:
        training["warm_started_from"] = warm_start_record(Path(cfg.init_from))
    return training


def copy_earlier_curves(cfg: T2IConfig, folder: Path) -> None:
    """Copy into the export the VAE's loss curve (this run's, else the init's) and, for a warm-started run, the
    init's UNet curves one generation back: loss_unet -> loss_unet_init, loss_unet_init -> loss_unet_init_init."""
    copies = [(Path(cfg.run_dir) / "vae" / "loss_vae", "loss_vae")]
    if cfg.init_from:
        init = Path(cfg.init_from)
        copies += [(init / "loss_vae", "loss_vae")]
        copies += [(init / stem, "loss_unet_init" + stem[len("loss_unet"):])
                   for stem in sorted({f.stem for f in init.glob("loss_unet*.csv")})]
    for src, name in copies:
        for suffix in ("csv", "png"):
            source, target = src.with_suffix("." + suffix), folder / f"{name}.{suffix}"
            if source.is_file() and not target.is_file():
                target.write_bytes(source.read_bytes())


@torch.no_grad()
def text_encoder_record(text_encoder, tokenizer, probe, cfg: T2IConfig) -> dict:
    """What training.json says of the exported (EMA) text encoder: how far a verb moves its hidden states against
    a colour or a shape (`verb_separation`), and with a probe, its accuracy on train and held-out captions."""
    from harivo.data.shapes import all_specs
    from harivo.train.t2i_models import caption_labels, verb_separation

    was = text_encoder.training
    text_encoder.eval()
    record: dict = {"separation": {k: round(v, 4) for k, v in verb_separation(text_encoder, tokenizer).items()},
                    "text_probe_weight": cfg.text_probe_weight}
    if probe is not None:
        for split in ("train", "held_out"):
            caps = [s.caption for s in all_specs(split)]
            pooled = text_encoder(token_ids(tokenizer, caps).to(text_encoder.device))[1]
            acc = probe.accuracy(pooled, caption_labels(caps).to(pooled.device))
            record[f"probe_accuracy_{split}"] = {k: round(v, 4) for k, v in acc.items()}
    text_encoder.train(was)
    return record


def warm_start_record(init: Path) -> dict:
    """What training.json keeps of the folder a run was warm-started from (its command, machine, UNet record)."""
    record = read_json(init / "training.json") if (init / "training.json").is_file() else {}
    keep = ("command", "where_trained", "unet", "warm_started_from")
    return {"folder": str(init), **{k: record[k] for k in keep if k in record}}
