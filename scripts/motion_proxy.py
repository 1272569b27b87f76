"""Quick proxy during stage 2: do a checkpoint's videos move the prompted way? (no report, no cache)

    python scripts/motion_proxy.py checkpoints/harivo-shapes-full [--videos 16] [--steps 15] [--threads 1]

Samples `--videos` translation / closer / away prompts (`--motions translations|sizes`: of one kind only) of the
training split (`--split held_out`: of the held-out combinations; seed-fixed, the same for every checkpoint),
judges each with the pixel checker and prints, per checkpoint: the share of translations whose centroid moved the
prompted way and how far (fraction of the frame), the share of closer/away videos whose size changed the right way
and by how much (mean log size ratio), content %, and the share of a translation's frames showing its band.

With `--swap`, every translation / closer / away video is sampled again from the same seed with the opposite verb
(`verb_probe.swap_verb`), and `verb_moves` reports how much the verb moves the object: the mean over pairs of
(shift with the verb − shift with the opposite verb) / 2 along the prompted direction (fraction of the frame for
translations, log size ratio for closer/away). ~0 when the initial noise, not the words, sets where the object goes.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from harivo.data.checker import judge, world_thresholds
from harivo.data.shapes import DIRECTIONS, MOTION_GROUPS, TRANSLATIONS, ShapeSpec, all_specs
from harivo.fileio import load_tensors
from harivo.pipeline import GenerationSettings, HarivoPipeline
from harivo.sampling import MGConfig
from harivo.evaluate.verb_probe import swap_verb


def proxy_specs(n: int, seed: int = 0, split: str = "train", motions: str = "directed") -> list[ShapeSpec]:
    pool = [s for s in all_specs(split) if s.motion in MOTION_GROUPS[motions]]
    rng = np.random.default_rng(seed)
    return [pool[i] for i in rng.choice(len(pool), min(n, len(pool)), replace=False)]


def save_strips(path: str, pairs: list[tuple[str, np.ndarray, str, np.ndarray]], every: int = 2) -> None:
    """Every `every`-th frame of each (prompt, frames, opposite prompt, frames) pair, one row per video."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(p, f) for a, fa, b, fb in pairs for p, f in ((a, fa), (b, fb))]
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 1.45 * len(rows)), squeeze=False)
    for ax, (prompt, frames) in zip(axes[:, 0], rows):
        picked = frames[::every]
        gap = np.full((frames.shape[1], 2, 3), 255, np.uint8)
        ax.imshow(np.concatenate([c for f in picked for c in (f, gap)][:-1], axis=1), interpolation="nearest")
        ax.set_title(prompt, fontsize=9, loc="left")
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def along_track(tr, motion: str, size: int) -> float | None:
    """How far a track moved `motion`'s way, first to last frame with an object: fraction of the frame
    (translations) or log size ratio (closer/away); None with fewer than two such frames."""
    if motion in TRANSLATIONS:
        ux, uy = DIRECTIONS[motion]  # unit vector of the translation (x right, y down)
        ok = ~np.isnan(tr.cx)
        if ok.sum() < 2:
            return None
        i0, i1 = np.flatnonzero(ok)[[0, -1]]
        return float(((tr.cx[i1] - tr.cx[i0]) * ux + (tr.cy[i1] - tr.cy[i0]) * uy) / size)
    ok = ~np.isnan(tr.size)
    if ok.sum() < 2:
        return None
    i0, i1 = np.flatnonzero(ok)[[0, -1]]
    return float((1 if motion == "getting closer" else -1) * np.log(tr.size[i1] / tr.size[i0]))


