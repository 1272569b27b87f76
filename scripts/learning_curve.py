"""A long stage-2 run with its learning curve: train a Table 1 row in chunks, and after every chunk score the exported
checkpoint with the paper's Table A2 analog on a fixed held-out set (`harivo.evaluate`), appending to a JSON curve.

    python scripts/learning_curve.py --variant full --root runs/long --base-model checkpoints/shapes-sd \\
        --init-from checkpoints/harivo-band-full-verb --chunk 1000 --until 20000

Resumable at every level: the training run resumes from its state (`--resume`, a checkpoint every 100 steps), an
evaluation already in the curve is not run again, and the curve (`<root>/curve-<variant>.json`) is written
atomically. Every variant trains with the same recipe (`RECIPE` + the flags given here) and is scored the same way
(`EVAL`: 8 seen + 10 held-out prompts, one seed, CFG 12.5 -> 2.5 at 0.7T; `full` with MG). A session that ends
mid-run loses nothing but the steps since the last checkpoint; a later session continues with a fresh optimizer
from a committed checkpoint with `--init-from <it> --step-offset <its steps>` and a new `--root`.
`python scripts/learning_curve.py --plot OUT.png CURVE.json ...` draws the curves.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harivo.config import table1_label  # noqa: E402
from harivo.data.shapes import WORLD  # noqa: E402
from harivo.fileio import write_json  # noqa: E402

# the one recipe of the long runs (on top of configs/shapes-harivo.yaml): phase 1's regime of the band world
# (half the timestep draws at t >= 900, all motions, offset noise) at a constant lr
RECIPE = ["--config", "configs/shapes-harivo.yaml", "--lr", "2e-4", "--min-lr", "2e-4", "--lr-warmup-steps", "50",
          "--timestep-bias-multiplier", "9", "--timestep-bias-portion", "0.1", "--train-videos", "2000",
          "--checkpoint-every", "100", "--sample-every", "0", "--num-threads", "1"]
# the fixed held-out set and sampling every point of every curve is scored with
EVAL = ["--seen-prompts", "8", "--held-out-prompts", "10", "--seeds", "1", "--no-sweep", "--cfg-low", "2.5"]
METRICS = ("content", "action", "smooth", "non_weird", "avg", "fvd")


def eval_row(variant: str) -> str:
    """The evaluation row a variant's curve follows: HARIVO's full model is sampled with MG (D + MG)."""
    return "full+mg" if variant == "full" else variant


def point(results: dict, row: str) -> dict:
    """One curve point from an evaluation's results.json: the Table A2 analog, its AVG interval, per-verb action."""
    v = results["variants"][row]
    motion = v["by_motion"]
    return {**{k: round(float(v[k]), 3) for k in METRICS}, "avg_ci": [round(x, 2) for x in v["avg_ci"]],
            "held_out_avg": round(v["held_out"]["avg"], 2), "seen_avg": round(v["seen"]["avg"], 2),
            "action_by_motion": {m: round(motion[m]["action"], 1) for m in motion}, "videos": v["n"]}


def run(cmd: list[str], log: Path) -> None:
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
    if code:
        raise SystemExit(f"command failed ({code}), see {log}: {' '.join(cmd)}")


def train_and_score(args) -> None:
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"{args.prefix}-{args.variant}"
    out, run_dir, log = root / name, root / f"run-{args.variant}", root / f"{args.variant}.log"
    curve_path = root / f"curve-{args.variant}.json"
    curve = json.loads(curve_path.read_text()) if curve_path.exists() else {
        "variant": args.variant, "row": eval_row(args.variant), "recipe": RECIPE + args.train_args.split(),
        "eval": EVAL, "base_model": args.base_model, "init_from": args.init_from, "step_offset": args.step_offset,
        "world": WORLD.record(),
        "points": []}
    done = {p["step"] for p in curve["points"]}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HARIVO_THREADS": "1",
           "PYTHONUNBUFFERED": "1"}
    os.environ.update(env)
    if args.init_from and args.step_offset not in done:  # the curve's first point: the warm start on this base
        snapshot(args.init_from, root / "snapshots" / f"{name}-{args.step_offset}", args.base_model)
        score(args, curve, curve_path, root, name, args.step_offset, log, {"run_steps": 0, "train_minutes": 0.0})
    target = args.chunk
    while target <= args.until:
        step = args.step_offset + target
        if step not in done:
            started = time.time()
            # the whole run is one lr schedule (--max-steps = --until; a decaying lr must not restart every chunk),
            # each call stops at the chunk's end (a call that resumes mid-chunk trains only the rest of it)
            trained = json.loads((out / "training.json").read_text())["steps"] if (out / "training.json").exists() else 0
            if trained < target:  # (else it was trained and killed before its evaluation)
                run(train_command(args, out, run_dir, root / "cache", target, trained), log)
            training = json.loads((out / "training.json").read_text())
            snapshot(out, root / "snapshots" / f"{name}-{step}", args.base_model)
            score(args, curve, curve_path, root, name, step, log, {
                "run_steps": training["steps"], "train_minutes": training["minutes"],
                "sec_per_step": training["sec_per_step"], "where": training["where_trained"],
                "losses": training["final_loss_terms"]})
            print(f"  ({(time.time() - started) / 60:.1f} min with the evaluation)", flush=True)
        target += args.chunk


