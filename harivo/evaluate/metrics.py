"""Per-video judging of `harivo.evaluate`: the pixel checker's Table A2 answers and the FVD feature of one video.

`score_video` judges one video (content, action, smooth, non-weird; also the paper's direction-blind action
`action_kind`) and reads its FVD feature (`FEATURE_NAMES`, see the module docstring of `harivo/evaluate/__init__.py` for why
these features). The evaluation's run cache is keyed on `checker.JUDGE_VERSION`: bump it with any change here that
changes a verdict or a feature.
"""

from __future__ import annotations

import numpy as np

from harivo.data.checker import DEFAULT_THRESHOLDS, Thresholds, judge, read_video, readings_flicker, total_change, worst_steps
from harivo.data.shapes import ShapeSpec

QUESTIONS = ("content", "action", "smooth", "non_weird")  # Table A2 columns, AVG's four (action: direction too)
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
    step, size_step, angle_step = worst_steps(t)
    x = video.astype(np.float32) / (255.0 if video.dtype == np.uint8 else 1.0)
    diffs = np.abs(np.diff(x, axis=0)).mean(axis=(1, 2, 3)) / T.max_flicker if F > 1 else np.zeros(1)
    counts = np.minimum(np.array(reading.n_objects, float), 5.0)
    areas = np.array([r.area for r in rs])
    area_ratio = areas.max() / areas.min() if areas.min() > 0 else 100.0
    values = [
        *obj, *bg, *harm, *centre, total_change(t.cx) / S, total_change(t.cy) / S,
        float(np.nanmean(log_size)) if ok else -5.0, total_change(log_size), abs(total_change(t.angle)) / 360.0,
        step / (T.max_step * S), np.log(max(size_step, 1.0)) / np.log(T.max_size_step), angle_step / T.max_angle_step,
        readings_flicker(rs) / T.max_flicker, diffs.mean(), diffs.std(), diffs.max(),
        max(r.noise for r in rs) / T.max_noise,
        float(np.mean(counts == 1)), counts.mean(), np.log(min(max(area_ratio, 1.0), 100.0)),
        areas.mean() / (S * video.shape[1]),
    ]  # fmt: skip
    out = np.nan_to_num(np.asarray(values, np.float64), nan=0.0, posinf=10.0, neginf=-10.0)
    assert out.shape == (len(FEATURE_NAMES),)
    return np.clip(out, -10.0, 10.0)  # bounded: one broken video cannot swamp a covariance


# ------------------------------------------------------------------------------------------------ scoring
def score_video(frames: np.ndarray, spec: ShapeSpec, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> dict:
    """The checker's four Table A2 answers for one video, `action_kind` (the paper's action: the kind of motion
    only, `checker.motion_kind`) and its FVD feature (one read of the pixels)."""
    verdict = judge(frames, spec, thresholds)
    features = video_features(frames, verdict["details"]["reading"], thresholds)
    return {**{q: verdict[q] for q in QUESTIONS}, "action_kind": verdict["action_kind"], "features": features}
