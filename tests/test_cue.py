"""The cue: every frame of the shapes world shows its motion as a mark inside the object (shapes.py docstring).

Checked: the mark is drawn where the docstring says (per motion, per shape), it never changes what the checker
reads of the object (colour, shape, background, centroid, size, angle, object count), the checker reads it back
per frame, and ``cue=False`` is the plain world."""

import numpy as np
import pytest
from scipy import ndimage

from harivo.data.checker import Thresholds, cue_agrees, cue_motion, judge, read_frame
from harivo.data.shapes import (
    BACKGROUNDS, COLOURS, CUE2_PAIR_OFFSET, CUE3_COLOURS, CUE_DIRECTIONS, CUE_OFFSET, CUE_PAIR_OFFSET, CUE_STYLE, CUE_STYLES,
    MOTIONS, SHAPES, WORLD_VERSION, ShapeSpec, Track,
    all_specs, mark_colour, rasterize, render_image, render_video,
)  # fmt: skip


LABELS = Thresholds(cue_labels=True)  # the checker reads cue3 labels when asked (by default in the cue3 world)
MARKS = Thresholds(cue_labels=False)  # ... and cue1/cue2 marks only when it does not


def _thresholds(style: str) -> Thresholds:
    return LABELS if style == "cue3" else MARKS


def _mark_pixels(frame: np.ndarray, spec: ShapeSpec) -> np.ndarray:
    """(H, W) soft mark coverage from the exact palette: position between object colour and mark colour."""
    fg = np.array(COLOURS[spec.colour], float)
    mk = np.array(mark_colour(spec.colour), float)
    bg = np.array(BACKGROUNDS[spec.background], float)
    d = mk - fg
    w = np.clip((frame.astype(float) - fg) @ d / (d @ d), 0, 1)
    # only inside the object: pixels that are not a blend of background and object
    t = np.clip((frame.astype(float) - bg) @ (fg - bg) / ((fg - bg) @ (fg - bg)), 0, 1)
    blend = bg + t[..., None] * (fg - bg)
    return np.where(np.linalg.norm(frame - blend, axis=-1) > 5, w, 0.0)


def test_mark_colour_is_the_farther_of_black_and_white():
    for name, rgb in COLOURS.items():
        mk = np.array(mark_colour(name), float)
        assert mark_colour(name) in (COLOURS["black"], COLOURS["white"])
        other = COLOURS["white"] if mark_colour(name) == COLOURS["black"] else COLOURS["black"]
        assert np.linalg.norm(mk - rgb) >= np.linalg.norm(np.array(other, float) - rgb)
        assert np.linalg.norm(mk - rgb) > 150  # high contrast for every colour
    assert mark_colour("white") == COLOURS["black"] and mark_colour("black") == COLOURS["white"]
    assert WORLD_VERSION == CUE_STYLE == "cue1"
    assert Thresholds().cue_labels == (CUE_STYLE == "cue3")  # the checker reads labels in the label world


def test_cue_style_is_checked():
    spec = ShapeSpec("red", "circle", "moving up", "gray")
    with pytest.raises(ValueError, match="cue"):
        render_image(spec, 1, cue="cue9")
    assert np.array_equal(render_image(spec, 1), render_image(spec, 1, cue=CUE_STYLE))
    assert not np.array_equal(render_image(spec, 1, cue="cue1"), render_image(spec, 1, cue="cue2"))


