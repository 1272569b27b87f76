"""Statistics of `harivo.evaluate` over many judged videos: Table A2's percentages, the Fréchet distance (FVD
analog) with its bootstrap interval and the generator videos' reference side, and the per-verb motion tables.

`percentages` / `table_scores` turn per-video answers into Table A2's percentages (with the paper's direction-blind
`action_kind` and the cue share beside them, outside the AVG); `frechet_distance`,
`feature_stats` and `bootstrap_fd` give the Fréchet distance of two feature sets and its bootstrap interval;
`reference_features` the generator videos' side; `motion_breakdown` / `translation_summary` the "Action per verb"
and "Translations, any direction" tables. Per-video judging is `harivo.evaluate.metrics`; editing this module does
not invalidate the evaluation's run cache.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg

from harivo.data.checker import DEFAULT_THRESHOLDS, Thresholds
from harivo.data.shapes import SIZE_CHANGES, TRANSLATIONS, ShapeSpec, render_video
from harivo.evaluate.metrics import FEATURE_NAMES, QUESTIONS, video_features


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (unbiased) of an (N, D) feature matrix, N >= 2."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"features: expected an (N, D) array with N >= 2, got shape {features.shape}")
    return features.mean(axis=0), np.atleast_2d(np.cov(features, rowvar=False))


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½), the FVD formula (Unterthiner et al.; the paper's [37]).

    Numerically safe as in pytorch-fid: when sqrtm of the (possibly singular) product is not finite, `eps`·I is
    added to both covariances; the tiny imaginary part of the matrix root is dropped; the result is >= 0.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = len(mu1)
    for name, v, shape in (("mu2", mu2, (d,)), ("sigma1", sigma1, (d, d)), ("sigma2", sigma2, (d, d))):
        if v.shape != shape:
            raise ValueError(f"{name}: expected shape {shape} to match mu1, got {v.shape}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)  # singular products are expected at small N
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(d) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    diff = mu1 - mu2
    fd = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(np.real(covmean))
    return float(max(fd, 0.0))


def bootstrap_fd(features: np.ndarray, ref_mu: np.ndarray, ref_sigma: np.ndarray, resamples: int = 200,
                 confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of frechet_distance(features, reference): videos resampled with replacement,
    the percentile interval re-centred on the point estimate (see `harivo/evaluate/__init__.py`), clipped at 0."""
    point = frechet_distance(*feature_stats(features), ref_mu, ref_sigma)
    if resamples < 1:
        return point, point
    rng = np.random.default_rng(seed)
    n = len(features)
    values = np.array([frechet_distance(*feature_stats(features[rng.integers(0, n, n)]), ref_mu, ref_sigma)
                       for _ in range(resamples)])
    lo, mid, hi = np.quantile(values, [(1 - confidence) / 2, 0.5, (1 + confidence) / 2])
    return float(max(point + lo - mid, 0.0)), float(point + hi - mid)


def reference_features(specs: list[ShapeSpec], per_prompt: int, set_id: int, num_frames: int, size: int,
                       thresholds: Thresholds = DEFAULT_THRESHOLDS) -> np.ndarray:
    """Features of generator videos of `thresholds.world`: `per_prompt` per spec, generator seeds drawn from
    (set_id, prompt, k)."""
    feats = []
    for i, spec in enumerate(specs):
        for k in range(per_prompt):
            seed = int(np.random.default_rng([set_id, i, k]).integers(2**31 - 1))
            feats.append(video_features(render_video(spec, seed, num_frames, size, thresholds.world)[0], None,
                                        thresholds))
    return np.array(feats)


# how each motion's "along" value reads the features (sign, feature names): see motion_along_prompt
_ALONG = {
    "moving left to right": (1.0, ("shift_x",)), "moving right to left": (-1.0, ("shift_x",)),
    "moving up": (-1.0, ("shift_y",)), "moving down": (1.0, ("shift_y",)),  # image y points down
    "getting closer": (1.0, ("zoom",)), "moving away": (-1.0, ("zoom",)),
    "spinning": (1.0, ("rotation",)), "standing still": (1.0, ("shift_x", "shift_y")),
}


