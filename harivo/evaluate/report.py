"""The report of `python -m harivo.evaluate`: `report.md` and its matplotlib plots, from the JSON summary.

Every number printed is the JSON's, formatted by `fmt_pct` / `fmt_fvd`; plots and the report are written
atomically (`fileio`).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np

from harivo import fileio
from harivo.config import TABLE1, table1_label
from harivo.evaluate.metrics import QUESTIONS
from harivo.evaluate.stats import translation_summary

APP_D_CFG = (12.5, 7.5, 0.7)  # (high, low, switch) of App. D: sampling.CFGSchedule's defaults (tested), kept here
#   because this module does not import torch

matplotlib.use("Agg")  # headless
import matplotlib.pyplot as plt  # noqa: E402

PAPER_TABLE_A2_AVG = {"baseline": 25.25, "trs-dc": 68.0, "mapping": 71.5, "full": 76.5, "full+mg": 80.5}
# the score columns of every Table A2-style table: both actions, then AVG (over QUESTIONS: the direction action)
SCORE_KEYS = ("content", "action_kind", "action", "smooth", "non_weird", "avg")
SCORE_LABELS = {"content": "content", "action_kind": "action (kind, paper)", "action": "action (direction, ours)",
                "smooth": "smooth", "non_weird": "non-weird", "avg": "AVG"}
SCORE_HEAD = " | ".join(SCORE_LABELS[k] for k in SCORE_KEYS)
assert set(SCORE_KEYS) == {*QUESTIONS, "action_kind", "avg"}


# ------------------------------------------------------------------------------------------------ report
def fmt_pct(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:.1f}"  # NaN (no video in that split) prints as a dash


def fmt_fvd(x: float) -> str:
    return f"{x:.4g}"


def save_plot(fig, path: Path) -> Path:
    """A report plot as PNG (atomically), the figure closed."""
    with fileio.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=130, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


def plot_table_a2(variants: dict, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(1.6 + 1.6 * len(variants), 3.2))
    keys, width = SCORE_KEYS, 0.8 / len(SCORE_KEYS)
    for k, key in enumerate(keys):
        xs = np.arange(len(variants)) + (k - (len(keys) - 1) / 2) * width
        values = [variants[v].get(key, float("nan")) for v in variants]  # no action_kind in older summaries
        cis = [variants[v].get(f"{key}_ci") for v in variants]  # the AVG's bootstrap interval, when there is one
        yerr = (np.array([[val - ci[0], ci[1] - val] for val, ci in zip(values, cis)]).T
                if all(cis) else None)
        ax.bar(xs, values, width, label=SCORE_LABELS[key] + (" (95% CI)" if yerr is not None else ""),
               yerr=yerr, capsize=2, error_kw={"elinewidth": 0.8})
    ax.set_xticks(np.arange(len(variants)), list(variants))
    ax.set_ylim(0, 100)
    ax.set_ylabel("% of videos")
    ax.set_title("Table A2 analog (pixel checker)")
    # below the axes: inside, it covered the tops of bars near 90 %
    ax.legend(ncol=3, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False)
    return save_plot(fig, path)


def plot_fvd(variants: dict, floor: float, floor_ci, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(1.6 + 1.2 * len(variants), 3.2))
    fvd = np.array([variants[v]["fvd"] for v in variants])
    ci = np.array([variants[v]["fvd_ci"] for v in variants]).reshape(-1, 2)
    ax.bar(np.arange(len(fvd)), fvd, yerr=np.abs(np.stack([fvd - ci[:, 0], ci[:, 1] - fvd])), capsize=4, color="C0")
    ax.axhline(floor, color="k", ls="--", lw=1, label=f"real-data floor {fmt_fvd(floor)}")
    ax.axhspan(floor_ci[0], floor_ci[1], color="k", alpha=0.1)
    ax.set_xticks(np.arange(len(fvd)), list(variants))
    ax.set_ylabel("FVD (checker features) ↓")
    ax.set_title("Table 1 analog")
    ax.legend(fontsize=7)
    return save_plot(fig, path)


def plot_alpha_sweep(sweep: list[dict], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5.6, 3.2))
    xs = np.arange(len(sweep))  # categorical: α = 0 has no place on a log axis
    for key in SCORE_KEYS[:-1]:
        ax.plot(xs, [r.get(key, float("nan")) for r in sweep], marker=".", lw=1, alpha=0.7, label=SCORE_LABELS[key])
    ax.plot(xs, [r["avg"] for r in sweep], marker="o", lw=2.5, color="k", label="avg")
    ax.set_xticks(xs, [f"{r['alpha']:g}" for r in sweep])
    ax.set_xlabel("MG α (full variant)")
    ax.set_ylabel("% of videos")
    ax.set_ylim(0, 100)
    ax.set_title("MG α sensitivity (Fig. 6c)")
    fvd_ax = ax.twinx()  # the continuous measure: Fréchet distance to generator videos, right axis
    fvd_ax.plot(xs, [r["fvd"] for r in sweep], ls="--", marker="s", ms=4, color="tab:purple", label="FVD (right)")
    fvd_ax.set_ylabel("FVD analog ↓", color="tab:purple")
    fvd_ax.set_ylim(0, max(r["fvd"] for r in sweep) * 1.15 or 1.0)
    lines = ax.get_legend_handles_labels()
    extra = fvd_ax.get_legend_handles_labels()
    ax.legend(lines[0] + extra[0], lines[1] + extra[1], fontsize=7, ncol=3, loc="upper center",
              bbox_to_anchor=(0.5, -0.2), frameon=False)
    return save_plot(fig, path)


def plot_examples(examples: dict[str, np.ndarray], caption: str, path: Path, max_frames: int = 8) -> Path:
    n_frames = min(max_frames, min(len(v) for v in examples.values()))
    height = 0.95 * len(examples) + 0.5  # rows, then half an inch for the caption and the frame titles
    fig, axes = plt.subplots(len(examples), n_frames, figsize=(0.9 * n_frames + 1, height), squeeze=False)
    fig.subplots_adjust(top=1 - 0.45 / height)
    for r, (name, video) in enumerate(examples.items()):
        for c, f in enumerate(np.linspace(0, len(video) - 1, n_frames).round().astype(int)):
            ax = axes[r, c]
            ax.imshow(video[f], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
            if r == 0:
                ax.set_title(f"frame {f}", fontsize=7)
    fig.suptitle(caption + " (seed 0)", fontsize=8, y=1 - 0.08 / height)  # above the frame titles, any row count
    return save_plot(fig, path)


def score_cells(row: dict) -> str:
    """The SCORE_KEYS cells of one row; a dash where a summary written before `action_kind` existed lacks it."""
    return " | ".join(fmt_pct(row.get(k, float("nan"))) for k in SCORE_KEYS)


_MOTION_SHORT = {"moving left to right": "left→right", "moving right to left": "right→left", "moving up": "up",
                 "moving down": "down", "getting closer": "closer", "moving away": "away", "spinning": "spinning",
                 "standing still": "still"}


def _ci(ci, fmt) -> str:
    return "–" if not ci else f"{fmt(ci[0])}–{fmt(ci[1])}"


def fmt_along(x: float) -> str:
    return "–" if x != x else f"{x:+.2f}"


def motion_section(results: dict) -> list[str]:
    """'Action per verb': per variant and prompted motion, % action-correct and the mean movement the prompted
    way (`eval_stats.motion_along_prompt`), with the generator videos' movement as the scale."""
    rows = {name: row["by_motion"] for name, row in results["variants"].items() if "by_motion" in row}
    if not rows:
        return []
    motions = [m for m in _MOTION_SHORT if any(m in r for r in rows.values())]
    head = "| variant | " + " | ".join(_MOTION_SHORT[m] for m in motions) + " |"
    rule = "|---|" + "---|" * len(motions)
    lines = ["", "### Action per verb", "",
             "% of videos whose action (direction, ours) the checker accepts, then how far they moved the prompted "
             "way: centroid shift along the prompted direction (fraction of the frame) for the translations, change "
             "of log size for closer / away, fraction of a turn for spinning, length of the centroid shift for still "
             "(0 is right). The generator's videos give the scale.", "", head, rule]
    for name, r in rows.items():
        cells = [f"{fmt_pct(r[m]['action'])} / {fmt_along(r[m]['along'])}" if m in r else "" for m in motions]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    real = results.get("real_by_motion") or {}
    if real:
        lines.append("| generator videos | " + " | ".join(
            f"{fmt_along(real[m]['along'])}" if m in real else "" for m in motions) + " |")
    pooled = {name: translation_summary(r) for name, r in rows.items()}
    if real:
        pooled["generator videos"] = translation_summary(real)
    if any(p["n"] for p in pooled.values()):
        lines += ["", "**Translations, any direction.** The four translations pooled: how far the object moved in any "
                  "direction (length of the centroid shift, fraction of the frame) and % of videos whose shift has the "
                  "prompted sign (chance: 50 %). Moving the wrong way and not moving at all score alike above; not "
                  "here.", "",
                  "| variant | moved | right way |", "|---|---|---|"]
        lines += [f"| {name} | {fmt_along(p['moved']).lstrip('+')} | {fmt_pct(p['right_way'])} |"
                  for name, p in pooled.items() if p["n"]]
    return lines


