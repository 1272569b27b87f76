"""The shapes-world generator: vocabulary, splits, captions, determinism and ground truth."""

import numpy as np
import pytest

from harivo.data.shapes import (  # fmt: skip
    BACKGROUNDS, COLOURS, HELD_OUT, MOTIONS, SHAPES, ShapeSpec, all_specs, image_frame_index, is_held_out,
    World, make_dataset, render_image, render_video, sample_spec, world_vocabulary,
)


def test_palette_and_vocabulary_match_the_design():
    assert COLOURS["red"] == (220, 40, 40) and COLOURS["purple"] == (140, 60, 200)
    assert COLOURS["white"] == (245, 245, 245) and COLOURS["black"] == (20, 20, 20)
    assert BACKGROUNDS == {"gray": (128, 128, 128), "white": (235, 235, 235), "black": (15, 15, 15),
                           "blue": (40, 60, 140)}  # fmt: skip
    assert SHAPES == ("circle", "square", "triangle", "star")
    assert len(MOTIONS) == 8 and MOTIONS[0] == "moving left to right" and MOTIONS[-1] == "standing still"


def test_splits_partition_the_world_and_hold_out_only_held_out_combos():
    train, held, every = all_specs("train"), all_specs("held_out"), all_specs("all")
    # 5 colours x 4 backgrounds + 3 colours x 3 backgrounds, times 4 x 8 (shape, motion) minus circle spinning
    assert len(every) == 29 * 31 == 899
    assert 8 <= len(HELD_OUT) <= 12 and len(set(HELD_OUT)) == len(HELD_OUT)
    assert len(held) == sum(4 if c not in BACKGROUNDS else 3 for c, _, _ in HELD_OUT) == 36
    assert set(train) | set(held) == set(every) and not set(train) & set(held)
    assert not any(is_held_out(s) for s in train) and all(is_held_out(s) for s in held)
    assert all(s.colour != s.background for s in every)
    assert not any((s.shape, s.motion) == ("circle", "spinning") for s in every)
    # every colour, shape and motion is still seen in training
    assert {s.colour for s in train} == set(COLOURS)
    assert {s.shape for s in train} == set(SHAPES)
    assert {s.motion for s in train} == set(MOTIONS)
    for c, sh, m in HELD_OUT:
        assert any(s.colour == c for s in train) and any(s.shape == sh and s.motion != m for s in train)
    assert all_specs("train") == train  # deterministic order


def test_make_dataset_is_deterministic_and_never_leaks_held_out():
    data = make_dataset(2000, seed=0, split="train")
    assert data == make_dataset(2000, seed=0, split="train")
    assert data != make_dataset(2000, seed=1, split="train")
    assert not any(is_held_out(s) for s, _ in data)
    assert len({s for s, _ in data}) > 600  # covers most of the 863 training specs
    held = make_dataset(200, seed=0, split="held_out")
    assert all(is_held_out(s) for s, _ in held)
    rng = np.random.default_rng(0)
    assert not any(is_held_out(sample_spec(rng)) for _ in range(2000))


def test_caption_round_trip_and_forgiving_parse():
    spec = ShapeSpec("red", "circle", "moving left to right", "gray")
    assert spec.caption == "a red circle is moving left to right on a gray background"
    assert ShapeSpec("orange", "star", "spinning", "blue").caption == (
        "an orange star is spinning on a blue background"
    )
    for s in all_specs("all"):
        assert ShapeSpec.from_caption(s.caption) == s
    assert ShapeSpec.from_caption("  A Red  circle is moving up on a GRAY background. ") == ShapeSpec(
        "red", "circle", "moving up", "gray"
    )
    assert ShapeSpec.from_caption("a orange star is spinning on a blue background").colour == "orange"


def test_vocabulary_is_exactly_the_caption_words():
    vocab = world_vocabulary()
    assert vocab == sorted(set(vocab)) and all(w == w.lower() for w in vocab)
    used = {w for s in all_specs("all") for w in s.caption.split()}
    assert used == set(vocab)


@pytest.mark.parametrize(
    "caption, words",
    [
        ("a pink circle is moving up on a gray background", ["colour 'pink'", "red"]),
        ("a red hexagon is moving up on a gray background", ["shape 'hexagon'"]),
        ("a red circle is jumping on a gray background", ["motion 'jumping'"]),
        ("a pink circle is moving up on a green background", ["colour 'pink'", "background 'green'"]),
        ("a red circle moving up", ["expected 'a <colour> <shape> is <motion>"]),
    ],
)
def test_from_caption_names_what_is_unknown(caption, words):
    with pytest.raises(ValueError) as err:
        ShapeSpec.from_caption(caption)
    for w in words:
        assert w in str(err.value)


def test_spec_validation_errors():
    with pytest.raises(ValueError, match="background must differ.*'white' on 'white'"):
        ShapeSpec("white", "square", "moving up", "white")
    with pytest.raises(ValueError, match="shape must be one of .* got 'cube'"):
        ShapeSpec("red", "cube", "moving up", "gray")
    with pytest.raises(ValueError, match="split must be one of"):
        all_specs("test")
    with pytest.raises(ValueError, match="num_frames must be an integer >= 1, got 0"):
        render_video(ShapeSpec("red", "circle", "moving up", "gray"), 0, num_frames=0)


