"""Evaluation (Table A2 / Table 1 analogs): Fréchet distance against closed forms, the bootstrap interval,
scores of hand-made generator videos, the real-data floor, and the report on tiny and stub runs."""

import json
import shutil
import zlib
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

from harivo import evaluate
from harivo.evaluate import cli
from harivo.evaluate import report as eval_report
from harivo.data import shapes
from harivo.data.checker import DEFAULT_THRESHOLDS, Thresholds
from harivo.data.shapes import BACKGROUNDS, HELD_OUT, MOTIONS, ShapeSpec, all_specs, is_held_out, render_video
from harivo.evaluate.metrics import FEATURE_NAMES, QUESTIONS, score_video, video_features
from harivo.evaluate.report import fmt_fvd, fmt_pct
from harivo.evaluate.stats import (
    bootstrap_fd,
    feature_stats,
    frechet_distance,
    percentages,
    reference_features,
    table_scores,
    translation_summary,
)
from harivo.evaluate import eval_prompts
from harivo.sampling import MGConfig
from harivo.tiny import save_tiny_checkpoint

SPEC = ShapeSpec("red", "square", "moving left to right", "gray")


def feature(name: str, features: np.ndarray) -> float:
    return float(features[FEATURE_NAMES.index(name)])


# ------------------------------------------------------------------------------------------------ Fréchet distance
def test_frechet_distance_1d_closed_form():
    # (μ1 − μ2)² + σ1² + σ2² − 2 σ1 σ2 with σ1 = 2, σ2 = 3: 4 + 4 + 9 − 12 = 5
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(5.0, abs=1e-9)
    assert frechet_distance(1.0, 4.0, 3.0, 9.0) == pytest.approx(5.0, abs=1e-9)  # scalars are 1-D
    assert frechet_distance(2.0, 0.25, 2.0, 0.25) == pytest.approx(0.0, abs=1e-12)


def test_frechet_distance_diagonal_and_full_covariances():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    v1, v2 = rng.uniform(0.1, 2.0, 5), rng.uniform(0.1, 2.0, 5)
    closed = np.sum((mu1 - mu2) ** 2 + v1 + v2 - 2 * np.sqrt(v1 * v2))
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(closed, rel=1e-9)
    # full covariances: tr((Σ1 Σ2)^½) = tr((Σ1^½ Σ2 Σ1^½)^½), the symmetric form, by eigendecomposition
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    w, q = np.linalg.eigh(s1)
    r1 = q @ np.diag(np.sqrt(w)) @ q.T
    inner = np.sqrt(np.clip(np.linalg.eigvalsh(r1 @ s2 @ r1), 0, None)).sum()
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * inner
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-8)


def test_frechet_distance_singular_covariances_are_safe():
    # rank-1 covariances (fewer videos than features): finite, >= 0, equal to the closed form
    u = np.array([1.0, 0.0, 0.0])
    s1, s2 = 4.0 * np.outer(u, u), 9.0 * np.outer(u, u)
    assert frechet_distance(np.zeros(3), s1, np.zeros(3), s2) == pytest.approx(1.0, abs=1e-6)  # (2 − 3)²
    v = np.array([0.0, 1.0, 0.0])
    fd = frechet_distance(np.zeros(3), s1, np.zeros(3), np.outer(v, v))  # orthogonal supports: 4 + 1
    assert np.isfinite(fd) and fd == pytest.approx(5.0, abs=1e-5)


def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="sigma2"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(3))
    with pytest.raises(ValueError, match="mu2"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(2))
    with pytest.raises(ValueError, match="features"):
        feature_stats(np.zeros((1, 4)))


def test_bootstrap_interval_contains_estimate_and_is_deterministic():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(400, 3))
    mu, sig = feature_stats(ref)
    shifted = rng.normal(loc=0.5, size=(60, 3))
    point = frechet_distance(*feature_stats(shifted), mu, sig)
    lo, hi = bootstrap_fd(shifted, mu, sig, resamples=200, seed=0)
    assert lo < point < hi and lo >= 0.0
    assert (lo, hi) == bootstrap_fd(shifted, mu, sig, resamples=200, seed=0)
    assert (lo, hi) != bootstrap_fd(shifted, mu, sig, resamples=200, seed=1)
    assert bootstrap_fd(shifted, mu, sig, resamples=0) == (point, point)
    # more videos, a narrower interval
    lo_big, hi_big = bootstrap_fd(rng.normal(loc=0.5, size=(600, 3)), mu, sig, resamples=200, seed=0)
    assert hi_big - lo_big < 0.5 * (hi - lo)
    # a wider confidence level, a wider interval
    lo99, hi99 = bootstrap_fd(shifted, mu, sig, resamples=200, confidence=0.99, seed=0)
    assert lo99 <= lo and hi99 >= hi


# ------------------------------------------------------------------------------------------------ scores
@pytest.fixture(scope="module")
def hand_made():
    """A generator video, the same with its frames shuffled (alternately from the two ends: jumps all the way, no
    net motion), and with the object vanishing in frame 7."""
    good, _ = render_video(SPEC, 3)
    shuffled = good[np.stack([np.arange(8), 15 - np.arange(8)], axis=1).ravel()]
    vanish = good.copy()
    vanish[7] = np.array(BACKGROUNDS[SPEC.background], np.uint8)
    return {"good": good, "shuffled": shuffled, "vanish": vanish}


