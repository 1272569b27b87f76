"""The pixel checker: right on generator output, and it notices broken videos."""

import numpy as np
import pytest
from scipy import ndimage

from harivo.data.checker import (
    DEFAULT_THRESHOLDS,
    HARMONICS,
    classify_motion,
    flicker_score,
    judge,
    motion_kind,
    read_frame,
    read_video,
)
from harivo.data.shapes import BACKGROUNDS, MOTIONS, ShapeSpec, Track, all_specs, rasterize, render_video

QUESTIONS = ("content", "action", "smooth", "non_weird")
N_RANDOM = 200


@pytest.fixture(scope="module")
def judged():
    """200 random generator videos over the whole world (train and held-out), each judged once."""
    rng = np.random.default_rng(2024)
    specs = all_specs("all")
    out = []
    for _ in range(N_RANDOM):
        spec = specs[int(rng.integers(len(specs)))]
        video, track = render_video(spec, int(rng.integers(2**31 - 1)))
        out.append((spec, video, track, judge(video, spec)))
    return out


def test_checker_reads_generator_videos_right(judged):
    reads = [j["details"]["reading"] for _, _, _, j in judged]
    specs = [s for s, _, _, _ in judged]
    assert sum(s.shape == "star" for s in specs) > 30 and any(s in all_specs("held_out") for s in specs)
    for field in ("colour", "shape", "background", "motion"):
        got = [getattr(r, field) for r in reads]
        wrong = [(s.caption, g) for s, g in zip(specs, got) if g != getattr(s, field)]
        assert not wrong, f"{field} wrong on {len(wrong)}/{N_RANDOM}: {wrong[:5]}"
    for q in QUESTIONS:
        failed = [s.caption for s, _, _, j in judged if not j[q]]
        assert not failed, f"{q} failed on generator output: {failed[:5]}"


def test_checker_track_matches_ground_truth(judged):
    for spec, _, truth, j in judged:
        got = j["details"]["reading"].track
        assert np.abs(got.cx - truth.cx).max() < 0.3 and np.abs(got.cy - truth.cy).max() < 0.3
        assert np.abs(got.size - truth.size).max() < 0.5
        if spec.shape != "circle":
            period = 360.0 / HARMONICS[spec.shape]
            err = (got.angle - truth.angle + period / 2) % period - period / 2
            assert np.abs(err).max() < 2.0
            # unwrapped: the same rotation over the clip, not a wrapped one
            assert abs((got.angle[-1] - got.angle[0]) - (truth.angle[-1] - truth.angle[0])) < 2.0
        else:
            assert np.all(np.isnan(got.angle))


def test_generator_stays_well_inside_the_thresholds(judged):
    T = DEFAULT_THRESHOLDS
    d = [j["details"] for _, _, _, j in judged]
    flicker = np.array([x["flicker"] for x in d])
    assert flicker.max() < T.max_flicker / 2
    assert max(x["max_step_px"] for x in d) < T.max_step * 64 * 0.6  # edge to edge in 15 steps: <= 0.048 S
    assert max(x["max_noise"] for x in d) == 0.0
    assert all(x["n_objects"] == [1] * 16 for x in d)


def test_spinning_circle_is_accepted_as_still():
    spec = ShapeSpec("red", "circle", "spinning", "gray")
    result = judge(render_video(spec, 3)[0], spec)
    assert result["details"]["motion"] == "standing still" and all(result[q] for q in QUESTIONS)
    assert result["action_kind"] is True  # the exception holds for the kind too


def test_generator_videos_pass_the_kind_of_action_too(judged):
    assert all(j["action_kind"] is True for _, _, _, j in judged)


def test_motion_kind_of_every_motion():
    kinds = {m: motion_kind(m) for m in MOTIONS}
    assert kinds == {
        "moving left to right": "translation", "moving right to left": "translation", "moving up": "translation",
        "moving down": "translation", "getting closer": "size", "moving away": "size", "spinning": "rotation",
        "standing still": "still",
    }  # fmt: skip
    with pytest.raises(ValueError, match="motion"):
        motion_kind("dancing")


OPPOSITE = {"moving left to right": "moving right to left", "moving right to left": "moving left to right",
            "moving up": "moving down", "moving down": "moving up", "getting closer": "moving away",
            "moving away": "getting closer"}


