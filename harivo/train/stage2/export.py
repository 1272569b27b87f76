"""Stage 2's product: `out/` (docs/design.md §3), written atomically at every checkpoint and at the end of a run:
the video model without the training-only projection head (`motion_adapter/`, `harivo.safetensors`,
`config.json` with the variant's components), `training.json` (steps, time, machine, segments, final losses,
the base's fingerprints, the h-space collapse check), `loss_curves.{png,csv}` and `train_config.yaml`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from harivo.fileio import atomic_dir, write_json, write_text
from harivo.train.losses import capture_hspace
from harivo.train.stage2.config import LOSS_TERMS, TABLE1_ROW, VARIANTS
from harivo.train.stage2.data import VideoLatents
from harivo.train.utils import config_to_yaml, where_trained, write_loss_curves

if TYPE_CHECKING:
    from harivo.train.stage2.run import Run


def final_terms(history: list[dict], last: int = 10) -> dict[str, float]:
    """Each loss term's mean over the last `last` history rows."""
    rows = history[-last:]
    keys = sorted({k for r in rows for k in r if k.startswith("loss_")})
    return {k: float(np.mean([r[k] for r in rows if k in r])) for k in keys}


@torch.no_grad()
def hspace_stats(run: Run, n: int = 8, t: int = 500) -> dict[str, float]:
    """Collapse check of h-space (docs/training.md: the L_DC guards): on the first n training videos at timestep t,
    the std of the video UNet's mid-block output and the mean cosine between different videos' frame-averaged h (1 =
    every video looks the same to L_DC). The baseline (no L_DC) measures std 1.52, cosine 0.77; the first `full`
    run, whose L_DC collapsed, 44.6 and 0.999."""
    d, device = run.data, run.accelerator.device
    if not isinstance(d, VideoLatents) or len(d) < 2:
        return {}
    n = min(n, len(d))
    latents = d.latents[:n].float().to(device)
    embeds = d.text_embeds[d.caption_index[:n]].to(device)
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(0)).to(device)
    timesteps = torch.full((n,), t, device=device)
    model = run.raw.model
    with capture_hspace(model) as store:
        model(run.raw.noise_scheduler.add_noise(latents, noise, timesteps), timesteps, embeds)
    h = store[-1].float()
    per_video = torch.nn.functional.normalize(h.reshape(n, -1, *h.shape[1:]).mean(1).flatten(1), dim=-1)
    cos = per_video @ per_video.T
    off_diagonal = cos[~torch.eye(n, dtype=torch.bool, device=cos.device)]
    return {"timestep": t, "videos": n, "std": round(h.std().item(), 4),
            "mean_cos_between_videos": round(off_diagonal.mean().item(), 4)}


def training_record(run: Run, finished: bool) -> dict:
    """training.json of the export: steps, time, machine, data seen, final losses, the commands of the segments,
    the base's fingerprints, parameter counts, versions and the h-space collapse check."""
    import diffusers
    import transformers

    cfg = run.cfg
    head = sum(p.numel() for n, p in run.params.items() if n.startswith("projection_head."))
    return {
        "variant": cfg.variant, "steps": run.step, "max_steps": cfg.max_steps,
        "verb_phase_steps": cfg.verb_phase_steps, "finished": finished,
        "minutes": round(run.minutes, 2), "where_trained": where_trained(), "torch_threads": torch.get_num_threads(),
        "num_processes": run.accelerator.num_processes, "batch_size": cfg.batch_size,
        "videos_seen": run.step * cfg.batch_size * run.accelerator.num_processes,
        "train_videos": len(run.data), "final_loss_terms": final_terms(run.history),
        "sec_per_step": run.history[-1].get("sec_per_step") if run.history else None,
        "command": run.segments[-1]["command"] if run.segments else "", "segments": run.segments,
        "base_model": str(run.base.path), "base_fingerprints": run.base.fingerprints,
        "trainable_parameters": {"shipped": sum(p.numel() for p in run.params.values()) - head,
                                 "projection_head (not shipped)": head},
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                     "transformers": transformers.__version__},
        "hspace": hspace_stats(run),
    }


def export(run: Run, finished: bool) -> Path:
    """Write `out/` as docs/design.md §3 (atomically): the model without the training-only projection head,
    the resolved config, training.json and the loss curves."""
    cfg, model = run.cfg, run.raw.model
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.config.base_model = os.path.relpath(run.base.path.resolve(), out.resolve())
    v = VARIANTS[cfg.variant]
    components = {
        "table1_row": TABLE1_ROW[cfg.variant], "motion_modules": True, "mapping_network": v["use_mapping"],
        "frame_tokens": v["use_frame_tokens"],
        "losses": {"simple": True, "trs": v["use_trs"], "reg": v["use_reg"], "dc": v["use_dc"]},
        "loss_weights": {"trs": cfg.trs_weight, "reg": cfg.reg_weight, "dc": cfg.dc_weight},
    }
    training = training_record(run, finished)
    extra = {"variant": cfg.variant, "components": components}
    if cfg.data == "shapes":
        from harivo.data.shapes import World

        extra["world"] = World.parse(cfg.world).record()  # the shapes world it was trained in (and is judged in)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, extra=extra)
        write_json(tmp / "training.json", training)
        write_text(tmp / "train_config.yaml", config_to_yaml(cfg))
        write_loss_curves(tmp, run.history, f"HARIVO {cfg.variant} (Table 1 row {TABLE1_ROW[cfg.variant]})",
                          terms=tuple(f"loss_{t}" for t in LOSS_TERMS))
    return out