def test_scores_of_hand_made_videos(hand_made):
    scores = {k: score_video(v, SPEC) for k, v in hand_made.items()}
    assert {q: scores["good"][q] for q in QUESTIONS} == dict.fromkeys(QUESTIONS, True)
    assert scores["shuffled"]["content"] and scores["shuffled"]["non_weird"]
    assert not scores["shuffled"]["smooth"] and not scores["shuffled"]["action"]
    assert scores["vanish"]["content"] and scores["vanish"]["action"]
    assert not scores["vanish"]["non_weird"] and not scores["vanish"]["smooth"]  # the vanished frame also flickers
    # float frames in [0, 1] (the pipeline's output) score like uint8 ones
    as_float = score_video(hand_made["good"].astype(np.float32) / 255.0, SPEC)
    assert all(as_float[q] for q in QUESTIONS)
    assert np.allclose(as_float["features"], scores["good"]["features"], atol=1e-3)

    records = [{**scores["good"], "held_out": False}, {**scores["shuffled"], "held_out": False},
               {**scores["vanish"], "held_out": True}]
    t = table_scores(records)
    assert t["content"] == 100.0 and t["n"] == 3
    assert t["action"] == pytest.approx(200 / 3) and t["smooth"] == pytest.approx(100 / 3)
    assert t["non_weird"] == pytest.approx(200 / 3)
    assert t["avg"] == pytest.approx((100 + 200 / 3 + 100 / 3 + 200 / 3) / 4)
    assert t["seen"] == {"content": 100.0, "action": 50.0, "smooth": 50.0, "non_weird": 100.0, "avg": 75.0, "n": 2,
                         "action_kind": 50.0}  # shuffled: no motion of any kind
    assert t["held_out"] == {"content": 100.0, "action": 100.0, "smooth": 0.0, "non_weird": 0.0, "avg": 50.0, "n": 1,
                             "action_kind": 100.0}
    assert all(isinstance(scores[k]["action_kind"], bool) for k in scores)
    empty = percentages([])
    assert empty["n"] == 0 and np.isnan(empty["avg"]) and fmt_pct(empty["avg"]) == "–"
    assert np.isnan(empty["action_kind"])


def test_features_are_deterministic_and_see_the_glitches(hand_made):
    good = video_features(hand_made["good"])
    assert good.shape == (len(FEATURE_NAMES),) and np.array_equal(good, video_features(hand_made["good"]))
    # colours in [0, 1] units: red object on gray
    assert np.allclose(good[:6], np.array([220, 40, 40, 128, 128, 128]) / 255.0, atol=0.01)
    # the generator stays under every glitch threshold (features in threshold units)
    for name in ("max_step", "max_size_step", "max_angle_step", "flicker", "noise"):
        assert 0.0 <= feature(name, good) < 1.0, name
    assert feature("one_object", good) == 1.0 and feature("shift_x", good) > 0.12
    shuffled, vanish = video_features(hand_made["shuffled"]), video_features(hand_made["vanish"])
    assert feature("max_step", shuffled) > 1.0 and abs(feature("shift_x", shuffled)) < 0.12
    assert feature("one_object", vanish) == pytest.approx(15 / 16) and feature("flicker", vanish) > 1.0
    blank = np.zeros((4, 32, 32, 3), np.float32)  # no object at all: finite and bounded
    f = video_features(blank)
    assert np.all(np.isfinite(f)) and np.all(np.abs(f) <= 10.0) and feature("one_object", f) == 0.0


def test_real_data_floor_is_small_against_noise_videos():
    specs = eval_prompts(4, 2)
    mu, sig = feature_stats(reference_features(specs, 4, 1, 16, 32))
    floor_feats = reference_features(specs, 2, 2, 16, 32)
    floor = frechet_distance(*feature_stats(floor_feats), mu, sig)
    noise = np.array([video_features(np.random.default_rng(i).random((16, 32, 32, 3)).astype(np.float32))
                      for i in range(len(floor_feats))])
    noise_fd = frechet_distance(*feature_stats(noise), mu, sig)
    assert floor < 1.0 and noise_fd > 50.0 and floor < 0.01 * noise_fd
    # the same generator seeds give the same set (the reference is deterministic)
    assert np.array_equal(floor_feats, reference_features(specs, 2, 2, 16, 32))


def test_eval_prompts_are_fixed_and_split():
    specs = eval_prompts(16, 10)
    assert specs == eval_prompts(16, 10) and len(specs) == 26 and len(set(specs)) == 26
    seen, held = specs[:16], specs[16:]
    assert all(s in all_specs("train") for s in seen) and not any(is_held_out(s) for s in seen)
    assert [(s.colour, s.shape, s.motion) for s in held] == list(HELD_OUT)
    assert sorted(s.motion for s in seen) == sorted(MOTIONS * 2)  # two prompts per motion
    assert all(s.background != s.colour for s in specs)
    q = evaluate.quick_config()
    assert (q.seen_prompts, q.held_out_prompts, q.seeds, q.steps, q.quick) == (6, 3, 2, 12, True)


# ------------------------------------------------------------------------------------------------ report
def table_row(markdown: str, section: str, first_cell: str) -> list[str]:
    """The cells of the row starting with `first_cell` in the table after heading `section`."""
    text = markdown.split(section, 1)[1]
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} under {section!r}")