def motion_along_prompt(motion: str, features: np.ndarray) -> np.ndarray:
    """How far videos (rows of FEATURE_NAMES features) moved the way `motion` says: the centroid shift along the
    prompted direction (fraction of the frame) for the four translations, the signed change of log size for
    "getting closer" / "moving away", the fraction of a turn for "spinning", and for "standing still" the length
    of the centroid shift (0 is right). NaN where the checker found no object."""
    if motion not in _ALONG:
        raise ValueError(f"motion: expected one of {list(_ALONG)}, got {motion!r}")
    sign, names = _ALONG[motion]
    cols = np.atleast_2d(np.asarray(features, dtype=np.float64))[:, [FEATURE_NAMES.index(n) for n in names]]
    return sign * cols[:, 0] if len(names) == 1 else np.hypot(cols[:, 0], cols[:, 1])


_SIGNED = (*TRANSLATIONS, *SIZE_CHANGES)  # motions whose `along` has a right sign


def _nanmean(x: np.ndarray) -> float:
    return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")


def _record_mean(records: list[dict], key: str) -> float:
    """100 × the mean of `key` over records (bools count 0 / 1); NaN without records or when one lacks `key`
    (records cached before the key existed)."""
    if not records or any(key not in r for r in records):
        return float("nan")
    return 100.0 * float(np.mean([float(r[key]) for r in records]))


def motion_breakdown(records: list[dict], features: np.ndarray) -> dict:
    """Per prompted motion: videos `n`, % whose `action` the checker accepted (when the records have it; likewise
    `action_kind`, the kind of motion only, and `cue`, the mean % of frames showing the prompt's cue mark), the
    mean `along` (`motion_along_prompt`), the mean length of the centroid shift in any direction `moved`
    (fraction of the frame: moving the wrong way vs not moving) and, where the sign of `along` says the direction
    (translations, closer / away), `right_way`: % of videos with `along` > 0 (chance: 50 %). Means skip NaN (no
    object found) and are NaN when no video had an object."""
    features = np.asarray(features, dtype=np.float64)
    out = {}
    for motion in _ALONG:
        rows = [i for i, r in enumerate(records) if ShapeSpec.from_caption(r["prompt"]).motion == motion]
        if not rows:
            continue
        along = motion_along_prompt(motion, features[rows])
        entry = {"n": len(rows), "along": _nanmean(along),
                 "moved": _nanmean(motion_along_prompt("standing still", features[rows]))}
        if motion in _SIGNED:
            found = along[np.isfinite(along)]
            entry["right_way"] = 100.0 * float(np.mean(found > 0)) if len(found) else float("nan")
        if all("action" in records[i] for i in rows):
            entry["action"] = 100.0 * float(np.mean([bool(records[i]["action"]) for i in rows]))
        if all("action_kind" in records[i] for i in rows):
            entry["action_kind"] = _record_mean([records[i] for i in rows], "action_kind")
        out[motion] = entry
    return out


def translation_summary(by_motion: dict) -> dict:
    """The four translations of a `motion_breakdown` pooled (weighted by videos): `n`, mean `moved` and
    `right_way` %. NaN where no translation was prompted."""
    rows = [by_motion[m] for m in TRANSLATIONS if m in by_motion]
    n = sum(r["n"] for r in rows)
    if not n:
        return {"n": 0, "moved": float("nan"), "right_way": float("nan")}

    def pooled(key):
        ok = [(r[key], r["n"]) for r in rows if r[key] == r[key]]
        return sum(v * k for v, k in ok) / sum(k for _, k in ok) if ok else float("nan")

    return {"n": n, "moved": pooled("moved"), "right_way": pooled("right_way")}


def percentages(records: list[dict]) -> dict:
    """% of videos passing each question, their average (Table A2's AVG, over QUESTIONS: `action` is the one that
    wants the direction), % passing `action_kind` (the paper's action: the kind of motion only) and the count. NaN
    when empty; `action_kind` NaN also when a record lacks it (cached before it existed)."""
    extra = {"action_kind": _record_mean(records, "action_kind")}
    if not records:
        return {**{q: float("nan") for q in (*QUESTIONS, "avg")}, **extra, "n": 0}
    out = {q: 100.0 * float(np.mean([bool(r[q]) for r in records])) for q in QUESTIONS}
    return {**out, "avg": float(np.mean([out[q] for q in QUESTIONS])), **extra, "n": len(records)}


def table_scores(records: list[dict]) -> dict:
    """Overall percentages, plus `seen` and `held_out` sub-dicts."""
    return {**percentages(records), "seen": percentages([r for r in records if not r["held_out"]]),
            "held_out": percentages([r for r in records if r["held_out"]])}
