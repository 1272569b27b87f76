"""The measurements of `harivo.evaluate`: the pixel checker's Table A2 answers per video and the FVD analog.

`score_video` judges one video (content, action, smooth, non-weird) and reads its FVD feature (`FEATURE_NAMES`,
see the module docstring of `harivo/evaluate.py` for why these features); `percentages` / `table_scores` turn
per-video answers into Table A2's percentages; `frechet_distance`, `feature_stats` and `bootstrap_fd` give the
Fréchet distance of two feature sets and its bootstrap interval; `reference_features` the generator videos' side.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg

from .data.checker import DEFAULT_THRESHOLDS, Thresholds, _flicker, _steps, _total_change, judge, read_video
from .data.shapes import ShapeSpec, render_video

QUESTIONS = ("content", "action", "smooth", "non_weird")  # Table A2 columns
FEATURE_NAMES = (
    "object_r", "object_g", "object_b",  # median object colour over frames with an object, / 255
    "background_r", "background_g", "background_b",  # median border colour, / 255
    "harmonic_3", "harmonic_4", "harmonic_5",  # mean angular harmonics m3, m4, m5 (the shape; checker step 5)
    "centroid_x", "centroid_y",  # mean centroid / S
    "shift_x", "shift_y",  # centroid change over the clip (least-squares slope × (F − 1)) / S
    "log_size", "zoom",  # mean log(size / S); change of log size over the clip
    "rotation",  # |angle change over the clip| / 360°
    # glitches, in units of the checker's threshold for them (1 = at the threshold):
    "max_step", "max_size_step", "max_angle_step",  # worst frame-to-frame centroid step, size ratio (log), angle
    "flicker",  # checker flicker score / max_flicker
    "frame_diff_mean", "frame_diff_std", "frame_diff_max",  # mean |x_{f+1} − x_f| per frame pair / max_flicker
    "noise",  # worst border-ring noise / max_noise
    "one_object", "objects",  # fraction of frames with exactly one object; mean object count (capped at 5)
    "log_area_ratio", "area_fraction",  # log(max/min area), capped at log 100; mean area / frame area
)  # fmt: skip


# ------------------------------------------------------------------------------------------------ features
def video_features(frames: np.ndarray, reading=None, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> np.ndarray:
    """The FVD feature of one (F, H, W, 3) video (FEATURE_NAMES); `reading`: its `read_video`, if already made.

    Content and trajectory features are fractions of the frame or of the colour range; glitch features are in
    units of the checker's threshold for them, so a glitch right at the threshold moves the feature by 1, about
    as much as a wrong colour (palette colours are 0.4–1.2 apart).
    """
    T, video = thresholds, np.asarray(frames)
    reading = reading if reading is not None else read_video(video, T)
    S, F = float(video.shape[2]), len(video)
    rs, t = reading.frames, reading.track
    ok = [r for r in rs if r.n_objects > 0]
    bg = np.median([r.background_rgb for r in rs], axis=0) / 255.0
    obj = np.median([r.colour_rgb for r in ok], axis=0) / 255.0 if ok else bg  # nothing drawn: background
    harm = np.mean([r.harmonics for r in ok], axis=0) if ok else np.zeros(3)
    centre = [np.nanmean(t.cx) / S, np.nanmean(t.cy) / S] if ok else [0.5, 0.5]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_size = np.log(np.asarray(t.size, float) / S)
    step, size_step, angle_step = _steps(t)
    x = video.astype(np.float32) / (255.0 if video.dtype == np.uint8 else 1.0)
    diffs = np.abs(np.diff(x, axis=0)).mean(axis=(1, 2, 3)) / T.max_flicker if F > 1 else np.zeros(1)
    counts = np.minimum(np.array(reading.n_objects, float), 5.0)
    areas = np.array([r.area for r in rs])
    area_ratio = areas.max() / areas.min() if areas.min() > 0 else 100.0
    values = [
        *obj, *bg, *harm, *centre, _total_change(t.cx) / S, _total_change(t.cy) / S,
        float(np.nanmean(log_size)) if ok else -5.0, _total_change(log_size), abs(_total_change(t.angle)) / 360.0,
        step / (T.max_step * S), np.log(max(size_step, 1.0)) / np.log(T.max_size_step), angle_step / T.max_angle_step,
        _flicker(rs) / T.max_flicker, diffs.mean(), diffs.std(), diffs.max(), max(r.noise for r in rs) / T.max_noise,
        float(np.mean(counts == 1)), counts.mean(), np.log(min(max(area_ratio, 1.0), 100.0)),
        areas.mean() / (S * video.shape[1]),
    ]  # fmt: skip
    out = np.nan_to_num(np.asarray(values, np.float64), nan=0.0, posinf=10.0, neginf=-10.0)
    assert out.shape == (len(FEATURE_NAMES),)
    return np.clip(out, -10.0, 10.0)  # bounded: one broken video cannot swamp a covariance


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
    the percentile interval re-centred on the point estimate (see the module docstring), clipped at 0."""
    point = frechet_distance(*feature_stats(features), ref_mu, ref_sigma)
    if resamples < 1:
        return point, point
    rng = np.random.default_rng(seed)
    n = len(features)
    values = np.array([frechet_distance(*feature_stats(features[rng.integers(0, n, n)]), ref_mu, ref_sigma)
                       for _ in range(resamples)])
    lo, mid, hi = np.quantile(values, [(1 - confidence) / 2, 0.5, (1 + confidence) / 2])
    return float(max(point + lo - mid, 0.0)), float(point + hi - mid)


def reference_features(specs: list[ShapeSpec], per_prompt: int, set_id: int, num_frames: int, size: int) -> np.ndarray:
    """Features of generator videos: `per_prompt` per spec, generator seeds drawn from (set_id, prompt, k)."""
    feats = []
    for i, spec in enumerate(specs):
        for k in range(per_prompt):
            seed = int(np.random.default_rng([set_id, i, k]).integers(2**31 - 1))
            feats.append(video_features(render_video(spec, seed, num_frames, size)[0]))
    return np.array(feats)


# ------------------------------------------------------------------------------------------------ scoring
def score_video(frames: np.ndarray, spec: ShapeSpec, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> dict:
    """The checker's four Table A2 answers for one video, and its FVD feature (one read of the pixels)."""
    verdict = judge(frames, spec, thresholds)
    features = video_features(frames, verdict["details"]["reading"], thresholds)
    return {**{q: verdict[q] for q in QUESTIONS}, "features": features}


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


TRANSLATIONS = ("moving left to right", "moving right to left", "moving up", "moving down")
_SIGNED = (*TRANSLATIONS, "getting closer", "moving away")  # motions whose `along` has a right sign


def _nanmean(x: np.ndarray) -> float:
    return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")


def motion_breakdown(records: list[dict], features: np.ndarray) -> dict:
    """Per prompted motion: videos `n`, % whose `action` the checker accepted (when the records have it), the
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
    """% of videos passing each question, their average (Table A2's AVG) and the count; NaN when empty."""
    if not records:
        return {**{q: float("nan") for q in (*QUESTIONS, "avg")}, "n": 0}
    out = {q: 100.0 * float(np.mean([bool(r[q]) for r in records])) for q in QUESTIONS}
    return {**out, "avg": float(np.mean([out[q] for q in QUESTIONS])), "n": len(records)}


def table_scores(records: list[dict]) -> dict:
    """Overall percentages, plus `seen` and `held_out` sub-dicts."""
    return {**percentages(records), "seen": percentages([r for r in records if not r["held_out"]]),
            "held_out": percentages([r for r in records if r["held_out"]])}