def check_report_matches_json(md: str, results: dict) -> None:
    keys = ("content", "action_kind", "action", "smooth", "non_weird", "avg")  # the report's column order
    for name, row in results["variants"].items():
        cells = table_row(md, "## Table A2 analog", name)
        assert cells[2:8] == [fmt_pct(row[k]) for k in keys], name
        lo, hi = row["fvd_ci"]
        assert cells[8] == fmt_fvd(row["fvd"]) and cells[9] == f"{fmt_fvd(lo)}–{fmt_fvd(hi)}"
        assert len(cells) == 12
        for split, heading in (("seen", "### Seen prompts"), ("held_out", "### Held-out prompts")):
            cells = table_row(md, heading, name)
            assert cells[1] == str(row[split]["n"]) and cells[2:8] == [fmt_pct(row[split][k]) for k in keys]
            lo, hi = row[split]["avg_ci"]
            assert cells[8] == f"{fmt_pct(lo)}–{fmt_pct(hi)}" and lo <= row[split]["avg"] <= hi
            if "fvd" in row[split]:
                lo, hi = row[split]["fvd_ci"]
                assert cells[9] == fmt_fvd(row[split]["fvd"]) and cells[10] == f"{fmt_fvd(lo)}–{fmt_fvd(hi)}"
    for r in results["alpha_sweep"]:
        cells = table_row(md, "## Sensitivity: MG α", f"{r['alpha']:g}")
        assert cells[1:7] == [fmt_pct(r[k]) for k in keys] and cells[7] == fmt_fvd(r["fvd"])
    assert f"**{fmt_fvd(results['real_floor_fvd'])}**" in md
    for name, row in results["variants"].items():
        cells = table_row(md, "### Action per verb", name)
        by = row["by_motion"]
        assert sum(b["n"] for b in by.values()) == row["n"]
        for m, b in by.items():
            assert f"{fmt_pct(b['action'])} / {eval_report.fmt_along(b['along'])}" in cells, (name, m)
        pooled = translation_summary(by)
        if pooled["n"]:
            cells = table_row(md, "**Translations, any direction.**", name)
            assert cells[1:] == [f"{pooled['moved']:.2f}", fmt_pct(pooled["right_way"])], name
    for p in results["prompts"]:
        assert p["prompt"] in md


def check_results_structure(results: dict, n_seen: int, n_held: int, seeds: int) -> None:
    for row in results["variants"].values():
        assert set(QUESTIONS) | {"avg", "fvd", "fvd_ci", "seen", "held_out", "n"} <= set(row)
        assert all(0.0 <= row[k] <= 100.0 for k in QUESTIONS)
        assert row["avg"] == pytest.approx(np.mean([row[k] for k in QUESTIONS]))
        assert row["seen"]["n"] == n_seen * seeds and row["held_out"]["n"] == n_held * seeds
        for k in QUESTIONS:  # overall = video-weighted mean of the splits
            seen, held = row["seen"], row["held_out"]
            assert row[k] * row["n"] == pytest.approx(seen[k] * seen["n"] + held[k] * held["n"])
        lo, hi = row["fvd_ci"]
        assert 0.0 <= lo <= row["fvd"] <= hi
        assert len(row["videos"]) == (n_seen + n_held) * seeds
    assert results["seeds"] == list(range(seeds))
    assert [p["held_out"] for p in results["prompts"]] == [False] * n_seen + [True] * n_held
    assert {k: v for k, v in results["thresholds"].items() if k != "frame_size_px"} == asdict(DEFAULT_THRESHOLDS)
    assert results["real_floor_fvd"] >= 0.0 and len(results["real_floor_fvd_ci"]) == 2
    assert {"total_s", "per_video_s", "per_run_s", "videos_generated"} <= set(results["timing"])
    for r in results["alpha_sweep"]:
        assert set(QUESTIONS) | {"alpha", "avg", "fvd"} <= set(r)
    assert {"schedule", "constant", "variant", "mg_alpha"} <= set(results["cfg_schedule"])


class StubPipeline:
    """Stands in for a trained model: returns generator videos for the prompt, broken the variant's way."""

    calls: ClassVar[list] = []  # (variant, prompt, seed, α, CFG schedule) of every video asked for

    def __init__(self, variant: str):
        self.variant, self.world = variant, None  # a checkpoint that records no world

    def __call__(self, s):
        StubPipeline.calls.append((self.variant, s.prompt, s.seed, s.mg.alpha if s.mg.enabled else 0.0,
                                   getattr(s, "cfg", None)))
        spec = ShapeSpec.from_caption(s.prompt)
        video, _ = render_video(spec, zlib.crc32(s.prompt.encode()) + s.seed, s.num_frames, 32)
        if self.variant == "baseline":  # flicker and no clear motion
            video = video[np.random.default_rng(s.seed).permutation(len(video))]
        elif s.mg.enabled and s.mg.alpha >= 150:  # "over-smooth" (Fig. 6c): the object never moves
            video = np.repeat(video[:1], len(video), axis=0)
        return SimpleNamespace(frames=video.astype(np.float32) / 255.0)