def test_render_video_is_deterministic_and_well_formed():
    spec = ShapeSpec("purple", "star", "spinning", "blue")
    a, ta = render_video(spec, seed=7)
    b, tb = render_video(spec, seed=7)
    c, _ = render_video(spec, seed=8)
    assert a.dtype == np.uint8 and a.shape == (16, 64, 64, 3)
    assert np.array_equal(a, b) and np.array_equal(ta.angle, tb.angle)
    assert not np.array_equal(a, c)
    small, track = render_video(spec, seed=7, num_frames=5, size=32)
    assert small.shape == (5, 32, 32, 3) and len(track.cx) == 5
    # anti-aliased edges, but flat colours exact: corner = background, centre = object colour
    a, ta = render_video(spec, seed=7)
    assert np.array_equal(a[:, 0, 0], np.tile(BACKGROUNDS["blue"], (16, 1)))
    centre = a[np.arange(16), np.rint(ta.cy).astype(int), np.rint(ta.cx).astype(int)]
    assert np.array_equal(centre, np.tile(COLOURS["purple"], (16, 1)))
    assert len(np.unique(a[0].reshape(-1, 3), axis=0)) > 5


def test_render_image_is_a_frame_of_the_video():
    spec = ShapeSpec("green", "triangle", "moving down", "white")
    for seed in range(5):
        video, _ = render_video(spec, seed)
        assert np.array_equal(render_image(spec, seed), video[image_frame_index(seed)])
    assert len({image_frame_index(s) for s in range(50)}) > 8


AREA = {"circle": np.pi, "square": 2.0, "triangle": 3 * np.sqrt(3) / 4, "star": 5 * 0.5 * np.sin(np.pi / 5)}


@pytest.mark.parametrize("motion", MOTIONS)
def test_ground_truth_track_matches_the_verb_and_the_pixels(motion):
    S = 64
    for k, shape in enumerate(SHAPES):
        if (shape, motion) == ("circle", "spinning"):
            continue
        spec = ShapeSpec(list(COLOURS)[k], shape, motion, "black" if k != 7 else "gray")
        video, t = render_video(spec, seed=100 + k, world=World(band_px=0))  # the object alone (the band: test_world)
        dx, dy = t.cx[-1] - t.cx[0], t.cy[-1] - t.cy[0]
        grow, turn = t.size[-1] / t.size[0], t.angle[-1] - t.angle[0]
        # (sign of x move, sign of y move); y grows down, so "moving up" decreases cy
        signs = {"moving left to right": (1, 0), "moving right to left": (-1, 0), "moving up": (0, -1),
                 "moving down": (0, 1)}.get(motion, (0, 0))  # fmt: skip
        for d, sign in ((dx, signs[0]), (dy, signs[1])):
            assert d * sign >= 0.25 * S if sign else d == 0
        expected_grow = {"getting closer": grow >= 1.6, "moving away": grow <= 1 / 1.6}
        assert expected_grow.get(motion, grow == 1)
        assert 90 <= abs(turn) <= 200 if motion == "spinning" else turn == 0
        assert np.all(np.abs(np.diff(np.diff(t.cx))) < 1e-9)  # linear, hence smooth
        # fully inside the frame (pixel centres span 0..S-1, so edges are -0.5 and S-0.5)
        assert np.all(t.cx - t.size >= -0.5) and np.all(t.cx + t.size <= S - 0.5)
        assert np.all(t.cy - t.size >= -0.5) and np.all(t.cy + t.size <= S - 0.5)
        # the pixels agree with the track: soft coverage gives area and centroid
        bg, fg = np.array(BACKGROUNDS[spec.background], float), np.array(COLOURS[spec.colour], float)
        cov = (video - bg) @ (fg - bg) / ((fg - bg) @ (fg - bg))  # (F, H, W)
        area = cov.sum(axis=(1, 2))
        np.testing.assert_allclose(area, AREA[shape] * t.size**2, rtol=0.03)
        ys, xs = np.mgrid[0:S, 0:S]
        np.testing.assert_allclose((cov * xs).sum(axis=(1, 2)) / area, t.cx, atol=0.1)
        np.testing.assert_allclose((cov * ys).sum(axis=(1, 2)) / area, t.cy, atol=0.1)


def test_translations_go_edge_to_edge():
    """Translations run from one allowed edge to the other (1 px margin), in the verb's direction, the other
    coordinate fixed."""
    import harivo.data.shapes as shapes

    for seed in range(5):
        for s in [shapes.ShapeSpec("red", "circle", m, "gray") for m in shapes.TRANSLATIONS]:
            b = shapes.make_track(s, seed)
            axis = "cx" if s.motion in ("moving left to right", "moving right to left") else "cy"
            other = "cy" if axis == "cx" else "cx"
            assert np.all(getattr(b, other) == getattr(b, other)[0])
            path, margin = getattr(b, axis), float(b.size.max()) + 1.0
            ends = (margin - 0.5, 64 - 0.5 - margin)
            forward = s.motion in ("moving left to right", "moving down")
            assert (path[0], path[-1]) == pytest.approx(ends if forward else ends[::-1])
