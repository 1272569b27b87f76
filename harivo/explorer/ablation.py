"""A-vs-B runs and the ablation grid (Table 1 variants + MG, or MG α ∈ {0, 40, 150} as Fig. 6c) on one seed,
exported as one PNG + PDF figure; also `python -m harivo.explorer ablation ...` (no UI).

The Table 1 rows are the chosen model's *family*: a checkpoint folder named `<prefix><variant><suffix>`
(`harivo-shapes-full`: family `harivo-shapes-{variant}`; `my-run-full-v2`: `my-run-{variant}-v2`)
has as rows the members of its family found in the checkpoints folder (`model_family`)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import settings, viz
from ..config import TABLE1, table1_label
from ..pipeline import VARIANTS
from ..sampling import MGConfig
from .models import CHECKPOINTS_ENV, ModelRegistry
from .request import RunRequest, default_request
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


VARIANT_SLOT = "{variant}"  # where a family's pattern names the variant


def split_variant(folder: str) -> tuple[str, str, str] | None:
    """('harivo-band-', 'full', '-verb') for 'harivo-band-full-verb': the first Table 1 variant that is a whole
    '-'-separated part of a checkpoint folder's name, with what comes before and after it; None without one."""
    found = [(m.start(), -len(v), v) for v in VARIANTS
             for m in re.finditer(rf"(?:^|(?<=-)){re.escape(v)}(?=-|$)", folder)]
    if not found:
        return None
    start, _, v = min(found)
    return folder[:start], v, folder[start + len(v):]


@dataclass(frozen=True)
class Family:
    """The checkpoints that differ from one another only by their Table 1 variant."""

    pattern: str  # "harivo-band-{variant}-verb"
    members: dict[str, str]  # variant -> registry key, for the members found in the checkpoints folder
    missing: tuple[str, ...]  # the other members' folder names (not in the checkpoints folder)

    def folder(self, variant: str) -> str:
        return self.pattern.replace(VARIANT_SLOT, variant)


def model_family(registry: ModelRegistry, key: str) -> Family | None:
    """The family of the registry's model `key` (None when its folder's name has no Table 1 variant, or for the
    tiny random model)."""
    path = registry.entry(key).path
    parts = split_variant(path.name) if path is not None else None
    if parts is None:
        return None
    prefix, _, suffix = parts
    keys = {e.path.name: e.key for e in registry.entries if e.path is not None}
    family = Family(f"{prefix}{VARIANT_SLOT}{suffix}", {}, ())
    members = {v: keys[family.folder(v)] for v in VARIANTS if family.folder(v) in keys}
    return Family(family.pattern, members, tuple(family.folder(v) for v in VARIANTS if v not in members))


def folder_name(registry: ModelRegistry, key: str) -> str:
    """The checkpoint folder of the registry's model `key` (its label for the tiny random model)."""
    entry = registry.entry(key)
    return entry.path.name if entry.path is not None else entry.label


def ablation_plan(registry: ModelRegistry, mode: str, req: RunRequest) -> list[tuple[str, RunRequest]]:
    """Rows of the ablation grid. "variants": Table 1 (the variants, then full + MG) on the chosen model's family
    when it has ≥ 2 members in the checkpoints folder (the others left out), else the components switched on one
    by one on the chosen model. "alpha": Fig. 6c on the chosen model."""
    if mode not in ABLATION_MODES:
        raise ValueError(f"mode: expected one of {list(ABLATION_MODES)}, got {mode!r}")
    base = dataclasses.replace(req, model=req.model or registry.default_key)
    if mode == "alpha":  # α = 0 is MG off (MGConfig)
        return [(f"α = {a:g}", dataclasses.replace(base, use_mg=True, mg_alpha=a)) for a in ALPHAS]
    family = model_family(registry, base.model)
    if family is not None and len(family.members) >= 2:
        return [(label, dataclasses.replace(base, model=family.members[v], use_mg=mg, use_mapping=True,
                                            use_frame_tokens=True))
                for label, v, mg in TABLE1_ROWS if v in family.members]
    off = {"use_mapping": False, "use_frame_tokens": False, "use_mg": False}
    return [
        ("no mapping, no frame tokens", dataclasses.replace(base, **off)),
        ("+ mapping network", dataclasses.replace(base, **{**off, "use_mapping": True})),
        ("+ frame-wise tokens", dataclasses.replace(base, **{**off, "use_mapping": True, "use_frame_tokens": True})),
        (f"+ MG (α = {base.mg_alpha:g})",
         dataclasses.replace(base, use_mapping=True, use_frame_tokens=True, use_mg=True)),
    ]


