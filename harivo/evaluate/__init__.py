"""`python -m harivo.evaluate [--quick] [--json FILE]`: HARIVO's quantitative evaluation, on the shapes world.

    python -m harivo.evaluate --quick

Writes `report.md` and PNG plots into --out-dir (default `assets/eval/`; with --quick `runs/eval-quick/`, so a quick
look never overwrites the shipped report) and a JSON summary (--json, default
`<out-dir>/results.json`). Three parts:

- **Table A2 analog** (App. E): a fixed prompt set (seen and held-out (colour, shape, motion) combinations,
  `shapes.HELD_OUT`) × N noise seeds per variant: `baseline`, `trs-dc`, `mapping`, `full` (Table 1 rows A–D,
  MG off) and `full+mg` (row D + MG sampling, α = 40, §3.7). Each video is judged by the pixel checker
  `harivo.data.checker.judge`: content (colour, shape, background), action (centroid/size/angle trajectory
  matches the verb), smooth (no frame-to-frame jump or flicker) and non-weird (one object in every frame,
  stable area, no noise). We report the percentage of videos passing each question and their average,
  overall and for seen and held-out prompts separately. Action is reported twice: the paper's (the kind of
  motion matches) and ours (the direction too, which the AVG uses). The thresholds are `checker.Thresholds`
  (with the `shapes.World` the videos are read in, `--world`; every row's checkpoint must record that world),
  written into the report and the JSON.
- **Table 1 analog** (§4.2): a Fréchet video distance per variant against generator videos of the same
  prompts, with the real-data floor (generator videos vs other generator videos, same number of videos as a
  variant) and a bootstrap interval.
- **Sensitivity**: MG α sweep on `full` (Fig. 6c) and the App. D CFG schedule (12.5 → 7.5 at 0.7T) against a
  constant CFG 7.5.

FVD features. The paper's FVD uses I3D features of UCF101 clips; an I3D network trained on human actions says
little about a coloured square, and its weights are not available offline. Here a video's feature is the
vector of `FEATURE_NAMES`, read by the same pixel checker: object and background mean colour, the angular
harmonics (shape), the centroid's mean and its change over the clip, mean log size and zoom, rotation, the
worst frame-to-frame steps, flicker, object count, area stability, noise and pixel frame-difference
statistics, each bounded and about unit scale so no single one dominates the distance. It is deterministic
(no network, no random state), stable across machines and library versions, and continuous where the Table A2
questions are binary, so an almost-right video is closer to the reference than a very wrong one. Fréchet
distances are biased upward for small sets, so the floor is computed with as many videos as each variant and
only numbers of one run compare. The interval is a percentile bootstrap over the generated videos (reference
fixed), re-centred on the point estimate: resampling repeats videos, which biases the resampled distance
upward; the re-centred interval keeps the bootstrap's spread without that bias.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from harivo import fileio
from harivo.config import TABLE1, check_range
from harivo.data.checker import DEFAULT_THRESHOLDS, JUDGE_VERSION, Thresholds
from harivo.data.shapes import BACKGROUNDS, HELD_OUT, MOTIONS, ShapeSpec, all_specs, is_held_out, render_video
from harivo.evaluate.metrics import FEATURE_NAMES, QUESTIONS, score_video
from harivo.evaluate.stats import (bootstrap_fd, feature_stats, frechet_distance, motion_breakdown, reference_features,
                                  table_scores)
from harivo.outputs import versions
from harivo.pipeline import DEFAULT_CHECKPOINTS, VARIANTS, HarivoPipeline
from harivo.sampling import CFGSchedule, MGConfig
from harivo.settings import FLAT, GenerationSettings, flat_range

EVAL_VARIANTS = (*VARIANTS, "full+mg")  # Table 1 rows A–D, then D + MG sampling
TABLE1_ROW = {v: row for v, (row, _) in TABLE1.items()}  # config.TABLE1: one naming of the rows


def checkpoint_of(row: str) -> str:
    """The variant whose checkpoint an evaluation row samples: full+mg is `full` with MG on."""
    return "full" if row == "full+mg" else row


@dataclass
class EvalConfig:
    """What one evaluation run does (saved in the JSON)."""

    checkpoints: str = str(DEFAULT_CHECKPOINTS)  # folder holding the rows' checkpoints, named by `name_pattern`
    name_pattern: str = "harivo-shapes-{variant}"  # a row's checkpoint folder, {variant} replaced
    variants: tuple[str, ...] = EVAL_VARIANTS  # Table A2 / Table 1 rows to evaluate
    out_dir: str = "assets/eval"  # report.md and plots go here
    seen_prompts: int = 16  # training combinations, two per motion (the paper: 100 prompts, App. E)
    held_out_prompts: int = 10  # combinations never trained on: all of shapes.HELD_OUT
    seeds: int = 4  # noise seeds per prompt (App. E: four videos per prompt)
    steps: int = GenerationSettings.num_inference_steps  # DDIM steps: the generation default (App. D)
    num_frames: int = GenerationSettings.num_frames  # the generation default (shapes-world videos)
    cfg: CFGSchedule = field(default_factory=CFGSchedule)  # App. D: 12.5 while t > 0.7T, 7.5 after
    mg_alpha: float = MGConfig.alpha  # α of the full+mg row: the sampler's default (§4)
    alphas: tuple[float, ...] = (0.0, 20.0, 40.0, 80.0, 150.0, 300.0)  # MG sweep on full (Fig. 6c: 40 vs 150)
    constant_cfg: float = 7.5  # the constant scale the App. D schedule is compared with
    sweep: bool = True  # run the α sweep and the CFG comparison (needs the full checkpoint)
    sweep_seeds: int = 0  # noise seeds per prompt in the α sweep and CFG comparison; 0 = `seeds`
    reference_seeds: int = 8  # generator videos per prompt in the FVD reference set
    bootstrap: int = 200  # FVD bootstrap resamples
    confidence: float = 0.95  # FVD interval coverage
    prompt_seed: int = 0  # picks the seen prompts and the held-out prompts' backgrounds
    quick: bool = False  # set by --quick (recorded in the report)
    cache_dir: str = "runs/eval-cache"  # finished runs (videos' scores + features), keyed by weights and settings;
    #   a later evaluation with other rows reuses them. "" = no cache
    thresholds: Thresholds = DEFAULT_THRESHOLDS  # the checker's decision thresholds and the world it reads in

    def validate(self) -> "EvalConfig":
        if self.name_pattern.count("{variant}") != 1 or "/" in self.name_pattern:
            raise ValueError("name_pattern: expected a folder name with one '{variant}' (e.g. harivo-band-{variant}"
                             f"-verb), got {self.name_pattern!r}")
        unknown = [v for v in self.variants if v not in EVAL_VARIANTS]
        if unknown or not self.variants:
            raise ValueError(f"variants: expected a non-empty list from {list(EVAL_VARIANTS)}, "
                             f"got {list(self.variants)}")
        check_range("seen_prompts", self.seen_prompts, 0, 1000, integer=True)
        check_range("held_out_prompts", self.held_out_prompts, 0, len(HELD_OUT), integer=True)
        check_range("seeds", self.seeds, 1, 10_000, integer=True)
        check_range("sweep_seeds", self.sweep_seeds, 0, 10_000, integer=True)
        if (self.seen_prompts + self.held_out_prompts) * self.seeds < 2:
            raise ValueError("seeds: expected at least 2 videos per variant (prompts × seeds) for a covariance")
        check_range("steps", self.steps, 1, 1000, integer=True)
        check_range("frames", self.num_frames, 2, 1000, integer=True)
        for a in self.alphas:
            check_range("alphas", a, *flat_range("mg_alpha"))
        check_range("alpha", self.mg_alpha, *flat_range("mg_alpha"))
        check_range("constant_cfg", self.constant_cfg, 1.0, 100.0)
        check_range("reference_seeds", self.reference_seeds, 1, 10_000, integer=True)
        check_range("bootstrap", self.bootstrap, 0, 100_000, integer=True)
        check_range("confidence", self.confidence, 0.5, 0.999)
        self.cfg.validate()
        return self


def quick_config(**overrides) -> EvalConfig:
    """--quick: 6 seen + 3 held-out prompts × 2 seeds, 12 DDIM steps (about a minute per variant on 2 cores)."""
    quick = {"seen_prompts": 6, "held_out_prompts": 3, "seeds": 2, "steps": 12, "reference_seeds": 4, "quick": True,
             "out_dir": "runs/eval-quick"}
    return EvalConfig(**{**quick, **overrides})


# EvalConfig fields that are generation settings -> their flags (the CLI takes them from settings.FLAT)
GENERATION_FLAGS = {"steps": FLAT["num_inference_steps"].flag, "num_frames": FLAT["num_frames"].flag,
                    "mg_alpha": FLAT["mg_alpha"].flag}


def command_line(cfg: EvalConfig) -> str:
    """The command that reruns `cfg`: `python -m harivo.evaluate` with a flag for each setting off its default (the
    --quick defaults with --quick)."""
    base = quick_config() if cfg.quick else EvalConfig()
    flags = ["--quick"] if cfg.quick else []
    if cfg.thresholds.world != base.thresholds.world:
        flags.append(f"--world {cfg.thresholds.world.version}")
    if Path(cfg.checkpoints).resolve() != Path(base.checkpoints).resolve():  # rows from another folder (runs/...)
        flags.append(f"--checkpoints {cfg.checkpoints}")
    for name, flag in (("name_pattern", "--name-pattern"), ("variants", "--variants"), ("out_dir", "--out-dir"),
                       ("seen_prompts", "--seen-prompts"), ("held_out_prompts", "--held-out-prompts"),
                       ("seeds", "--seeds"), ("sweep_seeds", "--sweep-seeds"), ("alphas", "--alphas"),
                       ("reference_seeds", "--reference-seeds"), ("bootstrap", "--bootstrap"),
                       *GENERATION_FLAGS.items()):
        value = getattr(cfg, name)
        if value != getattr(base, name):
            text = ",".join(f"{x:g}" if isinstance(x, float) else str(x) for x in value) \
                if isinstance(value, tuple) else f"{value:g}" if isinstance(value, float) else str(value)
            flags.append(f"{flag} '{text}'" if "{" in text else f"{flag} {text}")
    for name in ("high", "low", "switch"):
        value = getattr(cfg.cfg, name)
        if value != getattr(base.cfg, name):
            flags.append(f"{FLAT[f'cfg_{name}'].flag} {value:g}")
    if not cfg.sweep:
        flags.append("--no-sweep")
    return " ".join(["python -m harivo.evaluate", *flags])


# ------------------------------------------------------------------------------------------------ prompts
def eval_prompts(seen: int, held_out: int, seed: int = 0) -> list[ShapeSpec]:
    """`seen` training prompts cycling through the motions, then the first `held_out` of HELD_OUT, each on a
    seed-chosen background. Deterministic in its arguments."""
    rng = np.random.default_rng([seed, 6])
    train, specs = all_specs("train"), []
    order = ("moving left to right", "getting closer", "moving up", "spinning", "moving right to left",
             "moving away", "moving down", "standing still")
    assert set(order) == set(MOTIONS)
    for i in range(seen):
        motion, used = order[i % len(order)], {(s.colour, s.shape) for s in specs}
        # a new (colour, shape) while there is one, else any prompt not taken yet
        pool = [s for s in train if s.motion == motion and (s.colour, s.shape) not in used]
        pool = pool or [s for s in train if s.motion == motion and s not in specs]
        specs.append(pool[int(rng.integers(len(pool)))])
    for colour, shape, motion in HELD_OUT[:held_out]:
        backgrounds = [b for b in BACKGROUNDS if b != colour]
        specs.append(ShapeSpec(colour, shape, motion, backgrounds[int(rng.integers(len(backgrounds)))]))
    return specs


# ------------------------------------------------------------------------------------------------ running
@dataclass(frozen=True)
class RunSpec:
    """One way of sampling: which checkpoint, MG α (0 = off) and CFG schedule. Rows sharing one are run once."""

    checkpoint: str  # baseline | trs-dc | mapping | full
    mg_alpha: float  # §3.7 MG strength; 0 turns MG off
    cfg: CFGSchedule  # App. D schedule or a constant
    seeds: int  # noise seeds 0..seeds-1 per prompt


def run_videos(pipe: HarivoPipeline, run: RunSpec, specs: list[ShapeSpec], cfg: EvalConfig, desc: str) -> dict:
    """Generate and judge prompts × seeds; per-video records, the feature matrix, timing, one example video."""
    seeds = list(range(run.seeds))
    records, feats, example, example_index = [], [], None, _example_index(specs)
    start = time.perf_counter()
    with tqdm(total=len(specs) * len(seeds), desc=desc, unit="video") as bar:
        for i, spec in enumerate(specs):
            for seed in seeds:
                out = pipe(GenerationSettings(
                    prompt=spec.caption, seed=seed, num_frames=cfg.num_frames, num_inference_steps=cfg.steps,
                    cfg=run.cfg, mg=MGConfig(alpha=run.mg_alpha), capture_attention=False,  # α = 0: MG off
                ))
                scored = score_video(out.frames, spec, cfg.thresholds)
                feats.append(scored.pop("features"))
                records.append({"prompt": spec.caption, "seed": seed, "held_out": is_held_out(spec), **scored})
                if i == example_index and example is None:
                    example = out.frames
                bar.update(1)
    seconds = time.perf_counter() - start
    return {"records": records, "features": np.array(feats), "seconds": seconds, "example": example}


def weights_fingerprint(pipe: HarivoPipeline) -> str:
    """sha256 of every weight the videos depend on (video model, VAE, text encoder), in name order."""
    h = hashlib.sha256()
    for prefix, module in (("model", pipe.model), ("vae", pipe.vae), ("text", pipe.text_encoder)):
        for name, t in sorted(module.state_dict().items()):
            h.update(f"{prefix}.{name}{tuple(t.shape)}{t.dtype}".encode())
            h.update(t.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def run_cache_key(fingerprint: str, run: RunSpec, specs: list[ShapeSpec], cfg: EvalConfig) -> str:
    """What a run's results depend on: weights, sampling settings, prompts, seeds, checker thresholds and the
    version the judging code declares (`checker.JUDGE_VERSION`: the checker and eval_metrics; the statistics over
    videos and the report are recomputed from the cached records)."""
    what = {"format": 1, "weights": fingerprint, "mg_alpha": run.mg_alpha, "cfg": asdict(run.cfg),
            "seeds": run.seeds, "steps": cfg.steps, "frames": cfg.num_frames, "prompts": [s.caption for s in specs],
            "thresholds": asdict(cfg.thresholds), "features": list(FEATURE_NAMES), "judge": JUDGE_VERSION}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:24]


def load_cached_run(cache_dir: str | Path, key: str) -> dict | None:
    """A finished run saved by `save_cached_run`, or None (absent or unreadable: it is simply redone)."""
    folder = Path(cache_dir) / key
    try:
        meta = fileio.read_json(folder / "run.json")
        arrays = fileio.load_tensors(folder / "arrays.safetensors")
    except (ValueError, OSError):
        return None
    example = arrays["example"].numpy() if "example" in arrays else None
    return {"records": meta["records"], "features": arrays["features"].numpy().astype(np.float64),
            "seconds": meta["seconds"], "example": example, "cached": True}


def save_cached_run(cache_dir: str | Path, key: str, run: dict) -> None:
    folder = Path(cache_dir) / key
    arrays = {"features": torch.from_numpy(np.ascontiguousarray(run["features"], dtype=np.float64))}
    if run["example"] is not None:
        arrays["example"] = torch.from_numpy(np.ascontiguousarray(run["example"]))
    fileio.save_tensors(folder / "arrays.safetensors", arrays)  # arrays first: run.json marks the run complete
    fileio.write_json(folder / "run.json", {"records": run["records"], "seconds": run["seconds"]})


def find_checkpoints(checkpoints: str | Path, variants,
                     name_pattern: str = EvalConfig.name_pattern) -> tuple[dict[str, Path], dict[str, str]]:
    """Checkpoint folder per requested variant (full+mg uses full's) and why the others are skipped."""
    found, skipped = {}, {}
    for v in variants:
        path = Path(checkpoints) / name_pattern.replace("{variant}", checkpoint_of(v))
        if (path / "config.json").is_file() and (path / "harivo.safetensors").is_file():
            found[v] = path
        else:
            skipped[v] = f"no checkpoint at {path} (config.json and harivo.safetensors)"
    return found, skipped


# (here, not in eval_metrics: that file's bytes are part of the run cache key, see judging_code_digest)
def bootstrap_avg(records: list[dict], resamples: int = 200, confidence: float = 0.95,
                  seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of Table A2's AVG (`percentages(...)["avg"]`): videos resampled with
    replacement. (nan, nan) without videos; (avg, avg) with resamples < 1."""
    if not records:
        return float("nan"), float("nan")
    answers = np.array([[bool(r[q]) for q in QUESTIONS] for r in records], dtype=np.float64)  # (n, 4)
    point = 100.0 * float(answers.mean())
    if resamples < 1:
        return point, point
    rng = np.random.default_rng(seed)
    n = len(answers)
    values = 100.0 * answers[rng.integers(0, n, (resamples, n))].mean(axis=(1, 2))
    lo, hi = np.quantile(values, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


def row_result(run: dict, ref_mu, ref_sigma, cfg: EvalConfig, split_refs: dict | None = None) -> dict:
    """Table scores, FVD + bootstrap CI, the AVG's bootstrap CI and the per-verb breakdown of one run. With
    `split_refs` ({"seen": (mu, sigma), "held_out": (mu, sigma)}: the reference videos of that split's prompts)
    the seen / held-out sub-dicts get their own FVD, FVD CI and AVG CI."""
    records, feats = run["records"], run["features"]
    fvd = frechet_distance(*feature_stats(feats), ref_mu, ref_sigma)
    ci = bootstrap_fd(feats, ref_mu, ref_sigma, cfg.bootstrap, cfg.confidence, seed=cfg.prompt_seed)
    out = {**table_scores(records), "fvd": fvd, "fvd_ci": list(ci), "seconds": run["seconds"],
           "avg_ci": list(bootstrap_avg(records, cfg.bootstrap, cfg.confidence, seed=cfg.prompt_seed)),
           "by_motion": motion_breakdown(records, feats)}
    for split in ("seen", "held_out"):
        mask = np.array([bool(r["held_out"]) == (split == "held_out") for r in records])
        sub = [r for r, m in zip(records, mask) if m]
        out[split]["avg_ci"] = list(bootstrap_avg(sub, cfg.bootstrap, cfg.confidence, seed=cfg.prompt_seed))
        if split_refs and split in split_refs and mask.sum() >= 2:
            mu, sigma = split_refs[split]
            out[split]["fvd"] = frechet_distance(*feature_stats(feats[mask]), mu, sigma)
            out[split]["fvd_ci"] = list(bootstrap_fd(feats[mask], mu, sigma, cfg.bootstrap, cfg.confidence,
                                                     seed=cfg.prompt_seed))
    return out


def load_row(path: Path, cfg: EvalConfig) -> tuple[HarivoPipeline, str]:
    """A row's pipeline and its weights' fingerprint (for the run cache); ValueError when its checkpoint records
    another world than the one the evaluation reads videos in."""
    pipe = HarivoPipeline.from_checkpoint(path)
    if pipe.world is not None and pipe.world != cfg.thresholds.world:
        raise ValueError(f"world: {path} was trained in {pipe.world.version!r}, the evaluation reads "
                         f"{cfg.thresholds.world.version!r} (pass --world)")
    return pipe, (weights_fingerprint(pipe) if cfg.cache_dir else "")


def _timing(runs: dict, total: float) -> dict:
    n_videos = sum(len(r["records"]) for r in runs.values())
    return {"total_s": total, "videos_generated": n_videos,
            "videos_from_cache": sum(len(r["records"]) for r in runs.values() if r.get("cached")),
            "per_video_s": sum(r["seconds"] for r in runs.values()) / max(n_videos, 1),
            "per_run_s": {_run_name(r): runs[r]["seconds"] for r in runs}}


def evaluate(cfg: EvalConfig) -> tuple[dict, dict[str, np.ndarray]]:
    """Run the whole evaluation; returns the JSON summary and one example video per row (for the report)."""
    cfg.validate()
    found, skipped = find_checkpoints(cfg.checkpoints, cfg.variants, cfg.name_pattern)
    paths = {checkpoint_of(v): path for v, path in found.items()}  # checkpoint -> its folder
    for v, why in skipped.items():
        print(f"skipping variant {v!r}: {why}", file=sys.stderr)
    if not found:
        raise ValueError(f"checkpoints: no HARIVO checkpoint for any of {list(cfg.variants)} under "
                         f"{cfg.checkpoints!r} (train them with `python -m harivo.train --variant V`)")
    specs = eval_prompts(cfg.seen_prompts, cfg.held_out_prompts, cfg.prompt_seed)
    seeds = list(range(cfg.seeds))
    sweep_seeds = cfg.sweep_seeds or cfg.seeds
    started = time.perf_counter()
    pipes: dict[str, tuple[HarivoPipeline, str]] = {}
    runs: dict[RunSpec, dict] = {}

    def get(run: RunSpec, desc: str) -> dict:
        if run not in runs:
            if run.checkpoint not in pipes:
                pipes[run.checkpoint] = load_row(paths[run.checkpoint], cfg)
            pipe, fingerprint = pipes[run.checkpoint]
            key = run_cache_key(fingerprint, run, specs, cfg)
            runs[run] = load_cached_run(cfg.cache_dir, key) if cfg.cache_dir else None
            if runs[run] is None:
                runs[run] = run_videos(pipe, run, specs, cfg, desc)
                if cfg.cache_dir:
                    save_cached_run(cfg.cache_dir, key, runs[run])
            else:
                print(f"{desc}: {len(runs[run]['records'])} videos from the cache ({cfg.cache_dir}/{key})",
                      file=sys.stderr)
        return runs[run]

    rows = {v: RunSpec(checkpoint_of(v), cfg.mg_alpha if v == "full+mg" else 0.0, cfg.cfg, cfg.seeds)
            for v in cfg.variants if v in found}
    for v, run in rows.items():
        get(run, v)
    sweep_on = cfg.sweep and {"full", "full+mg"} & set(found)
    sweep = {a: RunSpec("full", a, cfg.cfg, sweep_seeds) for a in cfg.alphas} if sweep_on else {}
    cfg_runs = {"schedule": RunSpec("full", cfg.mg_alpha, cfg.cfg, sweep_seeds),
                "constant": RunSpec("full", cfg.mg_alpha, CFGSchedule.constant(cfg.constant_cfg), sweep_seeds)
                } if sweep_on else {}
    for run in (*sweep.values(), *cfg_runs.values()):
        get(run, f"full α={run.mg_alpha:g} CFG {run.cfg.high:g}→{run.cfg.low:g}")

    frames, size = runs[next(iter(rows.values()))]["example"].shape[:2]
    ref = fvd_reference(specs, cfg, frames, size)
    scored = {run: row_result(r, ref["mu"], ref["sigma"], cfg, ref["splits"] if run in rows.values() else None)
              for run, r in tqdm(runs.items(), desc="FVD bootstrap")}

    variants = {v: {**scored[run], "table1_row": TABLE1_ROW[v], "mg_alpha": run.mg_alpha,
                    "videos": runs[run]["records"]} for v, run in rows.items()}
    alpha_sweep = [{"alpha": a, **{k: x for k, x in scored[run].items() if k not in ("seen", "held_out")}}
                   for a, run in sweep.items()]
    cfg_schedule = {name: {**asdict(run.cfg), **scored[run]} for name, run in cfg_runs.items()}
    if cfg_schedule:
        cfg_schedule.update(variant="full", mg_alpha=cfg.mg_alpha)
    results = {
        "variants": variants,
        "skipped_variants": skipped,
        "alpha_sweep": alpha_sweep,
        "cfg_schedule": cfg_schedule,
        "real_floor_fvd": ref["floor"],
        "real_floor_fvd_ci": list(ref["floor_ci"]),
        "real_by_motion": ref["by_motion"],
        "thresholds": {**asdict(cfg.thresholds), "frame_size_px": int(size)},
        "prompts": [{"prompt": s.caption, "held_out": is_held_out(s)} for s in specs],
        "seeds": seeds,
        "fvd_features": list(FEATURE_NAMES),
        "versions": versions(),
        "world": cfg.thresholds.world.record(),  # the shapes world the checker and the FVD reference read
        "command": command_line(cfg),
        "settings": {**{k: v for k, v in asdict(cfg).items() if k != "thresholds"}, "num_frames": int(frames),
                     "reference_videos": len(specs) * cfg.reference_seeds, "videos_per_row": len(specs) * len(seeds),
                     "videos_per_sweep_row": len(specs) * sweep_seeds},
        "timing": _timing(runs, time.perf_counter() - started),
    }
    examples = {"generator": render_video(specs[_example_index(specs)], 0, frames, size, cfg.thresholds.world)[0]}
    examples.update({v: runs[run]["example"] for v, run in rows.items()})
    return results, examples


def fvd_reference(specs: list[ShapeSpec], cfg: EvalConfig, frames: int, size: int) -> dict:
    """Table 1 analog: the reference (generator videos of the same prompts: mean, covariance, per verb, and per
    seen / held-out split) and the real-data floor (another generator set as large as a variant's)."""
    ref_feats = reference_features(specs, cfg.reference_seeds, 1, frames, size, cfg.thresholds)
    mu, sigma = feature_stats(ref_feats)
    by_motion = motion_breakdown([{"prompt": s.caption} for s in specs for _ in range(cfg.reference_seeds)], ref_feats)
    floor_feats = reference_features(specs, cfg.seeds, 2, frames, size, cfg.thresholds)
    floor = frechet_distance(*feature_stats(floor_feats), mu, sigma)
    floor_ci = bootstrap_fd(floor_feats, mu, sigma, cfg.bootstrap, cfg.confidence, seed=cfg.prompt_seed)
    held = np.array([is_held_out(s) for s in specs for _ in range(cfg.reference_seeds)])
    splits = {split: feature_stats(ref_feats[mask]) for split, mask in (("seen", ~held), ("held_out", held))
              if mask.sum() >= 2}
    return {"mu": mu, "sigma": sigma, "by_motion": by_motion, "floor": floor, "floor_ci": floor_ci, "splits": splits}


def _example_index(specs: list[ShapeSpec]) -> int:
    return next((i for i, s in enumerate(specs) if is_held_out(s)), 0)


def _run_name(run: RunSpec) -> str:
    return f"{run.checkpoint} α={run.mg_alpha:g} cfg={run.cfg.high:g}→{run.cfg.low:g}@{run.cfg.switch:g}"