@pytest.mark.parametrize("style", ("cue1", "cue2"))
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("motion", MOTIONS)
def test_mark_is_drawn_as_documented(shape, motion, style):
    if (shape, motion) == ("circle", "spinning"):
        return
    spec = ShapeSpec("red" if shape != "star" else "yellow", shape, motion, "gray")
    video, track = render_video(spec, seed=11, cue=style)
    centred = 0.05 if style == "cue1" else 0.12  # cue2's larger pair is clipped unevenly by a triangle
    ys, xs = np.mgrid[0:64, 0:64]
    for f in (0, 7, 15):
        w = _mark_pixels(video[f], spec)
        if motion == "standing still":
            assert w.sum() == 0
            continue
        assert w.sum() > 1.0
        mx, my = (w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()
        off = np.array([mx - track.cx[f], my - track.cy[f]]) / track.size[f]  # in radii
        if motion in CUE_DIRECTIONS:
            u = np.array(CUE_DIRECTIONS[motion])
            assert off @ u > 0.5 * CUE_OFFSET  # on the leading side
            assert abs(off @ u[::-1]) < 0.08  # on the axis of motion
        elif motion == "getting closer":
            assert np.hypot(*off) < centred
        elif motion == "moving away":
            assert np.hypot(*off) < centred
            labels, n = ndimage.label(w > 0.5)
            assert n == 2
            cxs = sorted(ndimage.center_of_mass(w > 0.5, labels, [1, 2]), key=lambda c: c[1])
            assert abs(cxs[0][0] - cxs[1][0]) < 0.6  # side by side
            gap = (cxs[1][1] - cxs[0][1]) / track.size[f]
            assert gap == pytest.approx(2 * (CUE_PAIR_OFFSET if style == "cue1" else CUE2_PAIR_OFFSET), abs=0.15)
        elif motion == "spinning":  # towards the first corner: turns with the object
            a = np.deg2rad(track.angle[f])
            assert off @ np.array([np.cos(a), np.sin(a)]) > 0.5 * CUE_OFFSET
        # inside the object: every mark pixel is at least 3/4 covered by the plain object (the mark is clipped to
        # the shape shrunk by CUE_MARGIN; a star's inner corner leaves ~1 px, so "fully" is too strict)
        plain = rasterize(spec, type(track)(*(x[f:f + 1] for x in (track.cx, track.cy, track.size, track.angle))),
                          cue=False)[0]
        fg, bg = np.array(COLOURS[spec.colour], float), np.array(BACKGROUNDS[spec.background], float)
        cover = (plain - bg) @ (fg - bg) / ((fg - bg) @ (fg - bg))
        assert np.all(cover[w > 0] >= 0.75)
        assert (cover[w > 0] > 0.99).mean() > 0.8
        if motion in (*CUE_DIRECTIONS, "spinning"):  # cue1: a round mark; cue2: the object's leading half
            share = w.sum() / np.clip(cover, 0, 1).sum()
            assert (0.04 < share < 0.19) if style == "cue1" else (0.2 < share < 0.5), share


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("motion", MOTIONS)
def test_cue3_label_is_a_centred_disk_in_the_motions_colour(shape, motion):
    if (shape, motion) == ("circle", "spinning"):
        return
    spec = ShapeSpec("red" if shape != "star" else "yellow", shape, motion, "gray")
    video, track = render_video(spec, seed=11, cue="cue3")
    plain, _ = render_video(spec, seed=11, cue=False)
    ys, xs = np.mgrid[0:64, 0:64]
    for f in (0, 15):
        changed = (video[f] != plain[f]).any(-1)
        if motion == "standing still":
            assert not changed.any()
            continue
        exact = (video[f] == np.array(CUE3_COLOURS[motion])).all(-1)
        assert exact.sum() > 5 and not (changed & ~(exact | (np.abs(video[f].astype(int) - plain[f]).sum(-1) > 0))).any()
        mx, my = xs[exact].mean(), ys[exact].mean()
        assert np.hypot(mx - track.cx[f], my - track.cy[f]) / track.size[f] < 0.12  # centred
        r = read_frame(video[f], LABELS)
        assert r.cue_label == motion and cue_motion(r) == motion and cue_agrees(motion, r)
        assert read_frame(video[f], MARKS).cue_label is None  # told to read marks, the checker reads no labels


def test_cue3_colours_are_far_from_the_palette_and_each_other():
    codes = np.array(list(CUE3_COLOURS.values()), float)
    palette = np.array(list(COLOURS.values()), float)
    assert set(CUE3_COLOURS) == set(MOTIONS) - {"standing still"}
    assert np.linalg.norm(codes[:, None] - palette[None], axis=-1).min() > 85
    gaps = np.linalg.norm(codes[:, None] - codes[None], axis=-1)
    assert gaps[~np.eye(len(codes), dtype=bool)].min() > 125
    for name, rgb in COLOURS.items():  # off every object -> black/white mark blend (a cue1/cue2 mark's rim)
        o, m = np.array(rgb, float), np.array(mark_colour(name), float)
        t = np.clip((codes - o) @ (m - o) / ((m - o) @ (m - o)), 0, 1)
        assert np.linalg.norm(codes - (o + t[:, None] * (m - o)), axis=1).min() > 60, name


def test_cue_false_is_the_plain_world():
    spec = ShapeSpec("blue", "square", "moving up", "white")
    video, _ = render_video(spec, 4, cue=False)
    fg, bg = np.array(COLOURS["blue"], float), np.array(BACKGROUNDS["white"], float)
    t = np.clip((video - bg) @ (fg - bg) / ((fg - bg) @ (fg - bg)), 0, 1)
    assert np.abs(video - (bg + t[..., None] * (fg - bg))).max() <= 1.0  # only object/background blends
    with_cue, _ = render_video(spec, 4)
    assert (with_cue != video).any(axis=-1).sum() > 16 * 5  # the cue adds a mark to every frame
    assert np.array_equal(render_image(spec, 4, cue=False), video[np.flatnonzero(
        [np.array_equal(render_image(spec, 4, cue=False), v) for v in video])[0]])


@pytest.mark.parametrize("style", CUE_STYLES)
def test_cue_is_invisible_to_the_object_reading(style):
    rng = np.random.default_rng(3)
    specs = all_specs("all")
    for i in rng.choice(len(specs), 120, replace=False):
        spec, seed = specs[i], int(rng.integers(2**31 - 1))
        a, _ = render_video(spec, seed, cue=style)
        b, _ = render_video(spec, seed, cue=False)
        for f in (0, 15):
            ra, rb = read_frame(a[f], _thresholds(style)), read_frame(b[f])
            assert (ra.colour, ra.shape, ra.background, ra.n_objects) == (rb.colour, rb.shape, rb.background, 1)
            assert abs(ra.cx - rb.cx) < 0.2 and abs(ra.cy - rb.cy) < 0.2, spec.caption
            assert abs(ra.size - rb.size) < 0.35, spec.caption
            if ra.angle is not None:
                n = {"triangle": 120, "square": 90, "star": 72}[ra.shape]
                assert abs((ra.angle - rb.angle + n / 2) % n - n / 2) < 1.5
        ja, jb = judge(a, spec, _thresholds(style)), judge(b, spec)
        assert {k: ja[k] for k in ("content", "action", "smooth", "non_weird")} == \
            {k: jb[k] for k in ("content", "action", "smooth", "non_weird")}


@pytest.mark.parametrize("style", [s for s in CUE_STYLES if s != "plain"])  # the plain style draws no cue to read
def test_checker_reads_the_cue_back_on_every_generator_frame(style):
    rng = np.random.default_rng(4)
    specs = all_specs("all")
    for i in rng.choice(len(specs), 150, replace=False):
        spec = specs[i]
        frame = render_image(spec, int(rng.integers(2**31 - 1)), cue=style)
        r = read_frame(frame, _thresholds(style))
        assert cue_agrees(spec.motion, r), (spec.caption, r.cue, r.cue_dx, r.cue_dy)
        if spec.motion != "spinning" or style == "cue3":
            assert cue_motion(r) == spec.motion
        else:
            assert r.cue == "facing"
    plain = read_frame(render_image(ShapeSpec("red", "star", "moving up", "gray"), 1, cue=False))
    assert plain.cue == "none" and cue_motion(plain) == "standing still"


def test_judge_reports_the_cue_share():
    spec = ShapeSpec("orange", "triangle", "moving left to right", "blue")
    other = ShapeSpec("orange", "triangle", "moving right to left", "blue")
    video, _ = render_video(spec, 9, cue="cue1")
    assert judge(video, spec, MARKS)["details"]["cue_share"] == 1.0
    flipped = video[:, :, ::-1]  # mirrored: the object now faces (and moves) right to left
    assert judge(flipped, spec, MARKS)["details"]["cue_share"] == 0.0
    assert judge(flipped, other, MARKS)["details"]["cue_share"] == 1.0
    assert judge(flipped, other, MARKS)["details"]["cue"] == ["moving right to left"] * 16
    labelled, _ = render_video(spec, 9, cue="cue3")  # a cyan label, mirrored or not
    assert judge(labelled, spec, LABELS)["details"]["cue"] == ["moving left to right"] * 16
    assert judge(labelled[:, :, ::-1], spec, LABELS)["details"]["cue_share"] == 1.0
    assert judge(labelled, other, LABELS)["details"]["cue_share"] == 0.0
    still = render_video(ShapeSpec("orange", "triangle", "standing still", "blue"), 9, cue=False)[0]
    assert judge(still, spec)["details"]["cue_share"] == 0.0


# ------------------------------------------------------------------ the "band" backdrop (issue 16's proxy world)
BANDS = Thresholds(cue_labels=True, bands=True)


@pytest.fixture
def band_world(monkeypatch):
    from harivo.data import shapes

    monkeypatch.setattr(shapes, "BACKDROP_STYLE", "band")
    return shapes


def test_default_world_has_a_flat_backdrop():
    from harivo.data import shapes

    assert shapes.BACKDROP_STYLE == "flat" and not Thresholds().bands
    spec = ShapeSpec("red", "circle", "moving up", "gray")
    assert shapes.backdrop(spec, 64) is None and shapes.backdrop(spec, 64, style="band") is not None


def _both(shapes, spec, seed):
    """(band video, flat video) of the same spec and seed."""
    video, _ = render_video(spec, seed)
    shapes.BACKDROP_STYLE = "flat"
    flat, _ = render_video(spec, seed)
    shapes.BACKDROP_STYLE = "band"
    return video, flat


@pytest.mark.parametrize("motion, rows, cols", [
    ("moving left to right", slice(None), slice(60, 64)), ("moving right to left", slice(None), slice(0, 4)),
    ("moving up", slice(0, 4), slice(None)), ("moving down", slice(60, 64), slice(None)),
])  # fmt: skip
def test_band_is_a_strip_in_the_label_colour_on_the_leading_edge(band_world, motion, rows, cols):
    expected = np.zeros((64, 64), bool)
    expected[rows, cols] = True
    band = band_world.band_mask(motion, 64)
    assert np.array_equal(band, expected)
    for seed in range(12):
        spec = ShapeSpec("blue", "square", motion, "white")
        video, flat = _both(band_world, spec, seed)
        bg = np.all(flat == BACKGROUNDS["white"], axis=-1)
        obj = np.all(flat == COLOURS["blue"], axis=-1)
        assert np.array_equal(video[:, ~band], flat[:, ~band])  # nothing changes off the strip
        assert np.all(video[bg & band] == CUE3_COLOURS[motion])  # the background of the strip takes the colour
        assert np.all(video[obj & band] == COLOURS["blue"])  # the object is drawn over it
    # an object at the leading edge (1 px margin, as the world allows) is drawn over the band
    ux, uy = CUE_DIRECTIONS[motion]
    r = 8.0
    c = 32.0 + (31.5 - r - 1.0) * np.array([ux, uy])
    at_edge = Track(np.array([c[0]]), np.array([c[1]]), np.array([r]), np.array([0.0]))
    frame = rasterize(ShapeSpec("blue", "circle", motion, "white"), at_edge, 64)[0]
    obj = band & np.all(frame == COLOURS["blue"], axis=-1)
    assert obj.sum() >= 8 and np.all(frame[band & ~obj] != COLOURS["white"])


@pytest.mark.parametrize("motion", ("getting closer", "moving away", "spinning", "standing still"))
def test_band_only_for_translations(band_world, motion):
    spec = ShapeSpec("red", "square", motion, "gray")
    video, flat = _both(band_world, spec, 2)
    assert np.array_equal(video, flat) and band_world.backdrop(spec, 64) is None
    assert all(read_frame(f, BANDS).band is None for f in video)


def test_band_is_invisible_to_the_object_reading_and_read_back(band_world):
    specs = [s for s in all_specs("all") if s.motion in CUE_DIRECTIONS][::7]
    assert len(specs) >= 20
    for i, spec in enumerate(specs):
        video, flat = _both(band_world, spec, 100 + i)
        assert not np.array_equal(video, flat)
        for f in range(0, 16, 5):
            a, b = read_frame(video[f], BANDS), read_frame(flat[f], BANDS)
            assert a.band == spec.motion and b.band is None
            assert (a.colour, a.shape, a.background, a.n_objects) == (b.colour, b.shape, b.background, b.n_objects)
            assert (a.colour, a.shape, a.background) == (spec.colour, spec.shape, spec.background)
            # an object over the band: its anti-aliased rim there blends with the band, not the background (max
            # 0.10 px over every translation spec of the world)
            assert abs(a.cx - b.cx) < 0.15 and abs(a.cy - b.cy) < 0.15 and abs(a.size - b.size) < 0.15
        assert judge(video, spec, BANDS)["content"]


# ------------------------------------------------------------------ "band2": a strip for every labelled motion
@pytest.fixture
def band2_world(monkeypatch):
    from harivo.data import shapes

    monkeypatch.setattr(shapes, "BACKDROP_STYLE", "band2")
    return shapes


def test_band2_strips(band2_world):
    """Translations keep the band world's strips; a size change's or a spin's lies along the top edge; standing
    still has none; "band" (and a flat world's reading of bands) keeps translations only."""
    top = np.zeros((64, 64), bool)
    top[:4] = True
    assert band2_world.band_motions() == tuple(CUE3_COLOURS)
    for motion in CUE_DIRECTIONS:
        assert np.array_equal(band2_world.band_mask(motion, 64), band2_world.band_mask(motion, 64, style="band"))
    for motion in ("getting closer", "moving away", "spinning"):
        assert np.array_equal(band2_world.band_mask(motion, 64), top)
        assert band2_world.band_mask(motion, 64, style="band") is None
        assert band2_world.band_mask(motion, 64, style="flat") is None
    assert band2_world.band_mask("standing still", 64) is None
    assert band2_world.band_motions("band") == band2_world.band_motions("flat") == tuple(CUE_DIRECTIONS)


@pytest.mark.parametrize("motion", ("getting closer", "moving away", "spinning"))
def test_band2_is_drawn_read_back_and_invisible_to_the_object_reading(band2_world, motion):
    top = band2_world.band_mask(motion, 64)
    for seed in range(6):
        spec = ShapeSpec("blue", "square", motion, "white")
        video, _ = render_video(spec, seed)
        band2_world.BACKDROP_STYLE = "flat"
        flat, _ = render_video(spec, seed)
        band2_world.BACKDROP_STYLE = "band2"
        bg = np.all(flat == BACKGROUNDS["white"], axis=-1)
        assert np.array_equal(video[:, ~top], flat[:, ~top])  # nothing changes off the strip
        assert np.all(video[bg & top] == CUE3_COLOURS[motion])
        for f in (0, 7, 15):
            a, b = read_frame(video[f], BANDS), read_frame(flat[f], BANDS)
            assert a.band == motion and b.band is None
            assert (a.colour, a.shape, a.background, a.n_objects) == (b.colour, b.shape, b.background, b.n_objects)
            assert abs(a.cx - b.cx) < 0.15 and abs(a.cy - b.cy) < 0.15 and abs(a.size - b.size) < 0.15
        assert judge(video, spec, BANDS)["content"]
    # in the band world these motions have no strip, and a band2 strip there is not read as a band
    band2_world.BACKDROP_STYLE = "band"
    assert band2_world.backdrop(ShapeSpec("blue", "square", motion, "white"), 64) is None
    assert read_frame(video[0], BANDS).band is None