def ablation_rows_text(registry: ModelRegistry, mode: str, model: str = "") -> str:
    """What the grid's rows are for the model `model` (default: the registry's): the figure's title says it, and
    the app's Ablation tab before a run."""
    model = model or registry.default_key
    folder = folder_name(registry, model)
    if mode == "alpha":
        return f"{ABLATION_MODES[mode]} on {folder}"
    family = model_family(registry, model)
    if family is not None and len(family.members) >= 2:
        text = f"{ABLATION_MODES[mode]}, one checkpoint per row: {family.pattern}"
        return text + (f" (not in the checkpoints folder, left out: {', '.join(family.missing)})"
                       if family.missing else "")
    why = (f"no other member of {family.pattern} in the checkpoints folder" if family is not None
           else "its name has no Table 1 variant")
    return f"components one by one + MG on {folder} ({why})"


@dataclass
class AblationResult:
    image: np.ndarray  # preview of the figure
    png: Path
    pdf: Path
    rows: list[tuple[str, RunResult]]  # (the figure's row label: Table 1 row or setting, then the checkpoint folder)
    title: str = ""  # the figure's title: prompt, seed, and what the rows are


def run_ablation(registry: ModelRegistry, mode: str, req: RunRequest, x_red: int | None = None,
                 x_green: int | None = None, cancel: threading.Event | None = None,
                 out_stem: str | os.PathLike | None = None) -> AblationResult:
    """Every row on one seed, then one figure (frames + Fig. 6 slice stack per row) as PNG and PDF."""
    rows = []
    for label, r in ablation_plan(registry, mode, req):
        if cancel is not None and cancel.is_set():
            break
        res = run_generation(registry, r, cancel, capture_attention=False, write_bundle=False,
                             desc=f"ablation: {label}")
        rows.append((f"{label}\n{folder_name(registry, res.model)}", res))  # each row names its checkpoint
    if not rows:
        raise ValueError("ablation: cancelled before the first row")
    first = rows[0][1]
    x_red, x_green = columns(first.frames.shape[2], x_red, x_green)
    title = (f"“{first.settings['prompt']}”, seed {first.settings['seed']} — "
             f"{ablation_rows_text(registry, mode, req.model)}")
    fig = viz.ablation_figure([(label, res.frames) for label, res in rows], x_red, x_green, title=title)
    stem = Path(out_stem) if out_stem else first.workdir / f"ablation-{mode}"
    png, pdf = viz.save_figure(fig, stem)
    from PIL import Image

    return AblationResult(np.asarray(Image.open(png).convert("RGB")), png, pdf, rows, title)


def main(argv: list[str] | None = None) -> int:
    """`python -m harivo.explorer ablation --mode alpha --out assets/ablation`: the ablation figure, no UI."""
    p = argparse.ArgumentParser(prog="python -m harivo.explorer")
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("ablation", help="export the ablation grid figure (PNG + PDF)")
    a.add_argument("--mode", choices=list(ABLATION_MODES), default="variants")
    # --prompt, --seed, --frames, --steps: the generation settings' own flags; unset, the app's first request's values
    settings.add_arguments(a, required=(), only=("prompt", "seed", "num_frames", "num_inference_steps"),
                           with_defaults=False)
    a.add_argument("--model", default="", help="registry key (default: the first available)")
    a.add_argument("--checkpoints", default=None,
                   help=f"checkpoints folder (default: ${CHECKPOINTS_ENV} or checkpoints/)")
    a.add_argument("--out", required=True, help="output stem: writes STEM.png and STEM.pdf")
    args = p.parse_args(argv)
    registry = ModelRegistry(args.checkpoints)
    given = {n: getattr(args, n) for n in ("prompt", "seed", "num_frames", "num_inference_steps")
             if getattr(args, n) is not None}
    model = args.model or registry.default_key
    # as the app: the model's recorded sampling (CFG schedule, α, DDIM steps) unless given
    req = dataclasses.replace(default_request(registry, model), **given)
    res = run_ablation(registry, args.mode, req, out_stem=args.out)
    models = ", ".join(dict.fromkeys(folder_name(registry, r.model) for _, r in res.rows))
    print(f"wrote {res.png} and {res.pdf} ({len(res.rows)} rows, models: {models})")
    return 0