def sensitivity_section(results: dict, plots: dict[str, str]) -> list[str]:
    """The MG α sweep and the CFG schedule comparison, when the evaluation ran them."""
    s, lines = results["settings"], []
    if results["alpha_sweep"]:
        n_sweep = s.get("videos_per_sweep_row", s["videos_per_row"])
        note = "" if n_sweep == s["videos_per_row"] else (
            f" (the table's rows have {s['videos_per_row']}; Fréchet distances depend on the set size, so the "
            "sweep's FVDs compare with each other only)")
        lines += ["", "## Sensitivity: MG α on `full` (Fig. 6c)", "",
                  f"{n_sweep} videos per α{note}.", "",
                  f"| α | {SCORE_HEAD} | FVD ↓ |", "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['alpha']:g} | {score_cells(r)} | {fmt_fvd(r['fvd'])} |" for r in results["alpha_sweep"]]
        lines += ["", f"![MG α sweep]({plots['alpha_sweep']})"]
    c = results["cfg_schedule"]
    if c:
        lines += ["", f"## CFG schedule (App. D) vs constant, `full` with MG α = {c['mg_alpha']:g}", "",
                  f"| CFG | {SCORE_HEAD} | FVD ↓ |", "|---|---|---|---|---|---|---|---|"]
        for name in ("schedule", "constant"):
            r = c[name]
            constant = r["high"] == r["low"]
            label = f"constant {r['low']:g}" if constant else f"{r['high']:g} → {r['low']:g} at {r['switch']:g}T"
            lines.append(f"| {label} | {score_cells(r)} | {fmt_fvd(r['fvd'])} |")
    return lines