@pytest.mark.parametrize("motion", list(OPPOSITE))
def test_opposite_direction_fails_action_but_passes_its_kind(motion):
    """The paper's action (kind of motion) accepts the wrong direction; ours (the read verb itself) does not."""
    video, _ = render_video(ShapeSpec("blue", "triangle", motion, "white"), 7)
    result = judge(video, ShapeSpec("blue", "triangle", OPPOSITE[motion], "white"))
    assert result["details"]["motion"] == motion
    assert result["content"] and result["action"] is False and result["action_kind"] is True
    assert judge(video, ShapeSpec("blue", "triangle", motion, "white"))["action"] is True


@pytest.mark.parametrize("shown,prompted", [("standing still", "moving up"), ("moving up", "getting closer"),
                                            ("spinning", "standing still"), ("getting closer", "spinning")])
def test_another_kind_of_motion_fails_both_actions(shown, prompted):
    video, _ = render_video(ShapeSpec("green", "square", shown, "gray"), 2)
    result = judge(video, ShapeSpec("green", "square", prompted, "gray"))
    assert result["details"]["motion"] == shown
    assert result["content"] and result["action"] is False and result["action_kind"] is False


def test_wrong_prompt_fails_content_or_action():
    spec = ShapeSpec("blue", "square", "moving up", "white")
    video, _ = render_video(spec, 5)
    assert not judge(video, ShapeSpec("red", "square", "moving up", "white"))["content"]
    assert not judge(video, ShapeSpec("blue", "star", "moving up", "white"))["content"]
    assert not judge(video, ShapeSpec("blue", "square", "moving up", "gray"))["content"]
    wrong_verb = judge(video, ShapeSpec("blue", "square", "moving down", "white"))
    assert wrong_verb["content"] and not wrong_verb["action"]


MOVING = [ShapeSpec("red", "square", m, "gray") for m in MOTIONS if m != "standing still"]


@pytest.mark.parametrize("spec", MOVING, ids=lambda s: s.motion)
def test_shuffled_frames_are_not_smooth(spec):
    video, _ = render_video(spec, 11)
    steady = judge(video, spec)
    assert steady["smooth"] and steady["details"]["smooth_fails"] == []
    shuffled = video[np.random.default_rng(0).permutation(16)]
    result = judge(shuffled, spec)
    assert not result["smooth"]
    # the bound it breaks is the one its motion moves: a translation's step, a size change's ratio, a spin's angle
    kind = {"moving away": "size_step", "getting closer": "size_step", "spinning": "angle_step"}.get(
        spec.motion, "step")
    assert kind in result["details"]["smooth_fails"], result["details"]["smooth_fails"]


def test_heavy_noise_is_weird_mild_noise_and_blur_are_fine():
    rng = np.random.default_rng(0)
    for k, spec in enumerate(MOVING[:4] + [ShapeSpec("white", "star", "standing still", "black")]):
        video, _ = render_video(spec, k)
        heavy = np.clip(video + rng.normal(0, 40, video.shape), 0, 255).astype(np.uint8)
        assert not judge(heavy, spec)["non_weird"]
        mild = np.clip(video + rng.normal(0, 5, video.shape), 0, 255).astype(np.uint8)
        blurred = ndimage.gaussian_filter(video.astype(float), (0, 1, 1, 0)).round().astype(np.uint8)
        for v in (mild, blurred):
            result = judge(v, spec)
            assert all(result[q] for q in QUESTIONS), (spec.caption, result["details"])


def test_vanished_object_is_noticed():
    spec = ShapeSpec("green", "triangle", "moving left to right", "blue")
    video, _ = render_video(spec, 2)
    video[7] = BACKGROUNDS["blue"]
    result = judge(video, spec)
    assert result["details"]["n_objects"][7] == 0 and not result["non_weird"] and not result["smooth"]
    assert result["content"] and result["action"]  # the other 15 frames still say what and how
    empty = read_frame(video[7])
    assert (empty.n_objects, empty.shape, empty.colour, empty.background) == (0, None, None, "blue")


def test_second_object_is_noticed():
    spec = ShapeSpec("yellow", "circle", "moving down", "gray")
    video, truth = render_video(spec, 4)
    corner = 8.0 if truth.cx.mean() > 32 else 55.0  # the far side, so the two never touch
    other = rasterize(ShapeSpec("red", "square", "standing still", "gray"),
                      Track(*(np.full(16, v) for v in (corner, 8.0, 6.0, 0.0))))  # fmt: skip
    assert (np.hypot(truth.cx - corner, truth.cy - 8.0) - truth.size - 6.0).min() > 2
    drawn = (other != BACKGROUNDS["gray"]).any(-1)
    video[drawn] = other[drawn]
    result = judge(video, spec)
    assert result["details"]["n_objects"] == [2] * 16 and not result["non_weird"]
    assert result["details"]["colour"] == "yellow"  # the larger object is the one read


