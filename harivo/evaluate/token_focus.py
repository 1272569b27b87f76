"""Where do the tokens look? Cross-attention maps measured against the object the checker sees.

    python -m harivo.evaluate.token_focus --variant full [--prompts 12] [--seeds 1] [--steps 25] [--json FILE]
    python -m harivo.evaluate.token_focus --checkpoint checkpoints/harivo-shapes-full   # in the plain world's environment

For every generated video and every token (the K frame-wise tokens `<f1>`..`<fK>` and the prompt's words), each
frame's cross-attention map (the mean over steps, layers and heads that the app shows, upsampled to the frame)
is normalised to a distribution p over the pixels and compared with the object's mask in that frame (pixels
farther than `MASK_DISTANCE` from the prompt's background colour):

- **lift** = p's mass on the object / the object's share of the frame. A uniform map scores exactly 1; a map
  that looks only at the object scores 1 / share (≈ 10-40 here); a map that avoids it scores < 1.
- **centroid distance** = |centroid − centroid(object)| in frame widths, beside the same distance for the
  uniform map (the frame's centre): a map that follows the object is closer than the uniform one. The centroid
  is taken of the map minus its minimum in that frame, so a flat floor does not pull it to the centre.
- **trajectory correlation** (translating prompts only): the correlation, over a video's frames, of the map's
  centroid with the object's along the prompted axis (1 = the map moves with the object).

Token groups: "frame tokens" (all K of them), and the prompt's colour, shape, verb and background words; each
measured on the app's map (all resolutions averaged, "all") and on each resolution alone.
The frames are the pipeline's own output, so the measure needs no ground truth beyond the prompt.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from harivo.data import shapes
from harivo.data.shapes import BACKGROUNDS, ShapeSpec, all_specs

MASK_DISTANCE = 60.0  # RGB distance (0-255) from the background colour above which a pixel is object


@dataclass
class MapFocus:
    """One token's map in one frame, against the object."""

    lift: float  # mass on the object / object's share of the frame (uniform map: 1)
    centroid_distance: float  # |centroid(map - min) - centroid(object)|, frame widths
    uniform_distance: float  # |frame centre - centroid(object)|, frame widths
    centroid: tuple[float, float]  # (x, y) of the map's centroid, pixels
    object_centroid: tuple[float, float]


def object_mask(frame: np.ndarray, background: str) -> np.ndarray:
    """Boolean (h, w) mask of the pixels of a uint8 (h, w, 3) frame that are not the named background."""
    if background not in BACKGROUNDS:
        raise ValueError(f"background: expected one of {list(BACKGROUNDS)}, got {background!r}")
    bg = np.array(BACKGROUNDS[background], float)
    return np.linalg.norm(frame.astype(float) - bg, axis=-1) > MASK_DISTANCE


def map_focus(attention_map: np.ndarray, mask: np.ndarray) -> MapFocus | None:
    """Compare one (h, w) non-negative map with one (h, w) boolean object mask; None without an object or map."""
    m = np.asarray(attention_map, float)
    if m.shape != mask.shape:
        raise ValueError(f"attention_map: expected shape {mask.shape} (the mask's), got {m.shape}")
    total, share = m.sum(), mask.mean()
    if total <= 0 or share <= 0 or share >= 1:
        return None
    p = m / total
    h, w = mask.shape
    ys, xs = np.mgrid[0:h, 0:w]
    ox, oy = xs[mask].mean(), ys[mask].mean()
    cx, cy = (w - 1) / 2, (h - 1) / 2
    floor = m - m.min()
    if floor.sum() > 0:
        q = floor / floor.sum()
        px, py = (q * xs).sum(), (q * ys).sum()
    else:  # a flat map: the uniform map's centroid
        px, py = cx, cy
    return MapFocus(
        lift=float(p[mask].sum() / share),
        centroid_distance=float(np.hypot(px - ox, py - oy) / w),
        uniform_distance=float(np.hypot(cx - ox, cy - oy) / w),
        centroid=(float(px), float(py)),
        object_centroid=(float(ox), float(oy)),
    )


TRANSLATION_AXIS = {"moving left to right": 0, "moving right to left": 0, "moving up": 1, "moving down": 1}


def trajectory_correlation(foci: list[MapFocus], axis: int) -> float | None:
    """Correlation over frames of the map's and the object's centroid along ``axis`` (0 = x, 1 = y)."""
    if len(foci) < 3:
        return None
    a = np.array([f.centroid[axis] for f in foci])
    o = np.array([f.object_centroid[axis] for f in foci])
    if a.std() < 1e-9 or o.std() < 1e-9:
        return None
    return float(np.corrcoef(a, o)[0, 1])


def token_groups(tokens: list[str], kinds: list[str], spec: ShapeSpec) -> dict[str, list[int]]:
    """Token columns per group: "frame tokens", "colour", "shape", "verb", "background"."""
    verb = set(spec.motion.split()) - {"to"}
    groups: dict[str, list[int]] = {"frame tokens": [], "colour": [], "shape": [], "verb": [], "background": []}
    seen_on = False
    for i, (tok, kind) in enumerate(zip(tokens, kinds)):
        if kind == "frame":
            groups["frame tokens"].append(i)
            continue
        if tok == "on":
            seen_on = True
        elif tok == spec.colour and not seen_on and not groups["colour"]:
            groups["colour"].append(i)
        elif tok == spec.shape:
            groups["shape"].append(i)
        elif tok == spec.background and seen_on:
            groups["background"].append(i)
        elif tok in verb and not seen_on:
            groups["verb"].append(i)
    return groups


