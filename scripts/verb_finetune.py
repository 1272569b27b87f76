"""Can the verb be taught by focusing the training on it? An exploration, not a shipped recipe.

    python scripts/verb_finetune.py --variant full --steps 400 --lr 3e-4 --out runs/verb-ft-full
    python scripts/verb_finetune.py --variant baseline --steps 300 --min-timestep 800 --out runs/verb-ft-base800

Resumes a shipped stage-2 run (`runs/harivo-<variant>/state`, copied: the original is not touched), then trains
it with its own Eq. 5 losses on the *translation* videos of the training set only (left to right, right to left,
up, down; `--motions sizes`: getting closer / moving away only; `directed`: both; `all`: every video), at a
constant lr, optionally on t >= --min-timestep only (`LossConfig.min_timestep`), where the verb is worth most
(`harivo.verb_probe`, caption oracle), and optionally updating the motion modules only (`--train motion`, as the
verb phase's `--verb-phase-train motion`). Every --every steps it measures the swap gap (`verb_probe.swap_gap`) on
24 fixed videos of that pool (of translations and size changes with `all`) with the opposite verb: a model that
learned to read the direction off the verb denoises worse with the opposite one, and the gap rises above
the ±0.2 % of a verb-blind model. Writes `gap.json` and, at the end, the trained weights (`weights.safetensors`,
loadable with `--init` to continue).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harivo import fileio  # noqa: E402
from harivo.data.shapes import ShapeSpec  # noqa: E402
from harivo.model import HarivoVideoModel  # noqa: E402
from harivo.stage2.config import VERB_PHASE_MOTIONS, parse_config  # noqa: E402
from harivo.stage2.data import encode_captions  # noqa: E402
from harivo.stage2.run import is_motion_module, setup, train_step, verb_phase_pool  # noqa: E402
from harivo.train_utils import step_generator  # noqa: E402
from harivo.verb_probe import swap_gap, swap_verb  # noqa: E402

TIMESTEPS = (999, 900, 800, 700, 600, 400)


def trained_parts(model) -> dict:
    """The weights stage 2 trains (motion modules, frame-token generator, mapping network) of a HarivoVideoModel."""
    return {k: v for k, v in model.state_dict().items()
            if any(s in k for s in ("motion_modules", "frame_token_generator", "mapping_network"))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", default="full", choices=["baseline", "trs-dc", "mapping", "full"])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=3e-4, help="constant learning rate")
    ap.add_argument("--min-timestep", type=int, default=0, help="train on t >= this only (0: all t)")
    ap.add_argument("--motions", default="translations", choices=(*VERB_PHASE_MOTIONS, "all"),
                    help="the videos trained on, by their caption's motion (as --verb-phase-motions; all: every one)")
    ap.add_argument("--train", default="all", choices=["all", "motion"],
                    help="the parts that update (as --verb-phase-train; motion: the motion modules only)")
    ap.add_argument("--every", type=int, default=100, help="swap gap every N steps")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--init", default="", help="weights.safetensors of an earlier run of this script")
    ap.add_argument("--state", default="", help="stage-2 training state to start from "
                    "(default runs/harivo-<variant>/state, the shipped run's)")
    ap.add_argument("--from-checkpoint", default="", help="instead of a training state: a fresh run (new optimizer) "
                    "with this HARIVO checkpoint's trained parts")
    ap.add_argument("--base-model", default="", help="the T2I that state was trained on (default: the config's)")
    ap.add_argument("--cache-dir", default="", help="stage-2 latent cache (default: the config's)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--train-args", default="", help="more stage-2 flags the state was trained with, e.g. "
                    "'--timestep-bias-multiplier 9' (checked on resume)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    shutil.rmtree(out / "state", ignore_errors=True)
    if not a.from_checkpoint:
        source = Path(a.state or f"runs/harivo-{a.variant}/state")
        if not source.is_dir():
            raise SystemExit(f"--variant: no training state at {source} (train the variant first)")
        shutil.copytree(source, out / "state")
    cfg = parse_config(["--config", "configs/shapes-harivo.yaml", "--variant", a.variant, "--run-dir", str(out),
                        "--out", str(out / "export"), "--resume", "--max-steps", str(10**6), "--sample-every", "0",
                        *(["--base-model", a.base_model] if a.base_model else []),
                        *(["--cache-dir", a.cache_dir] if a.cache_dir else []), *a.train_args.split()])
    run = setup(cfg)
    run.raw.loss_config.min_timestep = a.min_timestep
    if a.from_checkpoint:
        source = HarivoVideoModel.from_pretrained(a.from_checkpoint, base_model=cfg.base_model)
        loaded = run.raw.model.load_state_dict(trained_parts(source), strict=False)
        if loaded.unexpected_keys:
            raise SystemExit(f"--from-checkpoint: keys the {a.variant} model does not have: {loaded.unexpected_keys[:3]}")
    if a.init:
        run.raw.model.load_state_dict(fileio.load_tensors(a.init, what="--init"), strict=False)
    if a.train == "motion":  # frozen parts get no gradient, and AdamW skips them
        for name, p in run.params.items():
            p.requires_grad_(is_motion_module(name))
    for group in run.optimizer.param_groups:
        group["lr"] = a.lr
    run.lr_scheduler.lr_lambdas = [lambda step: 1.0]
    run.lr_scheduler.base_lrs = [a.lr]

    d = run.data
    caption = [d.captions[i] for i in d.caption_index.tolist()]
    keep = list(range(len(d))) if a.motions == "all" else verb_phase_pool(d, a.motions).tolist()
    directed = keep if a.motions != "all" else verb_phase_pool(d, "directed").tolist()  # swap_verb needs a direction
    gen = torch.Generator().manual_seed(123)
    probe = [directed[i] for i in torch.randperm(len(directed), generator=gen)[:24].tolist()]
    noise = torch.randn(len(probe), len(TIMESTEPS), *d.latents.shape[1:], generator=gen).transpose(0, 1)
    swapped = [swap_verb(ShapeSpec.from_caption(caption[i])).caption for i in probe]
    with torch.no_grad():
        swapped_embeds = encode_captions(run.base, swapped, torch.device("cpu"))
    latents = d.latents[probe].float()
    embeds = d.text_embeds[d.caption_index[probe]].float()

    def gap():
        run.raw.model.eval()
        return swap_gap(run.raw.model, run.raw.noise_scheduler, latents, embeds, swapped_embeds.float(), TIMESTEPS,
                        noise=noise)

    log = [{"step": 0, "gap": gap()}]
    print(f"{len(keep)} {a.motions} videos; step 0 gap:", [round(r["gap_pct"], 3) for r in log[-1]["gap"]], flush=True)
    subset, t0 = torch.tensor(keep), time.time()
    for step in range(1, a.steps + 1):
        g = step_generator(cfg.seed + 7, step, 0)
        idx = subset[torch.randint(len(subset), (cfg.batch_size,), generator=g)]
        drop = torch.rand(cfg.batch_size, generator=g) < cfg.cond_drop
        e = d.text_embeds[d.caption_index[idx]]
        e = torch.where(drop[:, None, None], d.empty_embeds.expand_as(e), e)
        terms = train_step(run, (d.latents[idx].float(), e), g)
        if step % 10 == 0:
            print(step, {k: round(v, 4) for k, v in terms.items()}, f"{(time.time() - t0) / step:.2f} s/step",
                  flush=True)
        if step % a.every == 0 or step == a.steps:
            log.append({"step": step, "gap": gap()})
            print(f"step {step} gap:", [round(r["gap_pct"], 3) for r in log[-1]["gap"]], flush=True)
            fileio.write_text(out / "gap.json", json.dumps({"args": vars(a), "log": log}, indent=1))
    fileio.save_tensors(out / "weights.safetensors", trained_parts(run.raw.model))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
