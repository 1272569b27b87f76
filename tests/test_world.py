"""The shapes world as a value (`shapes.World`): two worlds in one interpreter, the band strip each draws and the
checker reads in its own world, the record checkpoints carry, and no setting read from the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harivo.data.checker import DEFAULT_THRESHOLDS, Thresholds, judge, read_frame, world_thresholds
from harivo.data.shapes import (BACKGROUNDS, BAND_COLOURS, COLOURS, DIRECTIONS, MOTIONS, WORLD, ShapeSpec, Track,
                                World, all_specs, backdrop, band_mask, rasterize, render_image, render_video)

ROOT = Path(__file__).resolve().parents[1]
FLAT = World(band_px=0)
FLAT_READING = Thresholds(world=FLAT)


def test_the_shipped_world_is_the_default_and_names_itself():
    assert WORLD == World() and WORLD.version == "plain-crossing-band"
    assert DEFAULT_THRESHOLDS.world == WORLD
    assert FLAT.version == "plain-crossing-flat"
    assert World(band_px=8).version == "plain-crossing-band-band_px8"
    assert World(min_band_frame=32).version == "plain-crossing-band-min_band_frame32"


def test_two_worlds_in_one_interpreter_draw_and_read_each_its_own():
    """The same spec and seed in the band world and the flat one: the same object, the strip only in the band world;
    each world's checker reads its own video's band (and none in the other's), the object alike."""
    spec = ShapeSpec("blue", "square", "moving left to right", "white")
    band, track_band = render_video(spec, 3)
    flat, track_flat = render_video(spec, 3, world=FLAT)
    assert np.array_equal(track_band.cx, track_flat.cx)
    strip = band_mask(spec.motion, 64)
    assert np.array_equal(band[:, ~strip], flat[:, ~strip]) and not np.array_equal(band, flat)
    for f in (0, 8, 15):
        a, b = read_frame(band[f]), read_frame(flat[f], FLAT_READING)
        assert a.band == spec.motion and b.band is None
        assert read_frame(band[f], FLAT_READING).band is None  # a flat world's checker reads no band
        assert (a.colour, a.shape, a.background, a.n_objects) == (b.colour, b.shape, b.background, b.n_objects)
    assert judge(band, spec)["content"] and judge(flat, spec, FLAT_READING)["content"]


def test_world_record_round_trips_and_bad_records_name_the_setting():
    for world in (WORLD, FLAT, World(band_px=8, min_band_frame=32), World(band_px=0, min_band_frame=16)):
        assert World.from_record(world.record()) == world and World.parse(world.version) == world
    assert World.from_record(None) == WORLD and World.from_record({}) == WORLD
    assert World.parse("band_px=8,min_band_frame=32") == World(band_px=8, min_band_frame=32)
    with pytest.raises(ValueError, match="unknown settings.*cue"):
        World.from_record({"cue": "cue3"})
    with pytest.raises(ValueError, match="version"):
        World.from_record({"version": "plain-crossing-flat", "band_px": 4})
    with pytest.raises(ValueError, match="band_px must be an integer >= 0"):
        World(band_px=-1)
    with pytest.raises(ValueError, match="world: expected a version"):
        World.parse("cue3")
    assert world_thresholds(FLAT.record()).world == FLAT and world_thresholds(None) is DEFAULT_THRESHOLDS


def test_no_world_setting_comes_from_the_environment():
    """Importing the package with the old world variables set changes nothing (they once chose the world), and
    harivo/ reads the environment only for the checkpoints folder and the thread settings."""
    env = {**os.environ, "HARIVO_CUE_STYLE": "bogus", "HARIVO_BACKDROP": "band2", "HARIVO_TRACKS": "random"}
    code = "import json, harivo.tokenizer\nfrom harivo.data.shapes import WORLD\nprint(json.dumps(WORLD.record()))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=ROOT)
    assert json.loads(out.stdout) == WORLD.record()
    hits = subprocess.run(["git", "grep", "-n", "os.environ", "--", "harivo/"], capture_output=True, text=True,
                          cwd=ROOT).stdout.splitlines()
    if not hits:
        pytest.skip("not a git checkout")
    files = {h.split(":")[0] for h in hits}
    # the app's model folder and list ($HARIVO_CHECKPOINTS, $HARIVO_MODELS), thread settings, the bench's child env
    assert files <= {"harivo/explorer/models.py", "harivo/explorer/specs.py", "harivo/threads.py",
                     "harivo/bench/cases.py"}, hits


@pytest.mark.parametrize("motion, rows, cols", [
    ("moving left to right", slice(None), slice(60, 64)), ("moving right to left", slice(None), slice(0, 4)),
    ("moving up", slice(0, 4), slice(None)), ("moving down", slice(60, 64), slice(None)),
])  # fmt: skip
def test_band_is_a_strip_in_its_colour_on_the_leading_edge(motion, rows, cols):
    expected = np.zeros((64, 64), bool)
    expected[rows, cols] = True
    band = band_mask(motion, 64)
    assert np.array_equal(band, expected)
    for seed in range(8):
        spec = ShapeSpec("blue", "square", motion, "white")
        video, flat = render_video(spec, seed)[0], render_video(spec, seed, world=FLAT)[0]
        bg = np.all(flat == BACKGROUNDS["white"], axis=-1)
        obj = np.all(flat == COLOURS["blue"], axis=-1)
        assert np.array_equal(video[:, ~band], flat[:, ~band])  # nothing changes off the strip
        assert np.all(video[bg & band] == BAND_COLOURS[motion])  # the background of the strip takes the colour
        assert np.all(video[obj & band] == COLOURS["blue"])  # the object is drawn over it
    # an object at the leading edge (1 px margin, as the world allows) is drawn over the band
    ux, uy = DIRECTIONS[motion]
    r = 8.0
    c = 32.0 + (31.5 - r - 1.0) * np.array([ux, uy])
    at_edge = Track(np.array([c[0]]), np.array([c[1]]), np.array([r]), np.array([0.0]))
    frame = rasterize(ShapeSpec("blue", "circle", motion, "white"), at_edge, 64)[0]
    obj = band & np.all(frame == COLOURS["blue"], axis=-1)
    assert obj.sum() >= 8 and np.all(frame[band & ~obj] != COLOURS["white"])


def test_a_wider_band_and_small_frames():
    spec = ShapeSpec("red", "circle", "moving up", "gray")
    wide = World(band_px=8)
    assert band_mask(spec.motion, 64, wide)[:8].all() and not band_mask(spec.motion, 64, wide)[8:].any()
    assert backdrop(spec, 32) is None and backdrop(spec, 32, World(min_band_frame=32)) is not None
    assert np.array_equal(render_image(spec, 1, 32), render_image(spec, 1, 32, FLAT))  # under 48 px: no strip


@pytest.mark.parametrize("motion", ("getting closer", "moving away", "spinning", "standing still"))
def test_band_only_for_translations(motion):
    spec = ShapeSpec("red", "square", motion, "gray")
    video, flat = render_video(spec, 2)[0], render_video(spec, 2, world=FLAT)[0]
    assert np.array_equal(video, flat) and backdrop(spec, 64) is None
    assert all(read_frame(f).band is None for f in video)


def test_band_is_invisible_to_the_object_reading_and_read_back():
    specs = [s for s in all_specs("all") if s.motion in DIRECTIONS][::9]
    assert len(specs) >= 20
    for i, spec in enumerate(specs):
        video, flat = render_video(spec, 100 + i)[0], render_video(spec, 100 + i, world=FLAT)[0]
        assert not np.array_equal(video, flat)
        for f in range(0, 16, 5):
            a, b = read_frame(video[f]), read_frame(flat[f])
            assert a.band == spec.motion and b.band is None
            assert (a.colour, a.shape, a.background, a.n_objects) == (b.colour, b.shape, b.background, b.n_objects)
            assert (a.colour, a.shape, a.background) == (spec.colour, spec.shape, spec.background)
            # an object over the band (a crossing ends at the leading edge): its anti-aliased rim there blends with
            # the band, not the background (at most 0.151 px over these specs)
            assert abs(a.cx - b.cx) < 0.2 and abs(a.cy - b.cy) < 0.2 and abs(a.size - b.size) < 0.2
        assert judge(video, spec)["content"]


def test_every_object_is_drawn_in_its_caption_colour_alone():
    """No mark or label on the object: every pixel of a frame is the background's colour, the strip's, the object's
    or a blend of the object's with what lies under it (anti-aliasing)."""
    for spec in [s for s in all_specs("all")][::97]:
        video = render_video(spec, 5)[0].astype(float)
        fg = np.array(COLOURS[spec.colour], float)
        under = [np.array(BACKGROUNDS[spec.background], float)]
        if spec.motion in BAND_COLOURS:
            under.append(np.array(BAND_COLOURS[spec.motion], float))
        dist = np.min([np.linalg.norm(np.cross(video - u, fg - u), axis=-1) / np.linalg.norm(fg - u) for u in under],
                      axis=0)
        assert dist.max() < 1.0, spec.caption
    assert len(MOTIONS) == 8


def test_the_app_reads_a_models_video_in_the_world_it_records(tmp_path):
    """A checkpoint recording a world of 8-px strips: the app's flicker score of its video (read in that world through
    `world_thresholds(pipe.world)`) equals the evaluation's for the same video with `--world` set to it, and differs
    from a reading in the shipped world, which takes the wide strip for part of the picture."""
    import json as _json

    from harivo.evaluate.metrics import score_video
    from harivo.explorer.runs import flicker
    from harivo.pipeline import HarivoPipeline
    from harivo.tiny import save_tiny_checkpoint

    wide = World(band_px=8)
    folder = save_tiny_checkpoint(tmp_path)
    config = _json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(_json.dumps({**config, "world": wide.record()}))
    pipe = HarivoPipeline.from_checkpoint(folder)
    assert pipe.world == wide
    spec = ShapeSpec("blue", "star", "moving left to right", "white")
    video = render_video(spec, 3, world=wide)[0]
    app_reading = flicker(video, world_thresholds(pipe.world))
    evaluation = score_video(video, spec, world_thresholds(World.parse("band_px=8")))
    assert app_reading == pytest.approx(float(judge(video, spec, Thresholds(world=wide))["details"]["flicker"]))
    assert evaluation["smooth"] and app_reading < 0.01
    assert flicker(video, DEFAULT_THRESHOLDS) != pytest.approx(app_reading, abs=1e-6)
