"""Quick proxy during stage 2: do a checkpoint's videos move the prompted way? (no report, no cache)

    python scripts/motion_proxy.py runs/cue/harivo-shapes-full [--videos 16] [--steps 15] [--threads 1]

Samples `--videos` translation / closer / away prompts of the training split (seed-fixed, the same for every
checkpoint), judges each with the pixel checker and prints, per checkpoint: the share of translations whose
centroid moved the prompted way and how far (fraction of the frame), the share of closer/away videos whose size
changed the right way, content %, and the share of frames whose drawn cue mark is the prompt's.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from harivo.data.checker import judge
from harivo.data.shapes import ShapeSpec, all_specs
from harivo.pipeline import GenerationSettings, HarivoPipeline
from harivo.sampling import MGConfig

TRANSLATIONS = {"moving left to right": (1, 0), "moving right to left": (-1, 0), "moving up": (0, -1),
                "moving down": (0, 1)}


def proxy_specs(n: int, seed: int = 0) -> list[ShapeSpec]:
    pool = [s for s in all_specs("train") if s.motion in (*TRANSLATIONS, "getting closer", "moving away")]
    rng = np.random.default_rng(seed)
    return [pool[i] for i in rng.choice(len(pool), n, replace=False)]


def measure(folder: str, videos: int, steps: int, mg: bool) -> dict:
    pipe = HarivoPipeline.from_checkpoint(folder)
    rows = []
    for k, spec in enumerate(proxy_specs(videos)):
        out = pipe(GenerationSettings(prompt=spec.caption, seed=k, num_inference_steps=steps,
                                      mg=MGConfig() if mg else MGConfig(enabled=False), capture_attention=False))
        frames = (np.clip(out.frames, 0, 1) * 255).round().astype(np.uint8)
        j = judge(frames, spec)
        tr = j["details"]["reading"].track
        S = frames.shape[2]
        row = {"prompt": spec.caption, "content": j["content"], "action": j["action"],
               "cue_share": j["details"]["cue_share"]}
        if spec.motion in TRANSLATIONS:
            ux, uy = TRANSLATIONS[spec.motion]
            ok = ~np.isnan(tr.cx)
            if ok.sum() >= 2:
                i0, i1 = np.flatnonzero(ok)[[0, -1]]
                row["along"] = float(((tr.cx[i1] - tr.cx[i0]) * ux + (tr.cy[i1] - tr.cy[i0]) * uy) / S)
        else:
            ok = ~np.isnan(tr.size)
            if ok.sum() >= 2:
                i0, i1 = np.flatnonzero(ok)[[0, -1]]
                sign = 1 if spec.motion == "getting closer" else -1
                row["along"] = float(sign * np.log(tr.size[i1] / tr.size[i0]))
        rows.append(row)
    tr_rows = [r for r in rows if "along" in r and any(m in r["prompt"] for m in TRANSLATIONS)]
    zoom = [r for r in rows if "along" in r and r not in tr_rows]
    return {
        "checkpoint": folder, "videos": len(rows), "steps": steps, "mg": mg,
        "translation_right_way": float(np.mean([r["along"] > 0 for r in tr_rows])) if tr_rows else None,
        "translation_along": float(np.mean([r["along"] for r in tr_rows])) if tr_rows else None,
        "zoom_right_way": float(np.mean([r["along"] > 0 for r in zoom])) if zoom else None,
        "content": float(np.mean([r["content"] for r in rows])),
        "action": float(np.mean([r["action"] for r in rows])),
        "cue_share": float(np.mean([r["cue_share"] for r in rows])),
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--videos", type=int, default=16)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-mg", action="store_true")
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = [measure(c, args.videos, args.steps, not args.no_mg) for c in args.checkpoints]
    for r in results:
        print(json.dumps({k: v for k, v in r.items() if k != "rows"}))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
