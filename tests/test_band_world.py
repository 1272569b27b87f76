"""checkpoints/harivo-band-*: the shipped models whose verb sets the direction (docs/results.md, "The
verb phase"): Table 1's rows of the band world, trained with the verb phase, and `full` with the smoothing phase after
it. Their world (band backdrop, edge-to-edge translations, cue3 labels) is chosen by environment variables when
`harivo.data.shapes` is imported, so each check runs in a fresh interpreter."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import in_world

from harivo.pipeline import DEFAULT_CHECKPOINTS

# checkpoint -> (t = 999 probe score and positive videos of 15 when shipped, two held-out (seed, caption) pairs of
# `motion_proxy --split held_out`)
SHIPPED = {
    "harivo-band-full-smooth": (0.106, 15, ((12, "a yellow star is moving right to left on a white background"),
                                            (15, "a yellow star is moving right to left on a black background"))),
    "harivo-band-full-verb": (0.132, 15, ((12, "a yellow star is moving right to left on a white background"),
                                          (14, "a purple circle is moving left to right on a blue background"))),
    "harivo-band-mapping-verb": (0.108, 15, ((9, "a red circle is moving up on a white background"),
                                             (12, "a yellow star is moving right to left on a white background"))),
    "harivo-band-trs-dc-verb": (0.124, 14, ((6, "a purple circle is moving left to right on a white background"),
                                            (13, "a purple circle is moving left to right on a black background"))),
    "harivo-band-baseline-verb": (0.125, 15, ((6, "a purple circle is moving left to right on a white background"),
                                              (13, "a purple circle is moving left to right on a black background"))),
}
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"  # motion_proxy.along_track: how far a track went
WORLD = {"HARIVO_CUE_STYLE": "cue3", "HARIVO_BACKDROP": "band", "HARIVO_TRACKS": "crossing"}

def shipped(name: str):
    folder = DEFAULT_CHECKPOINTS / name
    if not (folder / "config.json").is_file():
        pytest.skip(f"{name} is not shipped")
    return folder


def in_band_world(code: str) -> dict:
    """Run `code` (which prints one JSON line last) in a fresh interpreter of the band world, one thread."""
    return in_world(WORLD, "import torch; torch.set_num_threads(1)\n" + code)


@pytest.mark.parametrize("name", SHIPPED)
def test_it_draws_the_prompted_trajectory_from_the_caption_alone(name):
    """At t = 999 (pure noise on its zero-SNR base) its clean-video prediction runs the prompted way on every one of
    the 15 held-out translation videos (trs-dc: 14; time-reversal score +0.11 to +0.13 when shipped); the frozen
    T2I's has no direction."""
    checkpoint = shipped(name)
    out = in_band_world(f"""
import json
from harivo.trajectory_probe import probe
print(json.dumps(probe({str(checkpoint)!r}, videos=16, split="held_out", timesteps=(999,))))
""")
    row = out["timesteps"]["999"]
    score, positive, _ = SHIPPED[name]
    assert row["model"]["mean"] > 0.1 and row["model"]["n"] == 15 and row["model"]["positive"] >= positive >= 14, row
    assert row["model"]["mean"] == pytest.approx(score, abs=0.01)  # what its README says
    assert abs(row["frozen_t2i"]["mean"]) < 0.03


@pytest.mark.parametrize("name", SHIPPED)
def test_the_verb_not_the_seed_sets_the_direction_on_held_out_prompts(name):
    """Two held-out prompts of the shipped proxy (seeds as `motion_proxy --split held_out`): with the verb the object
    crosses the frame the prompted way, from the same seed with the opposite verb the other way (shipped:
    full-smooth +0.35 / −0.44 and +0.68 / −0.63, full +0.43 / −0.55 and +0.52 / −0.30 of the frame, mapping
    +0.55 / −0.51 and +0.41 / −0.76, trs-dc +0.37 / −0.50 and +0.56 / −0.45, baseline +0.42 / −0.49 and
    +0.48 / −0.43)."""
    checkpoint, pairs = shipped(name), SHIPPED[name][2]
    out = in_band_world(f"""
import json, sys
import numpy as np
sys.path.insert(0, {str(SCRIPTS)!r})
from motion_proxy import along_track
from harivo.data.checker import judge
from harivo.data.shapes import ShapeSpec
from harivo.pipeline import GenerationSettings, HarivoPipeline
from harivo.verb_probe import swap_verb
pipe = HarivoPipeline.from_checkpoint({str(checkpoint)!r})
moved = []
for seed, caption in {pairs!r}:
    spec = ShapeSpec.from_caption(caption)
    row = []
    for s in (spec, swap_verb(spec)):
        frames = pipe(GenerationSettings(prompt=s.caption, seed=seed, num_inference_steps=15,
                                         capture_attention=False)).frames
        track = judge((np.clip(frames, 0, 1) * 255).round().astype(np.uint8), s)["details"]["reading"].track
        row.append(along_track(track, spec.motion, frames.shape[2]))  # along the first prompt's direction
    moved.append(row)
print(json.dumps(moved))
""")
    for along, along_opposite in out:
        assert along > 0.25 and along_opposite < -0.25, out


def test_world_env_names_the_settings_that_select_the_band_world():
    """`shapes.world_env()` (what `harivo.evaluate` writes in front of its command): the band world's three HARIVO_*
    settings there, none in the default world this suite runs in."""
    from harivo.data import shapes

    code = "import json\nfrom harivo.data.shapes import world_env\nprint(json.dumps(world_env()))"
    assert in_band_world(code) == WORLD
    assert shapes.world_env() == {}


def test_motion_proxy_picks_the_motions_asked_for():
    """`motion_proxy --motions`: the seed-fixed prompts are drawn from that motion kind's combinations only; a pool
    smaller than asked gives all of it."""
    sys.path.insert(0, str(SCRIPTS))
    from motion_proxy import proxy_specs

    from harivo.data.shapes import SIZE_CHANGES, TRANSLATIONS, all_specs

    sizes = proxy_specs(40, split="train", motions="sizes")
    assert len(sizes) == 40 and {s.motion for s in sizes} == set(SIZE_CHANGES)
    assert {s.motion for s in proxy_specs(40, motions="translations")} == set(TRANSLATIONS)
    held = [s for s in all_specs("held_out") if s.motion in SIZE_CHANGES]
    assert sorted(proxy_specs(100, split="held_out", motions="sizes"), key=str) == sorted(held, key=str)
    assert {s.motion for s in proxy_specs(60)} == {*TRANSLATIONS, *SIZE_CHANGES}