def checker_section(T: dict, S: int) -> list[str]:
    """How the checker decides, with the thresholds `T` the evaluation ran with (frame side `S` px)."""
    lines: list[str] = []
    lines += ["", "## How the checker decides (`harivo/data/checker.py`, `Thresholds`)", "",
              "- **content**: majority colour, shape and background over the frames equal the prompt's (a colour "
              f"farther than {T['max_palette_dist']:g} RGB from every palette colour is no colour).",
              "- **action**: the verb with the strongest evidence, needing a centroid shift "
              f"≥ {T['min_translation']:g}·S "
              f"(S = {S} px), a size ratio ≥ {T['min_zoom']:g} or a rotation ≥ {T['min_rotation']:g}°; else "
              "\"standing still\". Two columns judge it (a spinning circle may read as still in both): "
              "**action (direction, ours)** wants the prompted verb itself, direction included (left vs right, "
              "up vs down, closer vs away); **action (kind, paper)** only its kind of motion (translation, size "
              "change, rotation, still), which is what the paper's Table A2 asked, its WebVid captions naming no "
              "direction. Every caption here names one, so the direction column goes beyond the paper. "
              "**AVG** is the mean of content, action (direction, ours), smooth and non-weird; action (kind, "
              "paper) is not in it.",
              f"- **smooth**: every frame-to-frame centroid step ≤ {T['max_step']:g}·S, size ratio ≤ "
              f"{T['max_size_step']:g}, rotation ≤ {T['max_angle_step']:g}°, and flicker score ≤ {T['max_flicker']:g}.",
              "- **non-weird**: exactly one object (components ≥ "
              f"{T['min_speck_px']} px) in every frame, max/min area ≤ {T['max_area_ratio']:g} "
              f"({T['max_area_ratio_zoom']:g} when zooming), area ≤ {T['max_area_fraction']:g} of the frame, "
              f"border noise ≤ {T['max_noise']:g}."]
    return lines


