"""A-vs-B runs and the ablation grid (Table 1 variants + MG, or MG α ∈ {0, 40, 150} as Fig. 6c) on one seed,
exported as one PNG + PDF figure; also `python -m harivo.explorer ablation ...` (no UI)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import viz
from ..config import TABLE1, table1_label
from ..pipeline import VARIANTS
from ..sampling import MGConfig
from .models import CHECKPOINTS_ENV, ModelRegistry
from .request import RunRequest
from .runs import RunResult, run_generation
from .views import columns

TABLE1_ROWS = tuple((table1_label(v), v.removesuffix("+mg"), v.endswith("+mg")) for v in TABLE1)  # ablation grid
ALPHAS = (0.0, MGConfig.alpha, 150.0)  # Fig. 6c: MG off, the default, over-smoothed
ABLATION_MODES = {"variants": "Table 1 variants + MG",
                  "alpha": f"MG α ∈ {{{', '.join(f'{a:g}' for a in ALPHAS)}}} (Fig. 6c)"}


def run_compare(registry: ModelRegistry, a: RunRequest, b: RunRequest,
                cancel: threading.Event | None = None) -> list[RunResult]:
    """A and B on the same seed (the caller sets it), one after the other, without attention capture."""
    return [run_generation(registry, r, cancel, capture_attention=False, write_bundle=False, desc=f"sampling {n}")
            for n, r in (("A", a), ("B", b))]


def ablation_plan(registry: ModelRegistry, mode: str, req: RunRequest) -> list[tuple[str, RunRequest]]:
    """Rows of the ablation grid. "variants": Table 1 (trained variants, then full + MG) when ≥ 2 trained
    variants exist, else the components switched on one by one on the chosen model. "alpha": Fig. 6c."""
    if mode not in ABLATION_MODES:
        raise ValueError(f"mode: expected one of {list(ABLATION_MODES)}, got {mode!r}")
    base = dataclasses.replace(req, model=req.model or registry.default_key)
    if mode == "alpha":  # α = 0 is MG off (MGConfig)
        return [(f"α = {a:g}", dataclasses.replace(base, use_mg=True, mg_alpha=a)) for a in ALPHAS]
    present = [v for v in VARIANTS if v in registry.keys]
    if len(present) >= 2:
        return [(label, dataclasses.replace(base, model=v, use_mg=mg, use_mapping=True, use_frame_tokens=True))
                for label, v, mg in TABLE1_ROWS if v in present]
    off = {"use_mapping": False, "use_frame_tokens": False, "use_mg": False}
    return [
        ("no mapping, no frame tokens", dataclasses.replace(base, **off)),
        ("+ mapping network", dataclasses.replace(base, **{**off, "use_mapping": True})),
        ("+ frame-wise tokens", dataclasses.replace(base, **{**off, "use_mapping": True, "use_frame_tokens": True})),
        (f"+ MG (α = {base.mg_alpha:g})",
         dataclasses.replace(base, use_mapping=True, use_frame_tokens=True, use_mg=True)),
    ]


@dataclass
class AblationResult:
    image: np.ndarray  # preview of the figure
    png: Path
    pdf: Path
    rows: list[tuple[str, RunResult]]


def run_ablation(registry: ModelRegistry, mode: str, req: RunRequest, x_red: int | None = None,
                 x_green: int | None = None, cancel: threading.Event | None = None,
                 out_stem: str | os.PathLike | None = None) -> AblationResult:
    """Every row on one seed, then one figure (frames + Fig. 6 slice stack per row) as PNG and PDF."""
    rows = []
    for label, r in ablation_plan(registry, mode, req):
        if cancel is not None and cancel.is_set():
            break
        rows.append((label, run_generation(registry, r, cancel, capture_attention=False, write_bundle=False,
                                           desc=f"ablation: {label}")))
    if not rows:
        raise ValueError("ablation: cancelled before the first row")
    first = rows[0][1]
    x_red, x_green = columns(first.frames.shape[2], x_red, x_green)
    one_model = len({r.model for _, r in rows}) == 1
    what = ABLATION_MODES[mode] if mode == "alpha" or not one_model else "components one by one + MG"
    models = first.model_label if one_model else "one trained checkpoint per row"
    title = f"“{first.settings['prompt']}”, seed {first.settings['seed']} — {what} ({models})"
    fig = viz.ablation_figure([(label, res.frames) for label, res in rows], x_red, x_green, title=title)
    stem = Path(out_stem) if out_stem else first.workdir / f"ablation-{mode}"
    png, pdf = viz.save_figure(fig, stem)
    from PIL import Image

    return AblationResult(np.asarray(Image.open(png).convert("RGB")), png, pdf, rows)


def main(argv: list[str] | None = None) -> int:
    """`python -m harivo.explorer ablation --mode alpha --out assets/ablation`: the ablation figure, no UI."""
    p = argparse.ArgumentParser(prog="python -m harivo.explorer")
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("ablation", help="export the ablation grid figure (PNG + PDF)")
    a.add_argument("--mode", choices=list(ABLATION_MODES), default="variants")
    a.add_argument("--prompt", default=RunRequest.prompt)
    a.add_argument("--seed", type=int, default=RunRequest.seed)
    a.add_argument("--frames", type=int, default=RunRequest.num_frames)
    a.add_argument("--steps", type=int, default=RunRequest.num_inference_steps)
    a.add_argument("--model", default="", help="registry key (default: the first available)")
    a.add_argument("--checkpoints", default=None,
                   help=f"checkpoints folder (default: ${CHECKPOINTS_ENV} or checkpoints/)")
    a.add_argument("--out", required=True, help="output stem: writes STEM.png and STEM.pdf")
    args = p.parse_args(argv)
    registry = ModelRegistry(args.checkpoints)
    req = RunRequest(prompt=args.prompt, seed=args.seed, num_frames=args.frames, num_inference_steps=args.steps,
                     model=args.model)
    res = run_ablation(registry, args.mode, req, out_stem=args.out)
    models = ", ".join(sorted({r.model for _, r in res.rows}))
    print(f"wrote {res.png} and {res.pdf} ({len(res.rows)} rows, models: {models})")
    return 0