def stub_checkpoints(tmp_path, monkeypatch, pattern="harivo-shapes-{variant}"):
    """baseline and full folders with the files find_checkpoints looks for; loading one gives a StubPipeline."""
    ckpts = tmp_path / "ckpts"
    names = {pattern.replace("{variant}", v): v for v in ("baseline", "full")}
    for name in names:
        (ckpts / name).mkdir(parents=True)
        (ckpts / name / "config.json").write_text("{}")
        (ckpts / name / "harivo.safetensors").write_text("")
    monkeypatch.setattr(evaluate.HarivoPipeline, "from_checkpoint", lambda path: StubPipeline(names[Path(path).name]))
    return ckpts


def test_evaluate_numbers_on_stub_models(tmp_path, monkeypatch):
    ckpts = stub_checkpoints(tmp_path, monkeypatch)
    StubPipeline.calls = []
    cfg = evaluate.EvalConfig(checkpoints=str(ckpts), seen_prompts=8, held_out_prompts=2, seeds=2,
                              alphas=(0.0, 40.0, 300.0), reference_seeds=3, bootstrap=50, cache_dir="")
    results, examples = evaluate.evaluate(cfg)
    n_calls = len(StubPipeline.calls)
    check_results_structure(results, 8, 2, 2)
    v = results["variants"]
    assert list(v) == ["baseline", "full", "full+mg"] and set(results["skipped_variants"]) == {"trs-dc", "mapping"}
    for name in ("full", "full+mg"):  # generator videos pass everything
        assert all(v[name][k] == 100.0 for k in (*QUESTIONS, "avg")), name
    specs = eval_prompts(8, 2)
    still = 100.0 * sum(s.motion == "standing still" for s in specs) / len(specs)
    assert v["baseline"]["content"] == 100.0 and v["baseline"]["non_weird"] == 100.0
    assert v["baseline"]["smooth"] == pytest.approx(still)  # only a shuffled still video stays smooth
    # every number is the checker's verdict on exactly the prompts × seeds the stub was asked for
    stub = StubPipeline("baseline")
    direct = [score_video(stub(SimpleNamespace(prompt=s.caption, seed=seed, num_frames=16, mg=MGConfig())).frames, s)
              for s in specs for seed in (0, 1)]
    assert {k: v["baseline"][k] for k in QUESTIONS} == {k: percentages(direct)[k] for k in QUESTIONS}
    assert 0.0 < v["baseline"]["action"] < 100.0
    # FVD: generator videos sit near the floor, shuffled ones far above
    assert v["full"]["fvd"] < 3 * results["real_floor_fvd"] + 1.0 < v["baseline"]["fvd"] / 5
    # the α sweep: α = 0 is the full row, α = 40 the full+mg row (same runs), α = 300 loses the motion
    sweep = {r["alpha"]: r for r in results["alpha_sweep"]}
    assert sweep[0.0]["fvd"] == v["full"]["fvd"] and sweep[40.0]["fvd"] == v["full+mg"]["fvd"]
    assert sweep[300.0]["action"] == pytest.approx(still) and sweep[300.0]["content"] == 100.0
    assert results["cfg_schedule"]["schedule"]["avg"] == v["full+mg"]["avg"] == 100.0
    assert results["cfg_schedule"]["constant"]["low"] == 7.5 and results["cfg_schedule"]["schedule"]["high"] == 12.5
    # each distinct way of sampling runs once: baseline, full α0, full α40, full α300, full α40 constant CFG
    assert n_calls == 5 * len(specs) * 2 == results["timing"]["videos_generated"]
    assert list(examples) == ["generator", "baseline", "full", "full+mg"]

    report = eval_report.write_report(results, examples, tmp_path / "out")
    check_report_matches_json(report.read_text(), json.loads(json.dumps(results)))


def test_rows_are_found_by_the_name_pattern(tmp_path, monkeypatch):
    ckpts = stub_checkpoints(tmp_path, monkeypatch, pattern="harivo-band-{variant}-verb")
    (ckpts / "harivo-shapes-mapping").mkdir()  # another family's row: not this pattern's
    (ckpts / "harivo-shapes-mapping" / "config.json").write_text("{}")
    (ckpts / "harivo-shapes-mapping" / "harivo.safetensors").write_text("")
    found, skipped = evaluate.find_checkpoints(ckpts, evaluate.EVAL_VARIANTS, "harivo-band-{variant}-verb")
    assert found == {"baseline": ckpts / "harivo-band-baseline-verb", "full": ckpts / "harivo-band-full-verb",
                     "full+mg": ckpts / "harivo-band-full-verb"}
    assert set(skipped) == {"trs-dc", "mapping"}
    StubPipeline.calls = []
    cfg = evaluate.EvalConfig(checkpoints=str(ckpts), name_pattern="harivo-band-{variant}-verb", seen_prompts=2,
                              held_out_prompts=1, seeds=1, sweep=False, variants=("baseline", "full+mg"),
                              reference_seeds=2, bootstrap=0, cache_dir="")
    results, _ = evaluate.evaluate(cfg)
    assert {(c[0], c[3]) for c in StubPipeline.calls} == {("baseline", 0.0), ("full", 40.0)}
    assert results["settings"]["name_pattern"] == "harivo-band-{variant}-verb"
    assert results["world"] == shapes.WORLD.record()
    md = eval_report.write_report(results, {}, tmp_path / "out").read_text()
    command = (f"python -m harivo.evaluate --checkpoints {ckpts} --name-pattern 'harivo-band-{{variant}}-verb' "
               "--variants baseline,full+mg --seen-prompts 2 --held-out-prompts 1 --seeds 1 --reference-seeds 2 "
               "--bootstrap 0 --no-sweep")
    assert results["command"] == command and f"`{command}`: 3 prompts" in md
    args = cli.build_parser().parse_args(command.replace("'", "").split()[3:])  # the command reruns cfg
    again = cli.config_from_args(args)
    where = ("cache_dir",)  # where earlier runs are kept, not what is measured (the rows' folder is in the command)
    assert {k: v for k, v in asdict(again).items() if k not in where} == \
        {k: v for k, v in asdict(cfg).items() if k not in where}
    assert f"World `{shapes.WORLD.version}`" in md
    for bad in ("harivo-shapes", "{variant}-{variant}", "x/{variant}"):
        with pytest.raises(ValueError, match="name_pattern"):
            evaluate.EvalConfig(name_pattern=bad).validate()


