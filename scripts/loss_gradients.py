"""What each term of Eq. 5 does to the motion modules: per-term gradient norms, their cosine with L_simple's, and
how often gradient clipping (stage 2's grad_clip) scales the step, on fixed training batches of a checkpoint.

    PYTHONPATH=. python scripts/loss_gradients.py \\
        --variant full --checkpoint checkpoints/harivo-band-full-verb --base-model checkpoints/shapes-sd-band \\
        --cache-dir runs/long/cache --batches 8 --json runs/grad-full.json

Each weighted term (λ · L) is backpropagated alone with the same noise and timesteps; the gradient is read on the
parameters stage 2 trains, split into the motion modules and the rest (mapping network, frame-token generator,
projection head). The clip factor is min(1, grad_clip / ‖∇ total‖): below 1 the whole step, L_simple's part
included, is scaled down.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harivo.train.losses import NegativeQueue, training_step  # noqa: E402
from harivo.train.stage2.config import TrainConfig  # noqa: E402
from harivo.train.stage2.run import is_motion_module, make_batch, setup  # noqa: E402
from harivo.train.utils import step_generator  # noqa: E402


def grads(params: dict, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    for p in params.values():
        p.grad = None
    loss.backward(retain_graph=True)
    return {n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)) for n, p in params.items()}


def flat(g: dict, names) -> torch.Tensor:
    return torch.cat([g[n].flatten() for n in names]) if names else torch.zeros(1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", required=True)
    ap.add_argument("--checkpoint", required=True, help="HARIVO checkpoint folder of that variant")
    ap.add_argument("--base-model", required=True)
    ap.add_argument("--cache-dir", required=True)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--min-timestep", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = TrainConfig(variant=args.variant, base_model=args.base_model, init_from=args.checkpoint,
                      cache_dir=args.cache_dir, run_dir=f"/tmp/loss-gradients-{args.variant}", out="/tmp/unused",
                      noise_offset=0.15, dc_weight=0.01, timestep_bias_multiplier=9, timestep_bias_portion=0.1,
                      train_videos=2000, num_threads=args.threads).resolved()
    run = setup(cfg, log=lambda *a: None)
    raw, params = run.raw, run.params
    motion = [n for n in params if is_motion_module(n)]
    other = [n for n in params if n not in motion]
    weights = {"simple": 1.0, "trs": cfg.trs_weight, "reg": cfg.reg_weight, "dc": cfg.dc_weight}
    rows = []
    for i in range(args.batches):
        run.step = 10_000 + i  # batches no training step drew
        gen = step_generator(cfg.seed, run.step, 0)
        latents, embeds = make_batch(run, gen)
        state = gen.get_state()  # every per-term pass below draws the same noise, timesteps and frame pairs
        lc = dataclasses.replace(raw.loss_config, min_timestep=args.min_timestep)
        per, terms = {}, {}
        for term in [t for t in weights if t == "simple" or getattr(lc, f"use_{t}")]:
            only = dataclasses.replace(lc, use_simple=term == "simple", **{
                f"{t}_weight": (weights[t] if t == term else 0.0) for t in ("trs", "reg", "dc")})
            queue = NegativeQueue(raw.queue.size, raw.queue.dim) if raw.queue is not None else None
            out = training_step(raw.model, latents, embeds, raw.noise_scheduler, only, raw.projection_head, queue,
                                torch.Generator().set_state(state))
            terms[term] = out.terms[term]
            per[term] = grads(params, out.loss)
        total = {n: sum(per[t][n] for t in per) for n in params}
        row = {"terms": terms}
        g_simple = flat(per["simple"], motion)
        for term, g in per.items():
            gm = flat(g, motion)
            row[f"{term}_motion_norm"] = float(gm.norm())
            row[f"{term}_other_norm"] = float(flat(g, other).norm())
            row[f"{term}_cos_simple"] = float(torch.nn.functional.cosine_similarity(gm, g_simple, dim=0))
        tn = float(torch.cat([flat(total, motion), flat(total, other)]).norm())
        row["total_norm"] = tn
        row["clip_factor"] = min(1.0, cfg.grad_clip / max(tn, 1e-12))
        rows.append(row)
        print(json.dumps({k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    keys = [k for k in rows[0] if k != "terms"]
    summary = {k: float(torch.tensor([r[k] for r in rows]).median()) for k in keys}
    summary["clipped_share"] = sum(r["clip_factor"] < 1 for r in rows) / len(rows)
    print("median", json.dumps({k: round(v, 5) for k, v in summary.items()}))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "median": summary, "batches": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
