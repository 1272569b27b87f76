"""Draw the shapes world's cue (every frame shows its motion) for README: assets/figures/cue_world.png.

One row per motion: frames 0, 5, 10 and 15 of one generator video with the cue, then frame 0 without it
(``cue=False``, the world before the cue), and what the pixel checker reads back from each cue frame.

    python scripts/cue_figure.py [--style cue2] [--size 32] [--out assets/figures/cue_world.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from harivo.data.checker import Thresholds, cue_motion, read_frame  # noqa: E402
from harivo.data.shapes import (BACKDROP_STYLE, CUE_STYLE, CUE_STYLES, MOTIONS, OBJECT_STYLE, ShapeSpec,  # noqa: E402
                                render_video)

EXAMPLES = {  # one (colour, shape, background) per motion, so every colour family and shape shows up
    "moving left to right": ("red", "square", "gray"),
    "moving right to left": ("yellow", "triangle", "blue"),
    "moving up": ("green", "star", "white"),
    "moving down": ("white", "circle", "black"),
    "getting closer": ("blue", "triangle", "gray"),
    "moving away": ("orange", "square", "white"),
    "spinning": ("purple", "star", "gray"),
    "standing still": ("black", "circle", "white"),
}
SHORT = {"moving left to right": "left → right", "moving right to left": "right → left", "moving up": "up",
         "moving down": "down", "getting closer": "closer", "moving away": "away", "spinning": "spinning",
         "standing still": "still"}
FRAMES = (0, 5, 10, 15)


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="assets/figures/cue_world.png")
    ap.add_argument("--style", default=None, choices=CUE_STYLES, help="cue style (default: the world's)")
    ap.add_argument("--size", type=int, default=64, help="frame side in pixels (the small world: 32)")
    args = ap.parse_args(argv)
    cue = args.style or True
    # read cue3's colour labels; the band of a "band" backdrop (HARIVO_BACKDROP=band) is the world's
    thresholds = Thresholds(cue_labels=(args.style or CUE_STYLE) == "cue3")
    fig, axes = plt.subplots(len(MOTIONS), len(FRAMES) + 1, figsize=(7.0, 13.0 if BACKDROP_STYLE == "flat" else 14.0))
    for row, motion in enumerate(MOTIONS):
        spec = ShapeSpec(*EXAMPLES[motion][:2], motion, EXAMPLES[motion][2])
        video, _ = render_video(spec, seed=row + 3, size=args.size, cue=cue)
        plain, _ = render_video(spec, seed=row + 3, size=args.size, cue=False)
        for col, f in enumerate(FRAMES):
            ax = axes[row, col]
            ax.imshow(video[f], interpolation="nearest")
            r = read_frame(video[f], thresholds)
            band = f"\nband: {SHORT[r.band]}" if r.band else ""
            ax.set_title(f"f{f}: {SHORT[cue_motion(r, thresholds)]}{band}", fontsize=8)
        axes[row, -1].imshow(plain[0], interpolation="nearest")
        axes[row, -1].set_title("f0, cue=False", fontsize=8)
        axes[row, 0].set_ylabel(f'"{spec.caption.split(" is ")[1].split(" on ")[0]}"', fontsize=9)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    world = (args.style or CUE_STYLE) + ("" if BACKDROP_STYLE == "flat" else f", {BACKDROP_STYLE} backdrop")
    world += f", {OBJECT_STYLE} objects" if OBJECT_STYLE != "normal" else ""
    world += f", {args.size} px" if args.size != 64 else ""
    where = {"flat": "the mark inside the object",
             "band": "the label inside the object;\na translation's band along the edge it heads for",
             "band2": "the label inside the object; a translation's band along the edge it heads for,\n"
                      "a size change's or a spin's along the top edge"}[BACKDROP_STYLE]
    fig.suptitle(f"The shapes world ({world}): every frame shows its motion\n({where})\n"
                 "titles: frame, and the motion the pixel checker reads from that single frame", fontsize=10)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(out)
    return out


if __name__ == "__main__":
    main()