def test_finished_runs_are_reused_from_the_cache(tmp_path, monkeypatch):
    ckpts = stub_checkpoints(tmp_path, monkeypatch)
    monkeypatch.setattr(evaluate, "weights_fingerprint", lambda pipe: f"weights of {pipe.variant}")
    base = dict(checkpoints=str(ckpts), seen_prompts=3, held_out_prompts=1, seeds=2, alphas=(0.0, 300.0),
                reference_seeds=2, bootstrap=10, cache_dir=str(tmp_path / "cache"), sweep_seeds=1)
    StubPipeline.calls = []
    first, _ = evaluate.evaluate(evaluate.EvalConfig(**base, variants=("full",)))
    # full (4 prompts x 2 seeds) + the sweep's own 4 runs with 1 seed: α 0, α 300, α 40 schedule and constant
    assert len(StubPipeline.calls) == 4 * 2 + 4 * 4 and first["timing"]["videos_from_cache"] == 0
    assert first["settings"]["videos_per_sweep_row"] == 4 and len(first["alpha_sweep"]) == 2
    StubPipeline.calls = []
    second, _ = evaluate.evaluate(evaluate.EvalConfig(**base, variants=("baseline", "full")))
    assert {c[0] for c in StubPipeline.calls} == {"baseline"} and len(StubPipeline.calls) == 4 * 2  # only the new row
    assert second["timing"]["videos_from_cache"] == 4 * 2 + 4 * 4
    for k in ("content", "action", "smooth", "non_weird", "fvd", "videos"):
        assert second["variants"]["full"][k] == first["variants"]["full"][k], k
    assert second["alpha_sweep"] == first["alpha_sweep"]
    StubPipeline.calls = []  # another setting is another key: redone
    evaluate.evaluate(evaluate.EvalConfig(**{**base, "steps": 7}, variants=("full",), sweep=False))
    assert len(StubPipeline.calls) == 4 * 2
    StubPipeline.calls = []  # so is other judging code (the checker's declared version bumped): redone
    monkeypatch.setattr(evaluate, "JUDGE_VERSION", "judge-next")
    evaluate.evaluate(evaluate.EvalConfig(**base, variants=("full",), sweep=False))
    assert len(StubPipeline.calls) == 4 * 2


def test_the_run_cache_is_keyed_on_the_declared_judging_version_and_the_world():
    """Cached videos are re-judged when the checker declares another version (`checker.JUDGE_VERSION`) or reads
    another world, not when a file's bytes change (a comment, a split of a module)."""
    from harivo.data.checker import Thresholds
    from harivo.data.shapes import World

    spec = evaluate.RunSpec("full", 0.0, evaluate.CFGSchedule(), 1)
    specs = evaluate.eval_prompts(2, 1)
    cfg = evaluate.EvalConfig()
    key = evaluate.run_cache_key("w", spec, specs, cfg)
    assert key == evaluate.run_cache_key("w", spec, specs, evaluate.EvalConfig())
    assert key != evaluate.run_cache_key("w", spec, specs, evaluate.EvalConfig(thresholds=Thresholds(
        world=World(band_px=0))))
    import harivo.evaluate as module

    saved = module.JUDGE_VERSION
    try:
        module.JUDGE_VERSION = "judge-next"
        assert key != evaluate.run_cache_key("w", spec, specs, cfg)
    finally:
        module.JUDGE_VERSION = saved


def make_tiny_checkpoints(root, variants=("baseline", "full")):
    harivo = save_tiny_checkpoint(root, num_frames=4)
    for v in variants:
        shutil.copytree(harivo, root / f"harivo-shapes-{v}")
    shutil.rmtree(harivo)
    return root