def measure(folder: str, videos: int, steps: int, mg: bool, swap: bool = False, weights: str = "",
            split: str = "train", strips: str = "", strip_pairs: int = 4, base_model: str = "",
            motions: str = "directed") -> dict:
    pipe = HarivoPipeline.from_checkpoint(folder, base_model=base_model or None)
    thresholds = world_thresholds(pipe.world)  # read in the world the checkpoint records
    if weights:  # trained parts (a state dict of the model's) on top of the checkpoint's
        loaded = pipe.model.load_state_dict(load_tensors(weights, what="--weights"), strict=False)
        if loaded.unexpected_keys:
            raise SystemExit(f"--weights: keys the model does not have: {loaded.unexpected_keys[:3]}")

    def sample(spec: ShapeSpec, seed: int):
        out = pipe(GenerationSettings(prompt=spec.caption, seed=seed, num_inference_steps=steps,
                                      mg=MGConfig() if mg else MGConfig(enabled=False), capture_attention=False))
        frames = (np.clip(out.frames, 0, 1) * 255).round().astype(np.uint8)
        return judge(frames, spec, thresholds), frames

    rows, shown = [], []
    for k, spec in enumerate(proxy_specs(videos, split=split, motions=motions)):
        j, frames = sample(spec, k)
        S = frames.shape[2]
        row = {"prompt": spec.caption, "content": j["content"], "action": j["action"], "smooth": j["smooth"],
               "smooth_fails": j["details"]["smooth_fails"],
               "flicker_parts": j["details"]["flicker_parts"]}
        if spec.motion in TRANSLATIONS:  # frames showing its band
            row["band_share"] = float(np.mean([b == spec.motion for b in j["details"]["band"]]))
        along = along_track(j["details"]["reading"].track, spec.motion, S)
        if along is not None:
            row["along"] = along
        if swap:  # the same seed, the opposite verb, measured along *this* prompt's direction
            js, frames_swapped = sample(swap_verb(spec), k)
            swapped = along_track(js["details"]["reading"].track, spec.motion, S)
            if spec.motion in TRANSLATIONS and len(shown) < strip_pairs:
                shown.append((spec.caption, frames, swap_verb(spec).caption, frames_swapped))
            if swapped is not None:
                row["along_swapped"] = swapped
        rows.append(row)
    if strips and shown:
        save_strips(strips, shown)
    tr_rows = [r for r in rows if "along" in r and any(m in r["prompt"] for m in TRANSLATIONS)]
    zoom = [r for r in rows if "along" in r and r not in tr_rows]
    return {
        "checkpoint": folder, "base_model": base_model or pipe.model.config.base_model, "weights": weights,
        "split": split, "videos": len(rows), "steps": steps, "mg": mg,
        "translation_right_way": float(np.mean([r["along"] > 0 for r in tr_rows])) if tr_rows else None,
        "translation_along": float(np.mean([r["along"] for r in tr_rows])) if tr_rows else None,
        "zoom_right_way": float(np.mean([r["along"] > 0 for r in zoom])) if zoom else None,
        "zoom_along": float(np.mean([r["along"] for r in zoom])) if zoom else None,  # log size ratio, prompted way
        "content": float(np.mean([r["content"] for r in rows])),
        "action": float(np.mean([r["action"] for r in rows])),
        "smooth": float(np.mean([r["smooth"] for r in rows])),
        "smooth_fails": {k: int(sum(k in r["smooth_fails"] for r in rows))  # videos breaking each bound
                         for k in ("step", "size_step", "angle_step", "flicker")},
        "flicker_parts_median": {k: float(np.median([r["flicker_parts"][k] for r in rows]))
                                 for k in ("object_colour", "background_colour", "area")},
        **({"band_share": float(np.mean([r["band_share"] for r in tr_rows]))} if tr_rows else {}),
        **({"verb_moves": float(np.mean([(r["along"] - r["along_swapped"]) / 2 for r in pairs])),
            "verb_moves_pairs": len(pairs)}
           if (pairs := [r for r in rows if "along" in r and "along_swapped" in r]) else {}),
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--videos", type=int, default=16)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-mg", action="store_true")
    ap.add_argument("--swap", action="store_true", help="also sample each video with the opposite verb")
    ap.add_argument("--weights", default="", help="a safetensors state dict of the model to load on top")
    ap.add_argument("--split", default="train", help="prompts of this split: train | held_out")
    ap.add_argument("--motions", default="directed", choices=list(MOTION_GROUPS),
                    help="prompts of these motions: translations and size changes (directed), or either alone")
    ap.add_argument("--strips", default="", help="PNG: frames of the first 4 translation pairs (needs --swap)")
    ap.add_argument("--base-model", default="", help="T2I folder under the checkpoint instead of its own base")
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.strips and len(args.checkpoints) > 1:
        raise SystemExit("--strips: one checkpoint at a time")
    results = [measure(c, args.videos, args.steps, not args.no_mg, args.swap, args.weights, args.split, args.strips,
                       base_model=args.base_model, motions=args.motions) for c in args.checkpoints]
    for r in results:
        print(json.dumps({k: v for k, v in r.items() if k != "rows"}))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
