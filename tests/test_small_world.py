"""The small world (issue 16's cheaper design): the band world drawn at 32 px with large objects
(`HARIVO_OBJECTS=large`: every radius 1.4x its share of the frame, so that a 32-px frame still shows the cue3 label and
the band). The setting is read when `harivo.data.shapes` is imported, so each check runs in a fresh interpreter."""

from __future__ import annotations

from conftest import in_world

WORLD = {"HARIVO_CUE_STYLE": "cue3", "HARIVO_BACKDROP": "band", "HARIVO_TRACKS": "crossing",
         "HARIVO_OBJECTS": "large"}


def in_small_world(code: str):
    return in_world(WORLD, code, timeout=300)


def test_objects_are_larger_by_the_scale_and_the_world_names_itself():
    """Same seed, same draws: every radius is 1.4x the normal world's (positions follow from the radius), the world's
    version and its environment name the setting; the default world this suite runs in is untouched."""
    from harivo.data import shapes
    from harivo.data.shapes import ShapeSpec, make_track

    specs = [ShapeSpec("red", "star", m, "gray") for m in ("getting closer", "moving away", "moving up")]
    out = in_small_world(f"""
import json
from harivo.data import shapes
from harivo.data.shapes import ShapeSpec, make_track
sizes = [make_track(ShapeSpec("red", "star", m, "gray"), 3, 16, 32).size.tolist() for m in {[s.motion for s in specs]!r}]
print(json.dumps({{"sizes": sizes, "version": shapes.WORLD_VERSION, "env": shapes.world_env(),
                   "min_frame": shapes.CUE_MIN_FRAME}}))
""")
    for spec, large in zip(specs, out["sizes"]):
        normal = make_track(spec, 3, 16, 32).size
        assert [round(a / b, 6) for a, b in zip(large, normal)] == [1.4] * 16
    assert out["version"] == "cue3-crossing-band-large" and out["env"] == WORLD and out["min_frame"] == 32
    assert shapes.OBJECT_STYLE == "normal" and shapes.CUE_MIN_FRAME == 48 and "HARIVO_OBJECTS" not in shapes.world_env()


def test_the_generator_videos_at_32_px_pass_the_checker():
    """48 generator videos of the small world (16 frames, 32 px): the checker reads colour, shape, background and the
    prompted motion in every one, the label in every frame of a labelled motion, the band of every translation;
    at least 90 % are smooth (measured: 96 % of 200; the others' area term of the flicker score, a few pixels'
    anti-aliasing on an object of 6-9 px radius) and non-weird."""
    out = in_small_world("""
import json
import numpy as np
from harivo.data.checker import judge
from harivo.data.shapes import CUE_DIRECTIONS, CUE3_COLOURS, all_specs, render_video
specs = all_specs("all")
rows = []
for i in np.random.default_rng(0).choice(len(specs), 48, replace=False):
    spec = specs[int(i)]
    frames, _ = render_video(spec, int(i), 16, 32)
    j = judge(frames, spec)
    d = j["details"]
    rows.append({"ok": j["content"] and j["action"], "smooth": j["smooth"], "non_weird": j["non_weird"],
                 "cue": d["cue_share"] if spec.motion in CUE3_COLOURS else 1.0,
                 "band": all(b == spec.motion for b in d["band"]) if spec.motion in CUE_DIRECTIONS else True})
print(json.dumps(rows))
""")
    assert all(r["ok"] for r in out) and all(r["cue"] == 1.0 for r in out) and all(r["band"] for r in out)
    assert sum(r["smooth"] for r in out) >= 0.9 * len(out) and sum(r["non_weird"] for r in out) >= 0.95 * len(out)