def train_command(args, out: Path, run_dir: Path, cache: Path, target: int, trained: int) -> list[str]:
    """The `harivo.train` call of the chunk that ends at run step `target`, `trained` steps being done: one lr schedule
    over the whole run (`--max-steps` = `--until`), stopped at the chunk's end (`--segment-steps`)."""
    return [sys.executable, "-m", "harivo.train", *RECIPE, *args.train_args.split(), "--variant", args.variant,
            "--base-model", args.base_model, "--out", str(out), "--run-dir", str(run_dir), "--cache-dir", str(cache),
            "--resume", "--max-steps", str(args.until), "--segment-steps", str(target - trained),
            *(["--init-from", args.init_from] if args.init_from else [])]


def snapshot(source, snap: Path, base_model: str) -> None:
    """Copy checkpoint folder `source` to `snap`, its base_model pointing at `base_model` from there."""
    if snap.exists():
        shutil.rmtree(snap)
    shutil.copytree(source, snap)
    config = json.loads((snap / "config.json").read_text())
    config["base_model"] = os.path.relpath(Path(base_model).resolve(), snap.resolve())
    write_json(snap / "config.json", config)


def score(args, curve: dict, curve_path: Path, root: Path, name: str, step: int, log: Path, extra: dict) -> None:
    """Evaluate snapshot `<name>-<step>` on the fixed set and append its point to the curve (written atomically)."""
    eval_dir = root / "eval" / f"{args.variant}-{step}"
    t0 = time.time()
    run([sys.executable, "-m", "harivo.evaluate", "--checkpoints", str(root / "snapshots"),
         "--name-pattern", f"{args.prefix}-{{variant}}-{step}", "--variants", eval_row(args.variant), *EVAL,
         "--out-dir", str(eval_dir), "--cache-dir", str(root / "eval-cache")], log)
    results = json.loads((eval_dir / "results.json").read_text())
    curve["points"].append({"step": step, **extra, "eval_minutes": round((time.time() - t0) / 60, 2),
                            **point(results, eval_row(args.variant))})
    curve["points"].sort(key=lambda p: p["step"])
    write_json(curve_path, curve)
    p = next(p for p in curve["points"] if p["step"] == step)
    print(f"[{args.variant}] step {step}: " + " ".join(f"{k} {p[k]}" for k in METRICS), flush=True)


def plot(out: str, paths: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [json.loads(Path(p).read_text()) for p in paths]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5), constrained_layout=True)
    for ax, metric in zip(axes.flat, METRICS):
        for c in curves:
            steps = [p["step"] for p in c["points"]]
            lr = lr_label(c["recipe"])
            ax.plot(steps, [p[metric] for p in c["points"]], marker="o", label=table1_label(c["row"]) + lr,
                    ls="-" if "→" in lr else ":")
            if metric == "avg":
                ax.fill_between(steps, [p["avg_ci"][0] for p in c["points"]], [p["avg_ci"][1] for p in c["points"]],
                                alpha=0.15)
        name = {"avg": "AVG (95 % CI)", "fvd": "FVD analog", "non_weird": "non-weird"}.get(metric, metric)
        ax.set_title(name + (" (lower is better)" if metric == "fvd" else " (% of videos)"))
        offsets = {c["step_offset"] for c in curves}
        if len(offsets) == 1 and offsets != {0}:
            ax.axvline(next(iter(offsets)), color="gray", lw=0.8, ls="--")
        ax.set_xlabel("training steps (dashed: the warm start)")
        ax.grid(alpha=0.3)
    axes.flat[0].legend()
    n = curves[0]["points"][0]["videos"] if curves and curves[0]["points"] else 0
    fig.suptitle(f"Learning curves: Table A2 analog on a fixed set of {n} videos (8 seen + 10 held-out prompts)")
    fig.savefig(out, dpi=110)