def test_recoloured_frame_flickers():
    spec = ShapeSpec("orange", "star", "standing still", "white")
    video, _ = render_video(spec, 9)
    assert flicker_score(video) < 0.01
    mask = (video[5] != BACKGROUNDS["white"]).any(-1)
    video[5][mask] = (240, 60, 30)  # a redder orange for one frame
    assert flicker_score(video) > DEFAULT_THRESHOLDS.max_flicker
    result = judge(video, spec)
    assert not result["smooth"] and result["details"]["smooth_fails"] == ["flicker"]
    parts = result["details"]["flicker_parts"]  # the object's colour (and, its blended rim recoloured, its area)
    assert parts["object_colour"] > 0.01 and parts["area"] > 0.01 and parts["background_colour"] == 0.0
    assert sum(parts.values()) == pytest.approx(result["details"]["flicker"])


@pytest.mark.parametrize(
    "cx, cy, size, angle, expected",
    [
        (np.linspace(10, 40, 16), np.full(16, 30.0), np.full(16, 8.0), np.zeros(16), "moving left to right"),
        (np.full(16, 30.0), np.linspace(50, 20, 16), np.full(16, 8.0), np.zeros(16), "moving up"),
        (np.full(16, 30.0), np.full(16, 30.0), np.geomspace(6, 11, 16), np.zeros(16), "getting closer"),
        (np.full(16, 30.0), np.full(16, 30.0), np.geomspace(12, 7, 16), np.zeros(16), "moving away"),
        (np.full(16, 30.0), np.full(16, 30.0), np.full(16, 8.0), np.linspace(0, -120, 16), "spinning"),
        # 1 px jitter and a 5 % size wobble are not motion
        (30 + np.sin(np.arange(16)), 30 + np.cos(np.arange(16)), 8 * (1 + 0.05 * np.sin(np.arange(16))),
         np.full(16, np.nan), "standing still"),  # fmt: skip
    ],
)
def test_classify_motion_on_hand_made_tracks(cx, cy, size, angle, expected):
    assert classify_motion(Track(cx, cy, size, angle)) == expected


def test_float_input_and_errors():
    video, _ = render_video(ShapeSpec("black", "square", "spinning", "white"), 1, num_frames=4)
    a, b = read_frame(video[2]), read_frame(video[2].astype(np.float32) / 255.0)
    assert (a.shape, a.colour, a.background) == ("square", "black", "white")
    assert (b.shape, b.colour, b.background) == ("square", "black", "white")
    assert abs(a.cx - b.cx) < 1e-3 and abs(a.angle - b.angle) < 1e-2
    assert read_video(video).motion in MOTIONS
    with pytest.raises(ValueError, match=r"frame must be an HxWx3 array, got shape \(64, 64\)"):
        read_frame(video[0, ..., 0])
    with pytest.raises(ValueError, match=r"frames must be an \(F, H, W, 3\) array"):
        read_video(video[0])
    with pytest.raises(ValueError, match="spec must be a ShapeSpec, got str"):
        judge(video, "a black square is spinning on a white background")


@pytest.mark.parametrize("frames", [6, 8, 16, 24])
def test_generator_videos_are_smooth_at_any_frame_count(frames):
    """The per-step bounds hold at 16 frames and widen by 15 / (F - 1) for shorter clips (fast spins at 8 frames)."""
    specs = [s for s in all_specs("train") if s.motion in ("spinning", "getting closer", "moving left to right")]
    rng = np.random.default_rng(frames)
    for k in rng.choice(len(specs), size=12, replace=False):
        video, _ = render_video(specs[k], int(k), num_frames=frames)
        result = judge(video, specs[k])
        assert result["smooth"], (frames, specs[k], result["details"]["max_angle_step"])
        assert result["details"]["step_scale"] == max(1.0, 15 / (frames - 1))
    spec = ShapeSpec("red", "square", "moving left to right", "gray")
    video, _ = render_video(spec, 1, num_frames=frames)
    assert judge(video, spec)["smooth"]
    swapped = video[[frames - 1, *range(1, frames - 1), 0]]  # first and last frame swapped: a jump of the whole path
    assert not judge(swapped, spec)["smooth"]