def report_markdown(results: dict, plots: dict[str, str]) -> str:
    """The report: every number is the JSON's, formatted by fmt_pct / fmt_fvd; one section after another in the
    report's order."""
    s, v, T = results["settings"], results["variants"], results["thresholds"]
    S = T["frame_size_px"]
    n_seen = sum(not p["held_out"] for p in results["prompts"])
    lines = [
        "# HARIVO on the shapes world: evaluation",
        "",
        f"`{results.get('command') or 'python -m harivo.evaluate' + (' --quick' if s['quick'] else '')}`: "
        f"{len(results['prompts'])} prompts "
        f"({n_seen} seen, {len(results['prompts']) - n_seen} held-out) × {len(results['seeds'])} seeds = "
        f"{s['videos_per_row']} videos per row, {s['num_frames']} frames at {S}×{S} px, DDIM {s['steps']} steps, "
        f"CFG {s['cfg']['high']:g} → {s['cfg']['low']:g} at {s['cfg']['switch']:g}T"
        f"{' (App. D)' if (s['cfg']['high'], s['cfg']['low'], s['cfg']['switch']) == APP_D_CFG else ''}. "
        f"Total time {results['timing']['total_s']:.0f} s ({results['timing']['per_video_s']:.2f} s per video"
        + (f"; {results['timing']['videos_from_cache']} videos from earlier runs in the cache"
           if results['timing'].get('videos_from_cache') else "") + ").",
    ]
    if results.get("world"):  # older JSONs predate it
        pattern = s.get("name_pattern", "harivo-shapes-{variant}")
        world = results["world"]["version"] if isinstance(results["world"], dict) else results["world"]
        lines += ["", f"World `{world}` (the checker and the FVD reference read it; "
                      f"`harivo.data.shapes.World`), rows' checkpoints `{pattern}`."]
    if results["skipped_variants"]:
        lines += ["", "Skipped: " + "; ".join(f"`{k}` ({w})" for k, w in results["skipped_variants"].items())]
    lines += ["", "## Table A2 analog: % of videos the pixel checker accepts", "",
              f"| variant | Table 1 row | {SCORE_HEAD} | FVD ↓ | FVD 95% CI | paper AVG | AVG 95% CI |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in v.items():
        lo, hi = row["fvd_ci"]
        lines.append(f"| {name} | {table1_label(name) if name in TABLE1 else row['table1_row']} | {score_cells(row)} | {fmt_fvd(row['fvd'])} | "
                     f"{fmt_fvd(lo)}–{fmt_fvd(hi)} | {PAPER_TABLE_A2_AVG[name]:g} | {_ci(row.get('avg_ci'), fmt_pct)} |")
    lines += ["", "Paper AVG: HARIVO's Table A2 (human judges, 100 WebVid-style prompts; rows there add one component "
              "at a time, so `trs-dc` corresponds to its + L_DC row). Its judges asked for the kind of motion only; "
              "our AVG uses action (direction, ours), the stricter one (see *How the checker decides*).", "",
              f"![Table A2 analog]({plots['table_a2']})"]
    for split, title in (("seen", "Seen prompts"), ("held_out", "Held-out prompts (never trained on)")):
        lines += ["", f"### {title}", "", f"| variant | n | {SCORE_HEAD} | AVG 95% CI | FVD ↓ | FVD 95% CI |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {name} | {row[split]['n']} | {score_cells(row[split])} | "
                  f"{_ci(row[split].get('avg_ci'), fmt_pct)} | "
                  f"{fmt_fvd(row[split]['fvd']) if 'fvd' in row[split] else '–'} | "
                  f"{_ci(row[split].get('fvd_ci'), fmt_fvd)} |" for name, row in v.items()]
    lines += ["", "FVD per split: that split's videos against the reference videos of that split's prompts. "
              "AVG 95% CI: percentile bootstrap over videos."]
    lines += motion_section(results)
    lo, hi = results["real_floor_fvd_ci"]
    lines += ["", "## Table 1 analog: Fréchet video distance", "",
              f"Reference: {s['reference_videos']} generator videos of the same prompts. Real-data floor "
              f"(another {s['videos_per_row']} generator videos vs the reference): "
              f"**{fmt_fvd(results['real_floor_fvd'])}** "
              f"(95% CI {fmt_fvd(lo)}–{fmt_fvd(hi)}). Intervals: {s['bootstrap']} bootstrap resamples of the "
              f"generated videos. Features ({len(results['fvd_features'])}, checker-derived, see the module docstring "
              "of `harivo/evaluate/__init__.py`): " + ", ".join(f"`{n}`" for n in results["fvd_features"]) + ".",
              "", f"![FVD]({plots['fvd']})"]
    lines += sensitivity_section(results, plots) + checker_section(T, S)
    lines += ["", "## Prompts", ""]
    lines += [f"- {p['prompt']}{' *(held out)*' if p['held_out'] else ''}" for p in results["prompts"]]
    if "examples" in plots:
        lines += ["", "## Example videos", "", f"![examples]({plots['examples']})"]
    return "\n".join(lines) + "\n"


def write_report(results: dict, examples: dict[str, np.ndarray], out_dir: str | Path) -> Path:
    """report.md and its PNG plots into `out_dir` (atomic writes)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = {"table_a2": plot_table_a2(results["variants"], out / "table_a2.png").name,
             "fvd": plot_fvd(results["variants"], results["real_floor_fvd"], results["real_floor_fvd_ci"],
                             out / "fvd.png").name}
    if results["alpha_sweep"]:
        plots["alpha_sweep"] = plot_alpha_sweep(results["alpha_sweep"], out / "alpha_sweep.png").name
    if examples:
        caption = next((p["prompt"] for p in results["prompts"] if p["held_out"]), results["prompts"][0]["prompt"])
        plots["examples"] = plot_examples(examples, caption, out / "examples.png").name
    path = out / "report.md"
    fileio.write_text(path, report_markdown(results, plots))
    return path