def test_cli_on_tiny_random_checkpoints(tmp_path, capsys):
    ckpts = make_tiny_checkpoints(tmp_path / "ckpts")
    out, js = tmp_path / "eval", tmp_path / "summary.json"
    rc = cli.main(["--checkpoints", str(ckpts), "--out-dir", str(out), "--json", str(js), "--seen-prompts", "2",
                        "--held-out-prompts", "1", "--seeds", "2", "--steps", "2", "--frames", "4",
                        "--alphas", "0,40,300", "--reference-seeds", "3", "--bootstrap", "20",
                        "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "skipping variant 'trs-dc'" in err and "skipping variant 'mapping'" in err
    results = json.loads(js.read_text())
    check_results_structure(results, 2, 1, 2)
    assert list(results["variants"]) == ["baseline", "full", "full+mg"]
    assert [r["alpha"] for r in results["alpha_sweep"]] == [0.0, 40.0, 300.0]
    assert results["settings"]["num_frames"] == 4 and results["thresholds"]["frame_size_px"] == 16
    # baseline and full are copies of one checkpoint: same videos, same numbers
    assert results["variants"]["baseline"]["fvd"] == results["variants"]["full"]["fvd"]
    check_report_matches_json((out / "report.md").read_text(), results)
    for png in ("table_a2", "fvd", "alpha_sweep", "examples"):
        with Image.open(out / f"{png}.png") as im:
            assert im.format == "PNG" and min(im.size) > 50
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporaries


@pytest.mark.parametrize(
    "argv,argument",
    [
        (["--variants", "full,nope"], "variants"),
        (["--seeds", "0"], "seeds"),
        (["--held-out-prompts", "11"], "held_out_prompts"),
        (["--alphas", "1,x"], "alphas"),
        (["--alphas", "-1"], "alphas"),
        (["--steps", "0"], "steps"),
    ],
)
def test_cli_bad_input_exits_2_naming_the_argument(argv, argument, tmp_path, capsys):
    assert cli.main(["--checkpoints", str(tmp_path), "--out-dir", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {argument}:") and "Traceback" not in err


def test_cli_without_any_checkpoint_exits_with_a_clear_error(tmp_path, capsys):
    argv = ["--checkpoints", str(tmp_path), "--variants", "baseline,full+mg", "--out-dir", str(tmp_path / "o")]
    rc = cli.main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and "error: checkpoints: no HARIVO checkpoint" in err and str(tmp_path) in err
    assert "harivo-shapes-full" in err  # full+mg is looked for under full's folder
    assert not (tmp_path / "o").exists()


def test_report_states_the_thresholds_it_was_given():
    T = Thresholds(max_step=0.11, max_size_step=1.2, max_angle_step=25.0, max_flicker=0.07, min_translation=0.2,
                   max_area_ratio=1.7)  # not the defaults: the report must print what was used
    results = {
        "settings": {"quick": True, "videos_per_row": 2, "num_frames": 16, "steps": 12, "bootstrap": 0,
                     "reference_videos": 2, "cfg": {"high": 12.5, "low": 7.5, "switch": 0.7}},
        "prompts": [{"prompt": SPEC.caption, "held_out": False}], "seeds": [0, 1], "skipped_variants": {},
        "timing": {"total_s": 1.0, "per_video_s": 0.5}, "thresholds": {**asdict(T), "frame_size_px": 48},
        "variants": {}, "real_floor_fvd": 0.0, "real_floor_fvd_ci": [0.0, 0.0], "fvd_features": list(FEATURE_NAMES),
        "alpha_sweep": [], "cfg_schedule": {},
    }
    md = eval_report.report_markdown(results, {"table_a2": "a.png", "fvd": "b.png"})
    for text in ("centroid step ≤ 0.11·S", "size ratio ≤ 1.2,", "rotation ≤ 25°", "flicker score ≤ 0.07",
                 "shift ≥ 0.2·S", "max/min area ≤ 1.7", "(S = 48 px)"):
        assert text in md, text


def hand_report_results(variants: dict) -> dict:
    """A results dict for report_markdown around `variants` (name -> row), everything else empty."""
    return {
        "settings": {"quick": True, "videos_per_row": 4, "num_frames": 16, "steps": 12, "bootstrap": 0,
                     "reference_videos": 4, "cfg": {"high": 12.5, "low": 7.5, "switch": 0.7}},
        "prompts": [{"prompt": SPEC.caption, "held_out": False}], "seeds": [0], "skipped_variants": {},
        "timing": {"total_s": 1.0, "per_video_s": 0.5},
        "thresholds": {**asdict(DEFAULT_THRESHOLDS), "frame_size_px": 64}, "variants": variants,
        "real_floor_fvd": 0.0, "real_floor_fvd_ci": [0.0, 0.0], "fvd_features": list(FEATURE_NAMES),
        "alpha_sweep": [], "cfg_schedule": {},
    }


def test_report_gives_both_actions_by_hand(tmp_path):
    """Four hand-made videos: the paper's action (kind) and ours (direction) side by side, AVG over ours; a summary
    cached before action_kind existed prints dashes there and keeps its other numbers."""
    from harivo.evaluate.stats import motion_breakdown

    def rec(content, kind, action, smooth, non_weird, held_out):
        return {"prompt": SPEC.caption, "held_out": held_out, "content": content, "action_kind": kind,
                "action": action, "smooth": smooth, "non_weird": non_weird}

    records = [rec(True, True, True, True, True, False), rec(True, True, False, True, False, False),
               rec(False, False, False, True, True, True), rec(True, True, False, False, True, True)]
    old = [{k: x for k, x in r.items() if k != "action_kind"} for r in records]
    feats = np.zeros((4, len(FEATURE_NAMES)))
    rows = {name: {**table_scores(recs), "table1_row": "D", "fvd": 1.0, "fvd_ci": [0.5, 2.0],
                   "by_motion": motion_breakdown(recs, feats)} for name, recs in (("full", records), ("baseline", old))}
    md = eval_report.report_markdown(hand_report_results(rows), {"table_a2": "a.png", "fvd": "b.png"})
    head = table_row(md, "## Table A2 analog", "variant")
    assert head[2:8] == ["content", "action (kind, paper)", "action (direction, ours)", "smooth", "non-weird", "AVG"]
    assert head[-1] == "AVG 95% CI"
    # by hand: content 3/4, kind 3/4, direction 1/4, smooth 3/4, non-weird 3/4; AVG (75 + 25 + 75 + 75) / 4 = 62.5
    # (with the kind it would be 75)
    assert table_row(md, "## Table A2 analog", "full")[2:8] == ["75.0", "75.0", "25.0", "75.0", "75.0", "62.5"]
    assert table_row(md, "### Seen prompts", "full")[1:8] == ["2", "100.0", "100.0", "50.0", "100.0", "50.0", "75.0"]
    assert table_row(md, "### Held-out prompts", "full")[1:8] == ["2", "50.0", "50.0", "0.0", "50.0", "100.0", "50.0"]
    # cached before the new keys: dashes there, the AVG unchanged
    assert table_row(md, "## Table A2 analog", "baseline")[2:8] == ["75.0", "–", "25.0", "75.0", "75.0", "62.5"]
    assert rows["full"]["by_motion"][SPEC.motion]["action_kind"] == 75.0
    assert "action_kind" not in rows["baseline"]["by_motion"][SPEC.motion]
    # the legend says which action the AVG uses
    legend = md.split("## How the checker decides", 1)[1]
    assert "**AVG** is the mean of content, action (direction, ours), smooth and non-weird" in legend
    assert "**action (kind, paper)**" in legend
    # a summary JSON written before the new columns still renders, plot included
    def strip(row):
        return {k: strip(x) if isinstance(x, dict) else x for k, x in row.items() if k != "action_kind"}

    stale = {"baseline": strip(rows["baseline"])}
    md = eval_report.report_markdown(hand_report_results(stale), {"table_a2": "a.png", "fvd": "b.png"})
    assert table_row(md, "## Table A2 analog", "baseline")[2:8] == ["75.0", "–", "25.0", "75.0", "75.0", "62.5"]
    assert table_row(md, "### Held-out prompts", "baseline")[2:8] == ["50.0", "–", "0.0", "50.0", "100.0", "50.0"]
    eval_report.plot_table_a2({"full": rows["full"], "baseline": stale["baseline"]}, tmp_path / "a.png")
    assert (tmp_path / "a.png").stat().st_size > 0


def test_motion_along_prompt_by_hand():
    """The 'along' value reads the features the prompted way: signed shifts, signed zoom, turns, still = length."""
    from harivo.evaluate.stats import motion_along_prompt, motion_breakdown

    f = np.zeros((2, len(FEATURE_NAMES)))
    col = {n: i for i, n in enumerate(FEATURE_NAMES)}
    f[0, col["shift_x"]], f[0, col["shift_y"]], f[0, col["zoom"]], f[0, col["rotation"]] = 0.3, -0.4, 0.5, 0.25
    f[1] = np.nan  # no object found
    assert motion_along_prompt("moving left to right", f)[0] == pytest.approx(0.3)
    assert motion_along_prompt("moving right to left", f)[0] == pytest.approx(-0.3)
    assert motion_along_prompt("moving up", f)[0] == pytest.approx(0.4)  # y grows downwards
    assert motion_along_prompt("moving down", f)[0] == pytest.approx(-0.4)
    assert motion_along_prompt("getting closer", f)[0] == pytest.approx(0.5)
    assert motion_along_prompt("moving away", f)[0] == pytest.approx(-0.5)
    assert motion_along_prompt("spinning", f)[0] == pytest.approx(0.25)
    assert motion_along_prompt("standing still", f)[0] == pytest.approx(0.5)  # hypot(0.3, 0.4)
    with pytest.raises(ValueError, match="motion"):
        motion_along_prompt("dancing", f)
    up = "a red square is moving up on a gray background"
    records = [{"prompt": up, "action": True}, {"prompt": up, "action": False}]
    assert motion_breakdown(records, f) == {"moving up": {"n": 2, "along": pytest.approx(0.4), "action": 50.0,
                                                          "moved": pytest.approx(0.5), "right_way": 100.0}}
    nothing = motion_breakdown(records[1:], f[1:])["moving up"]
    assert np.isnan(nothing["along"]) and np.isnan(nothing["moved"]) and np.isnan(nothing["right_way"])
    spin = "a red square is spinning on a gray background"
    assert "right_way" not in motion_breakdown([{"prompt": spin}], f[:1])["spinning"]  # a turn has no wrong sign


def test_translation_summary_by_hand():
    """Pooled over the translations: moved = mean shift length, right way = % with the prompted sign."""
    from harivo.evaluate.stats import motion_breakdown

    col = {n: i for i, n in enumerate(FEATURE_NAMES)}
    shifts = [(0.3, 0.0), (-0.1, 0.0), (0.0, 0.0), (0.0, -0.4)]  # right way, wrong way, still; then up, right way
    f = np.zeros((len(shifts), len(FEATURE_NAMES)))
    for i, (dx, dy) in enumerate(shifts):
        f[i, col["shift_x"]], f[i, col["shift_y"]] = dx, dy
    prompts = ["a red circle is moving left to right on a gray background"] * 3
    prompts += ["a red circle is moving up on a gray background"]
    by = motion_breakdown([{"prompt": p} for p in prompts], f)
    assert by["moving left to right"]["right_way"] == pytest.approx(100 / 3)  # 0 is not the prompted way
    assert translation_summary(by) == {"n": 4, "moved": pytest.approx((0.3 + 0.1 + 0.0 + 0.4) / 4),
                                       "right_way": pytest.approx(50.0)}
    empty = translation_summary({})
    assert empty["n"] == 0 and np.isnan(empty["moved"])


def test_generator_videos_move_the_prompted_way():
    """On the generator's own videos every motion's 'along' is clearly positive (still: clearly ~0): the scale
    the report prints beside the models."""
    from harivo.evaluate.stats import motion_breakdown

    specs = [ShapeSpec("red", "square", m, "gray") for m in MOTIONS]
    feats = reference_features(specs, 2, 1, 16, 64)
    by = motion_breakdown([{"prompt": s.caption} for s in specs for _ in range(2)], feats)
    for m, b in by.items():
        if m == "standing still":
            assert b["along"] < 0.02, b
        else:
            assert b["along"] > 0.2, (m, b)
        if "right_way" in b:
            assert b["right_way"] == 100.0, (m, b)


def test_bootstrap_avg_by_hand():
    """All-pass videos have AVG 100 with a zero-width interval; a half/half set's interval holds its point."""
    from harivo.evaluate import bootstrap_avg

    yes = {q: True for q in QUESTIONS}
    no = {q: False for q in QUESTIONS}
    assert bootstrap_avg([yes] * 5, 100) == (100.0, 100.0)
    lo, hi = bootstrap_avg([yes, no] * 20, 500, 0.95, seed=1)
    assert lo < 50.0 < hi and 25.0 < lo and hi < 75.0  # binomial sd of the mean at n = 40 is ~7.9 points
    assert bootstrap_avg([yes, no], 0) == (50.0, 50.0)
    assert all(np.isnan(bootstrap_avg([], 10)))


SHIPPED_REPORTS = sorted(str(p.parent.relative_to(Path(__file__).resolve().parents[1]))
                         for p in (Path(__file__).resolve().parents[1] / "assets").rglob("results.json"))


@pytest.mark.parametrize("folder", SHIPPED_REPORTS or ["assets/eval"])
def test_shipped_reports_match_their_json(folder):
    """Every committed evaluation report names the command that made it and says in its tables what its JSON says,
    in the world its JSON names."""
    root = Path(__file__).resolve().parents[1] / folder
    if not (root / "results.json").is_file():
        pytest.skip("no evaluation report is committed (`python -m harivo.evaluate` writes assets/eval)")
    results = json.loads((root / "results.json").read_text())
    md = (root / "report.md").read_text()
    assert md.splitlines()[2].startswith(f"`{results['command']}`: ")
    assert f"--seeds {results['settings']['seeds']}" in results["command"]
    assert f"--out-dir {folder}" in results["command"] or folder == "assets/eval"
    check_report_matches_json(md, results)
    assert shapes.World.from_record(results["world"]).record() == results["world"]
    assert ("--cfg-low" in results["command"]) == (results["settings"]["cfg"]["low"] != 7.5)


def test_a_cfg_schedule_off_app_d_is_run_recorded_and_rerun(tmp_path, monkeypatch):
    """--cfg-high/--cfg-low/--cfg-switch set every row's schedule; the command reruns it, and the report names App. D
    only when it is App. D (eval_report.APP_D_CFG, which must be sampling.CFGSchedule's defaults)."""
    from harivo.evaluate import report as eval_report
    from harivo.sampling import CFGSchedule

    d = CFGSchedule()
    assert eval_report.APP_D_CFG == (d.high, d.low, d.switch)
    ckpts = stub_checkpoints(tmp_path, monkeypatch)
    StubPipeline.calls = []
    args = cli.build_parser().parse_args(["--checkpoints", str(ckpts), "--variants", "full+mg", "--seen-prompts",
                                               "1", "--held-out-prompts", "1", "--seeds", "1", "--reference-seeds",
                                               "2", "--bootstrap", "0", "--no-sweep", "--cfg-low", "2.5",
                                               "--cache-dir", ""])
    cfg = cli.config_from_args(args)
    assert cfg.cfg == CFGSchedule(high=12.5, low=2.5, switch=0.7)
    results, _ = evaluate.evaluate(cfg)
    assert {c[4] for c in StubPipeline.calls} == {cfg.cfg}
    assert results["command"].endswith("--cfg-low 2.5 --no-sweep")
    assert f"python -m harivo.evaluate --checkpoints {ckpts} --variants full+mg " in results["command"]
    md = eval_report.write_report(results, {}, tmp_path / "out").read_text()
    assert "CFG 12.5 → 2.5 at 0.7T." in md.splitlines()[2] and "App. D" not in md.splitlines()[2]
    default = cli.config_from_args(cli.build_parser().parse_args(["--no-sweep"]))
    assert default.cfg == CFGSchedule() and "--cfg" not in evaluate.command_line(default)
    assert "--checkpoints" not in evaluate.command_line(default)  # the shipped folder is the default
