"""`python -m harivo.evaluate`: the evaluation's command line (flags -> `EvalConfig` -> `evaluate` -> report)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harivo import fileio, settings
from harivo.data.checker import world_thresholds
from harivo.data.shapes import HELD_OUT, WORLD, World
from harivo.evaluate import (EVAL_VARIANTS, EvalConfig, evaluate, quick_config)
from harivo.evaluate.report import fmt_fvd, score_cells, write_report
from harivo.pipeline import DEFAULT_CHECKPOINTS
from harivo.sampling import CFGSchedule


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harivo.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="6+3 prompts × 2 seeds, 12 DDIM steps")
    p.add_argument("--json", help="JSON summary path (default: <out-dir>/results.json)")
    p.add_argument("--out-dir", help="report.md and plots (default assets/eval; with --quick runs/eval-quick)")
    p.add_argument("--world", default=WORLD.version, help="the shapes world the videos are read in: a version or "
                   "settings such as band_px=4 (default %(default)s); every row's checkpoint must record it")
    p.add_argument("--checkpoints", default=str(DEFAULT_CHECKPOINTS), help="folder with the rows' checkpoints")
    p.add_argument("--name-pattern", default=EvalConfig.name_pattern,
                   help="a row's checkpoint folder, {variant} replaced (default %(default)s)")
    p.add_argument("--variants", default=",".join(EVAL_VARIANTS), help="comma-separated rows to evaluate")
    p.add_argument("--seen-prompts", type=int, help="seen prompts (default 16; quick 6)")
    p.add_argument("--held-out-prompts", type=int, help=f"held-out prompts, ≤ {len(HELD_OUT)} (default 10; quick 3)")
    p.add_argument("--seeds", type=int, help="noise seeds per prompt (default 4; quick 2)")
    # --frames, --steps (quick: 12), --alpha (of the full+mg row): the generation settings' flags and defaults
    settings.add_arguments(p, required=(), only=("num_frames", "num_inference_steps", "mg_alpha", "cfg_high", "cfg_low",
                                                 "cfg_switch"), with_defaults=False)
    p.add_argument("--alphas", help="comma-separated MG α sweep (default "
                                    f"{','.join(f'{a:g}' for a in EvalConfig.alphas)})")
    p.add_argument("--no-sweep", action="store_true", help="skip the α sweep and the CFG comparison")
    p.add_argument("--sweep-seeds", type=int, help="noise seeds per prompt in the α sweep and CFG comparison "
                                                   "(default: --seeds)")
    p.add_argument("--cache-dir", default="runs/eval-cache",
                   help="reuse finished runs (same weights, settings, prompts, seeds) from here; '' = off")
    p.add_argument("--reference-seeds", type=int, help="generator videos per prompt in the FVD reference (default 8)")
    p.add_argument("--bootstrap", type=int, help="FVD bootstrap resamples (default 200)")
    return p


def _float_list(name: str, text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"{name}: expected comma-separated numbers, got {text!r}") from None


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    over = {"seen_prompts": args.seen_prompts, "held_out_prompts": args.held_out_prompts, "seeds": args.seeds,
            "steps": args.num_inference_steps, "num_frames": args.num_frames, "mg_alpha": args.mg_alpha,
            "reference_seeds": args.reference_seeds, "bootstrap": args.bootstrap, "sweep_seeds": args.sweep_seeds,
            "alphas": _float_list("alphas", args.alphas) if args.alphas is not None else None}
    over = {k: v for k, v in over.items() if v is not None}
    schedule = {k: v for k in ("high", "low", "switch") if (v := getattr(args, f"cfg_{k}")) is not None}
    if schedule:  # the CFG schedule of every row (the CFG comparison keeps its own constant)
        over["cfg"] = CFGSchedule(**schedule)
    over.update(checkpoints=args.checkpoints, name_pattern=args.name_pattern,
                thresholds=world_thresholds(World.parse(args.world)),
                out_dir=args.out_dir or ("runs/eval-quick" if args.quick else "assets/eval"),
                sweep=not args.no_sweep, cache_dir=args.cache_dir,
                variants=tuple(x.strip() for x in args.variants.split(",") if x.strip()))
    cfg = quick_config(**over) if args.quick else EvalConfig(**over)
    return cfg.validate()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        results, examples = evaluate(cfg)
        json_path = Path(args.json or Path(cfg.out_dir) / "results.json")
        fileio.write_json(json_path, results)
        report = write_report(results, examples, cfg.out_dir)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, row in results["variants"].items():
        print(f"{name:>9}: {score_cells(row)} (content | action kind | action direction | smooth | non-weird | avg), "
              f"FVD {fmt_fvd(row['fvd'])}")
    print(f"real-data floor FVD {fmt_fvd(results['real_floor_fvd'])}; wrote {report} and {json_path}")
    return 0