def lr_label(recipe: list[str]) -> str:
    """", lr 2e-4" for a constant lr, ", lr 1e-4 → 1e-5" for a decaying one (the last --lr / --min-lr of the recipe)."""
    last = {flag: recipe[i + 1] for i, flag in enumerate(recipe[:-1]) if flag in ("--lr", "--min-lr")}
    lr, low = last.get("--lr"), last.get("--min-lr")
    if lr is None:
        return ""
    return f", lr {lr}" if low in (None, lr) else f", lr {lr} → {low}"


def table(paths: list[str]) -> str:
    """The curves as one Markdown table, by step then Table 1 row (docs/results.md's first table)."""
    curves = [json.loads(Path(p).read_text()) for p in paths]
    head = ("| steps | Table 1 row | content | action | smooth | non-weird | AVG (95 % CI) | FVD ↓ | translations | "
            "closer / away / spinning | train min | s / step |\n|" + "---|" * 12)
    rows = []
    for c in curves:
        for p in c["points"]:
            minutes = p.get("train_minutes", 0.0)  # the run's total so far (training.json "minutes")
            by = p["action_by_motion"]
            moves = [by.get(m) for m in ("moving left to right", "moving right to left", "moving up", "moving down")]
            moves = [m for m in moves if m is not None]
            turns = " / ".join(f"{by[m]:.0f}" if m in by else "–" for m in ("getting closer", "moving away", "spinning"))
            rows.append((p["step"], c["row"], f"| {p['step']} | {table1_label(c['row'])} | {p['content']:.1f} | "
                         f"{p['action']:.1f} | {p['smooth']:.1f} | {p['non_weird']:.1f} | **{p['avg']:.1f}** "
                         f"({p['avg_ci'][0]:.1f}–{p['avg_ci'][1]:.1f}) | {p['fvd']:.1f} | "
                         f"{sum(moves) / max(len(moves), 1):.0f} % | {turns} | {minutes:.0f} | "
                         f"{p['sec_per_step']:.2f} |" if "sec_per_step" in p else
                         f"| {p['step']} | {table1_label(c['row'])} | {p['content']:.1f} | {p['action']:.1f} | "
                         f"{p['smooth']:.1f} | {p['non_weird']:.1f} | **{p['avg']:.1f}** ({p['avg_ci'][0]:.1f}–"
                         f"{p['avg_ci'][1]:.1f}) | {p['fvd']:.1f} | {sum(moves) / max(len(moves), 1):.0f} % | "
                         f"{turns} | {minutes:.0f} | – |"))
    order = {"baseline": 0, "trs-dc": 1, "mapping": 2, "full": 3, "full+mg": 4}
    return "\n".join([head] + [r for _, _, r in sorted(rows, key=lambda r: (r[0], order.get(r[1], 9)))])


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", choices=["baseline", "trs-dc", "mapping", "full"])
    ap.add_argument("--root", default="runs/long", help="folder of the run, its snapshots, evaluations and curve")
    ap.add_argument("--prefix", default="harivo-shapes", help="checkpoint folder names: <prefix>-<variant>")
    ap.add_argument("--base-model", default="checkpoints/shapes-sd")
    ap.add_argument("--init-from", default="", help="warm start: a HARIVO checkpoint folder of the same variant")
    ap.add_argument("--step-offset", type=int, default=0, help="steps the --init-from checkpoint had (curve's x)")
    ap.add_argument("--chunk", type=int, default=1000, help="training steps between two curve points")
    ap.add_argument("--until", type=int, default=20000, help="steps of this run (without the offset)")
    ap.add_argument("--train-args", default="", help="more harivo.train flags (recorded in the curve)")
    ap.add_argument("--plot", nargs="+", metavar=("OUT.png", "CURVE.json"), help="draw curves and exit")
    ap.add_argument("--table", nargs="+", metavar="CURVE.json", help="print the curves as a Markdown table and exit")
    return ap


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.table:
        print(table(args.table))
        return 0
    if args.plot:
        if len(args.plot) < 2:
            ap.error("--plot: expected OUT.png and at least one curve JSON")
        plot(args.plot[0], args.plot[1:])
        return 0
    if not args.variant:
        ap.error("--variant is required unless --plot")
    train_and_score(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
