"""harivo.evaluate.token_focus: attention maps against the object, on hand-made maps and masks."""

import numpy as np
import pytest

from harivo.data.shapes import BACKGROUNDS, ShapeSpec
from harivo.evaluate.token_focus import map_focus, measure_video, object_mask, summarise, token_groups, trajectory_correlation


def _mask(h=8, w=8, box=(2, 4, 2, 4)):
    m = np.zeros((h, w), bool)
    y0, y1, x0, x1 = box
    m[y0:y1, x0:x1] = True
    return m


def test_uniform_map_has_lift_one_and_the_frame_centre_as_centroid():
    mask = _mask()
    f = map_focus(np.ones((8, 8)), mask)
    assert f.lift == pytest.approx(1.0)
    # object centroid (2.5, 2.5), frame centre (3.5, 3.5): sqrt(2) px over 8 px
    assert f.uniform_distance == pytest.approx(np.sqrt(2) / 8)
    assert f.centroid_distance == pytest.approx(f.uniform_distance)


def test_map_on_the_object_only():
    mask = _mask()
    f = map_focus(mask.astype(float), mask)
    assert f.lift == pytest.approx(1 / mask.mean())  # 16
    assert f.centroid_distance == pytest.approx(0.0)


def test_map_off_the_object_scores_below_one_and_far():
    mask = _mask()
    m = np.zeros((8, 8))
    m[6, 6] = 3.0
    f = map_focus(m, mask)
    assert f.lift == 0.0
    assert f.centroid_distance == pytest.approx(np.hypot(3.5, 3.5) / 8)


def test_no_object_or_no_map_gives_none_and_shapes_are_checked():
    assert map_focus(np.ones((8, 8)), np.zeros((8, 8), bool)) is None
    assert map_focus(np.zeros((8, 8)), _mask()) is None
    with pytest.raises(ValueError, match="attention_map"):
        map_focus(np.ones((4, 4)), _mask())


def test_object_mask_reads_the_background_by_name():
    frame = np.zeros((4, 4, 3), np.uint8)
    frame[:] = BACKGROUNDS["gray"]
    frame[1, 2] = (220, 40, 40)
    assert object_mask(frame, "gray").sum() == 1 and object_mask(frame, "gray")[1, 2]
    with pytest.raises(ValueError, match="background"):
        object_mask(frame, "pink")


def test_token_groups_name_the_prompt_words():
    spec = ShapeSpec("red", "circle", "moving left to right", "gray")
    tokens = ["a", "red", "circle", "is", "moving", "left", "to", "right", "on", "a", "gray", "background",
              "<f1>", "<f2>", "<f3>"]
    kinds = ["text"] * 12 + ["frame"] * 3
    g = token_groups(tokens, kinds, spec)
    assert g == {"frame tokens": [12, 13, 14], "colour": [1], "shape": [2], "verb": [4, 5, 7],
                 "background": [10]}
    # a white object on a white background cannot happen, but "white" after "on" is the background only
    spec2 = ShapeSpec("black", "star", "standing still", "white")
    t2 = ["a", "black", "star", "is", "standing", "still", "on", "a", "white", "background"]
    assert token_groups(t2, ["text"] * 10, spec2)["background"] == [8]


def test_measure_video_and_summary():
    spec = ShapeSpec("red", "square", "standing still", "gray")
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    frames[:] = BACKGROUNDS["gray"]
    frames[:, 2:4, 2:4] = (220, 40, 40)
    maps = np.ones((2, 8, 8, 2))
    maps[..., 1] = _mask()  # the frame token looks at the object
    tokens, kinds = ["square", "<f1>"], ["text", "frame"]
    per = measure_video(frames, maps, tokens, kinds, spec)
    assert per["frame tokens"]["correlations"] == []  # standing still: no trajectory
    s = summarise(per)
    assert s["frame tokens"]["maps"] == 2 and s["frame tokens"]["lift_mean"] == pytest.approx(16.0)
    assert s["frame tokens"]["closer_than_uniform"] == 1.0
    assert s["shape"]["lift_mean"] == pytest.approx(1.0) and s["shape"]["closer_than_uniform"] == 0.0
    with pytest.raises(ValueError, match="maps"):
        measure_video(frames, maps[:1], tokens, kinds, spec)


def test_flat_floor_does_not_pull_the_centroid_to_the_centre():
    mask = _mask()
    m = np.full((8, 8), 5.0)
    m[2:4, 2:4] += 1.0  # a bump on the object over a flat floor
    f = map_focus(m, mask)
    assert f.centroid_distance == pytest.approx(0.0)
    assert f.lift == pytest.approx((4 * 6.0 / (64 * 5.0 + 4)) / (4 / 64))


def test_a_map_that_moves_with_the_object_correlates():
    spec = ShapeSpec("red", "square", "moving left to right", "gray")
    frames = np.zeros((4, 8, 8, 3), np.uint8)
    frames[:] = BACKGROUNDS["gray"]
    maps = np.zeros((4, 8, 8, 2))
    for f in range(4):
        frames[f, 3:5, f:f + 2] = (220, 40, 40)
        maps[f, 3:5, f:f + 2, 1] = 1.0  # <f1> follows the object
        maps[f, 3:5, 6 - f:8 - f, 0] = 1.0  # "square" moves the other way
    per = measure_video(frames, maps, ["square", "<f1>"], ["text", "frame"], spec)
    assert per["frame tokens"]["correlations"] == [pytest.approx(1.0)]
    assert per["shape"]["correlations"] == [pytest.approx(-1.0)]
    assert trajectory_correlation(per["shape"]["maps"][:2], 0) is None  # too few frames


def test_the_band_worlds_strip_is_not_the_object():
    """A translation's frames carry a strip on the leading edge (shapes.band_mask, 4 px); the object's mask leaves it
    out, so a map on the strip does not count as a map on the object. (8-px frames: a world drawing strips there.)"""
    from harivo.data.shapes import World

    spec = ShapeSpec("red", "square", "moving left to right", "gray")
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    frames[:] = BACKGROUNDS["gray"]
    frames[:, 2:4, 1:3] = (220, 40, 40)
    frames[:, :, 4:] = (0, 220, 220)  # the strip (band_mask(motion, 8): the right 4 columns)
    maps = np.zeros((2, 8, 8, 1))
    maps[:, :, 4:, 0] = 1.0  # looks at the strip only
    flat = summarise(measure_video(frames, maps, ["<f1>"], ["frame"], spec, World(band_px=0)))
    band = summarise(measure_video(frames, maps, ["<f1>"], ["frame"], spec, World(min_band_frame=8)))
    assert flat["frame tokens"]["lift_mean"] > 1  # in a flat world the strip's pixels would be "object"
    assert band["frame tokens"]["lift_mean"] == pytest.approx(0.0)