def measure_video(frames: np.ndarray, maps: np.ndarray, tokens: list[str], kinds: list[str],
                  spec: ShapeSpec, world: shapes.World = shapes.WORLD) -> dict[str, dict[str, list]]:
    """Per group: "maps", the MapFocus of each (token, frame), and "correlations", one trajectory correlation per
    token for translating prompts. `frames` uint8 (f, H, W, 3) of `world`; `maps` (f, H, W, n)."""
    if maps.shape[:3] != frames.shape[:3]:
        raise ValueError(f"maps: expected (f, H, W, n) with (f, H, W) = {frames.shape[:3]}, got {maps.shape}")
    masks = [object_mask(fr, spec.background) for fr in frames]
    band = shapes.band_mask(spec.motion, frames.shape[2], world)
    if band is not None and band.shape == masks[0].shape:  # the band world's strip is backdrop, not object
        masks = [m & ~band for m in masks]
    axis = TRANSLATION_AXIS.get(spec.motion)
    out: dict[str, dict[str, list]] = {}
    for group, cols in token_groups(tokens, kinds, spec).items():
        entry = out[group] = {"maps": [], "correlations": []}
        for c in cols:
            foci = [x for x in (map_focus(maps[f, :, :, c], masks[f]) for f in range(len(frames))) if x is not None]
            entry["maps"].extend(foci)
            corr = trajectory_correlation(foci, axis) if axis is not None else None
            if corr is not None:
                entry["correlations"].append(corr)
    return out


def summarise(per_group: dict[str, dict[str, list]]) -> dict[str, dict]:
    """Mean lift, mean centroid distance and the uniform map's, the share of maps closer than uniform, and the
    mean trajectory correlation (None without a translating video)."""
    summary = {}
    for group, found in per_group.items():
        items, corrs = found["maps"], found["correlations"]
        if not items:
            continue
        lift = np.array([x.lift for x in items])
        d = np.array([x.centroid_distance for x in items])
        u = np.array([x.uniform_distance for x in items])
        summary[group] = {
            "maps": len(items),
            "lift_mean": float(lift.mean()),
            "lift_median": float(np.median(lift)),
            "centroid_distance": float(d.mean()),
            "uniform_distance": float(u.mean()),
            "closer_than_uniform": float((d < u).mean()),
            "trajectory_correlation": float(np.mean(corrs)) if corrs else None,
            "trajectories": len(corrs),
        }
    return summary


def run(variant: str, prompts: int, seeds: int, steps: int, checkpoints: str = "checkpoints",
        checkpoint: str = "") -> dict:
    """`checkpoint`: a HARIVO checkpoint folder to measure instead of `checkpoints/harivo-shapes-<variant>`."""
    from pathlib import Path

    from harivo.pipeline import GenerationSettings, HarivoPipeline

    pipe = HarivoPipeline.from_checkpoint(checkpoint) if checkpoint else HarivoPipeline.from_variant(variant, checkpoints)
    variant = Path(checkpoint).name if checkpoint else variant
    specs = all_specs("all")
    rng = np.random.default_rng(0)
    chosen = [specs[i] for i in rng.choice(len(specs), prompts, replace=False)]
    pooled: dict[str, dict[str, dict[str, list]]] = {}  # resolution ("all" = the app's mean) -> group -> found
    for spec in tqdm(chosen, desc=f"token focus ({variant})"):
        for seed in range(seeds):
            out = pipe(GenerationSettings(prompt=spec.caption, seed=seed, num_inference_steps=steps,
                                          keep_attention_per_step=False))
            frames = (np.clip(out.frames, 0, 1) * 255).round().astype(np.uint8)
            rec = out.attention
            for res in [None, *rec.resolutions]:
                maps = rec.maps(res, size=frames.shape[1:3])[0].numpy()  # (f, H, W, n)
                per_res = pooled.setdefault(res or "all", {})
                for g, found in measure_video(frames, maps, rec.tokens, rec.token_kinds, spec,
                                                      pipe.world or shapes.WORLD).items():
                    into = per_res.setdefault(g, {"maps": [], "correlations": []})
                    for key, values in found.items():
                        into[key].extend(values)
    return {"variant": variant, "prompts": prompts, "seeds": seeds, "steps": steps,
            "resolutions": {res: summarise(groups) for res, groups in pooled.items()}}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="full")
    ap.add_argument("--checkpoints", default="checkpoints")
    ap.add_argument("--checkpoint", default="", help="a checkpoint folder instead of <checkpoints>/harivo-shapes-<variant>")
    ap.add_argument("--prompts", type=int, default=12)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = run(args.variant, args.prompts, args.seeds, args.steps, args.checkpoints, args.checkpoint)
    for res, groups in result["resolutions"].items():
        for group, s in groups.items():
            print(f"{res:5s} {group:13s} lift {s['lift_mean']:.2f} (median {s['lift_median']:.2f})  centroid→object "
                  f"{s['centroid_distance']:.3f} vs uniform {s['uniform_distance']:.3f}  closer {s['closer_than_uniform']:.0%}"
                  + (f"  track corr {s['trajectory_correlation']:.2f} (n={s['trajectories']})"
                     if s["trajectory_correlation"] is not None else ""))
    if args.json:
        from harivo.fileio import write_json

        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
