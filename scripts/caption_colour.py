"""Does the object look like its caption? The share of the object's interior that is *not* the caption's colour,
per video, on generated videos of the fixed evaluation prompts (the visitor's-eye test of a world: a label or mark
of another colour on the object shows up here; shading and anti-aliasing do not).

    PYTHONPATH=. python scripts/caption_colour.py \\
        checkpoints/harivo-shapes-full [--videos 18] [--json OUT]

Per frame: the pixels farther than ``MASK_DIST`` from the border's median colour (the band's strip replaced by the
background first, as the checker does) form the object; its interior is that mask eroded by one pixel; a pixel is
off-colour when it is farther than ``OFF_DIST`` (RGB, 0-255) from the caption colour's palette value. A video's
share is the median over its frames with an object; it "looks like its caption" when that share is under 0.1.
The generator's own videos give 0 (`--generator`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harivo.data.checker import DEFAULT_THRESHOLDS, _read_band  # noqa: E402
from harivo.data.shapes import COLOURS, render_video  # noqa: E402

MASK_DIST = 60.0
OFF_DIST = 80.0
EIGHT = np.ones((3, 3), bool)


def off_colour_share(frame: np.ndarray, colour: str) -> float | None:
    """Share of the object's interior farther than OFF_DIST from COLOURS[colour]; None without an object."""
    img = np.asarray(frame, np.float32)
    if img.max() <= 1.0:
        img = img * 255.0
    ring = np.zeros(img.shape[:2], bool)
    ring[:2], ring[-2:], ring[:, :2], ring[:, -2:] = True, True, True, True
    bg = np.median(img[ring], axis=0)
    band, band_px = _read_band(img, bg, DEFAULT_THRESHOLDS)
    if band is not None:
        img = np.where(band_px[..., None], bg, img)
    labels, n = ndimage.label(np.linalg.norm(img - bg, axis=-1) > MASK_DIST, structure=EIGHT)
    if n == 0:
        return None
    main = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    interior = ndimage.binary_erosion(main, EIGHT)
    interior = interior if interior.sum() >= 3 else main
    off = np.linalg.norm(img[interior] - np.array(COLOURS[colour], np.float32), axis=-1) > OFF_DIST
    return float(off.mean())


def video_share(frames: np.ndarray, colour: str) -> float:
    shares = [s for s in (off_colour_share(f, colour) for f in frames) if s is not None]
    return float(np.median(shares)) if shares else 1.0


def main(argv=None) -> int:
    from harivo.evaluate import eval_prompts

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", nargs="?", help="HARIVO checkpoint folder (sampled at its recommended settings)")
    ap.add_argument("--generator", action="store_true", help="score the world's own videos instead")
    ap.add_argument("--seen", type=int, default=8)
    ap.add_argument("--held-out", type=int, default=10)
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    specs = eval_prompts(args.seen, args.held_out)
    rows = []
    if args.generator:
        for spec in specs:
            rows.append({"prompt": spec.caption, "share": video_share(render_video(spec, 0)[0], spec.colour)})
    else:
        import torch

        from harivo.pipeline import HarivoPipeline
        from harivo.settings import GenerationSettings

        torch.set_num_threads(1)
        pipe = HarivoPipeline.from_checkpoint(args.checkpoint)
        for spec in specs:
            sampling = {**pipe.sampling_defaults, "num_inference_steps": 25}  # App. D's steps, as measured
            s = GenerationSettings.from_flat(prompt=spec.caption, seed=0, capture_attention=False, **sampling)
            rows.append({"prompt": spec.caption, "share": video_share(pipe(s).frames, spec.colour)})
            print(f"{rows[-1]['share']:.3f}  {spec.caption}", flush=True)
    shares = np.array([r["share"] for r in rows])
    summary = {"checkpoint": args.checkpoint or "generator", "videos": len(rows),
               "looks_like_caption": round(float((shares < 0.1).mean() * 100), 1),
               "median_share": round(float(np.median(shares)), 3), "rows": rows}
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
