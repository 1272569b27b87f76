"""Does a token's cross-attention follow the object across frames? Measured, not eyeballed.

    python scripts/attention_tracking.py [--variant full] [--prompts 8] [--seeds 2] [--json FILE]

For prompts whose object translates (left/right/up/down) it generates videos with the embedded model, reads
the object's centroid in every frame with the shapes-world pixel checker, and compares it with the centroid
of the cross-attention map (mean over resolutions and steps, conditional branch) of
  - the object's noun token (e.g. "circle"),
  - each frame-wise token <f1>..<fK> (§3.4; only models with frame tokens),
  - a map that ignores the object: the uniform map (its centroid is the frame centre).
Per token: the mean distance (px) between the map's centroid and the object's, and the correlation of the two
trajectories along the prompted axis (1 = the map moves with the object; frames without an object are
skipped). The map centroid uses the map minus its per-frame minimum, so a flat floor does not pull it to the
centre.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harivo.data.checker import read_video  # noqa: E402
from harivo.data.shapes import all_specs  # noqa: E402
from harivo.pipeline import DEFAULT_CHECKPOINTS, GenerationSettings, HarivoPipeline  # noqa: E402

AXIS = {"moving left to right": "x", "moving right to left": "x", "moving up": "y", "moving down": "y"}


def map_centroids(maps: np.ndarray, size: int) -> np.ndarray:
    """(f, h, w) maps -> (f, 2) centroids (x, y) in frame pixels (array-index coordinates)."""
    f, h, w = maps.shape
    m = maps - maps.reshape(f, -1).min(axis=1)[:, None, None]
    m = m / np.maximum(m.reshape(f, -1).sum(axis=1), 1e-12)[:, None, None]
    ys, xs = (np.arange(h) + 0.5) * size / h - 0.5, (np.arange(w) + 0.5) * size / w - 0.5
    return np.stack([(m.sum(axis=1) * xs).sum(axis=1), (m.sum(axis=2) * ys).sum(axis=1)], axis=1)


def track_scores(att: np.ndarray, obj: np.ndarray, axis: str) -> tuple[float, float]:
    ok = ~np.isnan(obj).any(axis=1)
    if ok.sum() < 3:
        return float("nan"), float("nan")
    dist = float(np.linalg.norm(att[ok] - obj[ok], axis=1).mean())
    i = 0 if axis == "x" else 1
    a, o = att[ok, i], obj[ok, i]
    corr = float(np.corrcoef(a, o)[0, 1]) if a.std() > 1e-9 and o.std() > 1e-9 else float("nan")
    return dist, corr


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/attention_tracking.py", description=__doc__.split("\n")[0])
    p.add_argument("--variant", default="full")
    p.add_argument("--checkpoints", default=None)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    pipe = HarivoPipeline.from_variant(args.variant, args.checkpoints or DEFAULT_CHECKPOINTS)
    specs = [s for s in all_specs("train") if s.motion in AXIS]
    rng = np.random.default_rng(0)
    specs = [specs[i] for i in rng.choice(len(specs), size=args.prompts, replace=False)]
    rows: dict[str, list[tuple[float, float]]] = {}
    for spec in specs:
        for seed in range(args.seeds):
            out = pipe(GenerationSettings(prompt=spec.caption, seed=seed, num_inference_steps=args.steps,
                                          capture_attention=True, keep_attention_per_step=False))
            frames = out.frames
            size = frames.shape[2]
            track = read_video((frames * 255).round().astype(np.uint8)).track
            obj = np.stack([track.cx, track.cy], axis=1)
            maps = out.attention.maps()[0].float().numpy()  # (f, h, w, n)
            tokens = {"noun": out.attention.tokens.index(spec.shape)} if spec.shape in out.attention.tokens else {}
            tokens.update({t: i for i, (t, k) in enumerate(zip(out.attention.tokens, out.attention.token_kinds))
                           if k == "frame"})
            for name, i in tokens.items():
                rows.setdefault(name, []).append(track_scores(map_centroids(maps[..., i], size), obj, AXIS[spec.motion]))
            centre = np.full_like(obj, (size - 1) / 2)
            rows.setdefault("uniform map (frame centre)", []).append(track_scores(centre, obj, AXIS[spec.motion]))
    def mean(xs: list[float]) -> float:  # NaN (not a warning) when no video gave a value
        xs = [x for x in xs if not np.isnan(x)]
        return float(np.mean(xs)) if xs else float("nan")

    summary = {name: {"mean_distance_px": mean([d for d, _ in v]),
                      "trajectory_correlation": mean([c for _, c in v]),
                      "videos": int(np.sum([not np.isnan(d) for d, _ in v]))} for name, v in rows.items()}
    print(f"{args.variant}: {len(specs)} translating prompts x {args.seeds} seeds, {args.steps} steps")
    print(f"{'token':>28}  {'distance px':>11}  {'corr':>6}  videos")
    for name, s in summary.items():
        print(f"{name:>28}  {s['mean_distance_px']:11.2f}  {s['trajectory_correlation']:6.2f}  {s['videos']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"variant": args.variant, "prompts": [s.caption for s in specs],
                                               "seeds": args.seeds, "tokens": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
